/**
 * Child process of figure 6 (cross-process hand-off): holds and releases one resource on request over the
 * IPC channel, reporting the monotonic time just before each release.
 */
import { nowNs, sleep } from './clock';
import { childParams } from './child';
import type { ChildCommand, ChildParams, ChildReply } from './handoff-protocol';
import { requireLockspace, type Lease } from './lockspace';

const { dir, name } = childParams<ChildParams>();
const ls = requireLockspace().LockSpace.open(dir);
let lease: Lease | null = null;

async function handle(command: ChildCommand): Promise<ChildReply> {
  if (command.cmd === 'hold') {
    lease = ls.acquireSync(name);
    return { held: true };
  }
  if (command.afterMs) await sleep(command.afterMs);
  const releasedAt = String(nowNs());
  lease!.releaseSync();
  return { releasedAt };
}

process.on('message', (command: ChildCommand) => {
  handle(command).then((reply) => process.send!(reply));
});
process.send!({ ready: true } satisfies ChildReply);
