/* lockspace hold --pid PID DIR NAME...: bind a set of locks to a process (LockSpace#holdFor). */
import type * as Api from '../index';
import { absoluteAsKernel } from '../paths';
import { signalNumber } from './signals';
import { errCode, Exit, EX_NOINPUT, EX_TEMPFAIL, lib, oneOf, OptSpec, out, parse, rethrowArgError, seconds, usage } from './args';

export const HELP = `Usage: lockspace hold --pid PID [OPTIONS] [--] DIR|- NAME...

Hold the locks on every NAME of the lockspace directory DIR for the life of process PID, all or
nothing, and exit 0 once they are held, printing the pid of the holder process. The locks stay
when this command (or the manager that ran it) exits; the kernel drops them as soon as PID ends.
With DIR '-', each NAME is the path of a file (path mode).

Typical use (libvirt's order): start the VM paused, bind its disks, resume it:
  qemu-system-x86_64 -S ... &  lockspace hold --pid $! /var/lib/lockspace disk1 disk2 && resume

The holder is a small process of its own (lockspace-hold) that listens on nothing; only this user
and root can see its set (lockspace status DIR) or end it: kill -USR1 HOLDER_PID releases the
set (PID then runs without its locks). If a lock is lost (its file replaced, or a network file
system's server gives it away), or the holder itself dies or is told to end otherwise (SIGTERM,
SIGINT, SIGHUP) while PID runs, PID is fenced: see --on-lost.

Options:
  --pid PID               the process to hold the locks for (required)
  --shared                take shared locks (default: exclusive)
  --and-shared NAME       lock NAME too, shared; repeatable
  --wait[=SECONDS]        wait until every lock is free (at most SECONDS), holding none of them
                          meanwhile, instead of failing at once; SIGINT, SIGTERM or SIGHUP
                          meanwhile gives up (nothing held, exit 128+N)
  --auto-create           create missing files (mode 0600); they are deleted when PID ends
  --lock-type posix|ofd   the lock kind (default posix)
  --on-lost kill|term|none
                          what happens to PID when a lock is lost: SIGKILL (default), SIGTERM
                          then SIGKILL after --grace, or nothing (reported only)
  --grace SECONDS         --on-lost term: the time between SIGTERM and SIGKILL (default 5)
  --check-interval SECONDS
                          how often the holder checks each lock (default 2)
  --fence-after SECONDS   fence when no check has completed for this long (default 3 checks):
                          keep it below the time your file system takes to give a lost lock away
  -h, --help              show this help

Exit status: 0 held (the holder's pid on stdout); 75 a lock is busy (or --wait timed out); 64
usage error; 66 DIR or a file is missing (pass --auto-create); 77 permission denied; 71 other
errors (PID does not exist, or ended before the locks were held).
`;

const OPTIONS: Record<string, OptSpec> = {
  pid: { kind: 'value' },
  shared: { kind: 'flag' },
  'and-shared': { kind: 'repeat' },
  wait: { kind: 'optional' },
  'auto-create': { kind: 'flag' },
  'lock-type': { kind: 'value' },
  'on-lost': { kind: 'value' },
  grace: { kind: 'value' },
  'check-interval': { kind: 'value' },
  'fence-after': { kind: 'value' },
};

export async function hold(args: string[]): Promise<number> {
  const p = parse('hold', args, OPTIONS);
  if (p.help) {
    out(HELP);
    return 0;
  }
  const o = p.options;
  const pidText = o.get('pid');
  if (pidText === undefined) throw usage('hold', 'missing --pid PID');
  if (typeof pidText !== 'string' || !/^[1-9]\d{0,9}$/.test(pidText)) throw usage('hold', `invalid --pid value '${String(pidText)}'`);
  if (p.positionals.length < 2) throw usage('hold', p.positionals.length === 0 ? 'missing DIR and NAME' : 'missing NAME');
  const [dirArg, ...names] = p.positionals;
  const pathMode = dirArg === '-';
  const shared = o.has('shared');
  const requests = [...names.map((name) => ({ name, shared })), ...(p.lists.get('and-shared') ?? []).map((name) => ({ name, shared: true }))];
  for (const r of requests) {
    if (r.name === '') throw usage('hold', 'invalid NAME: must not be empty');
    if (pathMode) r.name = absoluteAsKernel(r.name);
  }
  const lockType = oneOf('hold', 'lock-type', o.get('lock-type'), ['posix', 'ofd'] as const);
  const onLost = oneOf('hold', 'on-lost', o.get('on-lost'), ['kill', 'term', 'none'] as const);
  const wait = o.get('wait');
  const checkInterval = seconds('hold', 'check-interval', o.get('check-interval'));
  if (checkInterval === 0) throw usage('hold', '--check-interval must be more than 0');

  let ls: Api.LockSpace;
  try {
    ls = lib().LockSpace.open(pathMode ? null : dirArg, { lockType });
  } catch (err) {
    rethrowArgError('hold', err, 'DIR');
  }
  // While --wait waits, a terminating signal gives the bind up: the holder (in a session of its own,
  // so the signal never reaches it) lets go of everything and exits before this command does.
  const controller = new AbortController();
  let received: NodeJS.Signals | undefined;
  const onSignal = (signal: NodeJS.Signals): void => {
    received ??= signal;
    controller.abort();
  };
  const giveUpOn: NodeJS.Signals[] = wait === undefined ? [] : ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const s of giveUpOn) process.on(s, onSignal);
  let bound: Api.BoundSet;
  try {
    const options = {
      autoCreate: o.has('auto-create'),
      onLost,
      graceMs: seconds('hold', 'grace', o.get('grace')),
      checkInterval,
      fenceAfter: seconds('hold', 'fence-after', o.get('fence-after')),
    };
    bound = await ls.holdFor(
      Number(pidText),
      requests,
      wait === undefined ? options : { ...options, wait: true, timeout: seconds('hold', 'wait', wait), signal: controller.signal },
    );
  } catch (err) {
    const code = errCode(err);
    if (code === 'ABORT_ERR' && received) return 128 + signalNumber(received);
    const where = (err as { path?: string }).path;
    if (code === 'EBUSY') throw new Exit((err as Error).message.replace(/^EBUSY: /, ''), EX_TEMPFAIL, 'hold');
    if (code === 'ETIMEDOUT') throw new Exit(`timed out waiting for '${where}'`, EX_TEMPFAIL, 'hold');
    if (code === 'ENOENT' && where !== undefined && !o.has('auto-create')) {
      throw new Exit(`'${where}' does not exist (pass --auto-create to create it)`, EX_NOINPUT, 'hold');
    }
    rethrowArgError('hold', err, 'NAME');
  } finally {
    for (const s of giveUpOn) process.off(s, onSignal);
  }
  out(String(bound.holderPid));
  return 0;
}
