/**
 * Worker of the Web Locks hand-off: told a run, it waits until both workers are ready, then makes
 * `rounds` requests of one name, each awaited before the next, and answers its elapsed ns. With two
 * such workers on one name, nearly every grant is a hand-off from the other thread's release.
 */
import { parentPort, workerData } from 'worker_threads';
import { waitFor } from './atomics';
import { nowNs } from './clock';
import { requireLockspace } from './lockspace';
import { GO, navigatorLocks, READY, type WebLockManager, type WebLocksRun, type WebLocksWorkerData } from './web-locks-protocol';

const { dir, control: controlSab } = workerData as WebLocksWorkerData;
const control = new Int32Array(controlSab);
const managers: Record<WebLocksRun['impl'], WebLockManager | undefined> = {
  lockspace: requireLockspace().LockSpace.open(dir).locks,
  navigator: navigatorLocks(),
};
const nothing = async (): Promise<void> => undefined;

parentPort!.on('message', async ({ impl, name, rounds, run }: WebLocksRun) => {
  const locks = managers[impl]!;
  Atomics.add(control, READY, 1);
  waitFor(control, GO, run);
  const start = nowNs();
  for (let i = 0; i < rounds; i++) await locks.request(name, nothing);
  parentPort!.postMessage(Number(nowNs() - start));
});
