/* lockspace run DIR|- NAME -- COMMAND: hold a lock while a command runs, like flock(1), whose
 * options it also takes. */
import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as nodePath from 'node:path';

import type * as Api from '../index';
import { absoluteAsKernel } from '../paths';
import { commandName, Holder, locksOn, readProcLocks } from '../proc-locks';
import { errCode, Exit, EX_CANNOT_EXEC, EX_NOINPUT, EX_NOT_FOUND, EX_SOFTWARE, EX_TEMPFAIL, lib, oneOf, OptSpec, out, parse, Parsed, rethrowArgError, seconds, usage } from './args';
import { signalTree, stopTree, treeAlive } from './fence';
import { caughtSignals, disposition, signalNumber } from './signals';

export const HELP = `Usage: lockspace run [OPTIONS] [--] DIR|- NAME [--] COMMAND [ARGS...]
       lockspace run [OPTIONS] [--] DIR|- NAME -c COMMAND
       lockspace run [OPTIONS] --and NAME2 --and-shared NAME3 [--] DIR|- NAME [--] COMMAND...

Acquire the lock on resource NAME of the lockspace directory DIR (created 0700 if missing), run
COMMAND while holding it, release it when COMMAND exits, and exit with COMMAND's status. With
DIR '-', NAME is the path of the file to lock (path mode; a relative path is taken from the
current directory, and the path is resolved as the kernel resolves it). Like flock(1), but the
lock is lockspace's: fcntl on byte 0, length 1, so it excludes libvirt's virtlockd and Python's
fcntl.lockf(fd, LOCK_EX, 1, 0) on the same file (not flock(1): flock(2) locks are another kind).

Options end at the first '--' or at DIR; a NAME (or DIR) starting with '-' goes after a '--':
  lockspace run DIR -- -name -- COMMAND
After DIR and NAME, one '--' is dropped and the rest is COMMAND with its own arguments.

Several resources: --and NAME (and --and-shared NAME) add names to NAME; all are taken or none,
and a wait holds none of them while it waits (two runs taking A,B and B,A never deadlock).

Options:
  --shared             take a shared lock (default: exclusive)
  --and NAME           lock NAME too (shared with --shared, else exclusive); repeatable
  --and-shared NAME    lock NAME too, shared whatever --shared says; repeatable
  --wait[=SECONDS]     wait until the lock is free (at most SECONDS, decimals allowed)
                       instead of failing at once; if the file is deleted meanwhile (by an
                       --auto-create holder), wait until it exists again, and say so on
                       stderr after a second
  --auto-create        create the resource file (mode 0600) if missing, and delete it after
                       COMMAND exits unless another process still holds it
  --records            write a holder record into the lock file (host, pid, time, and for an
                       exclusive lock the next generation), shown by 'lockspace status' on
                       every host that sees the file
  --label=LABEL        the record's label (e.g. the VM's name); implies --records
  --on-lost kill|term|none
                       what happens to COMMAND, and every process it started, when a lock is
                       known lost (on a network file system, checked every 2 s): SIGKILL
                       (default), SIGTERM then SIGKILL after --grace, or nothing; a line on
                       stderr says so in every case
  --grace SECONDS      --on-lost term: the time between SIGTERM and SIGKILL (default 5)
  -h, --help           show this help

flock(1)'s options, with flock's meaning:
  -s, --shared         take a shared lock
  -x, -e, --exclusive  take an exclusive lock (the default)
  -n, --nonblock       fail at once if the lock is busy
  -w, --timeout SECONDS
                       wait at most SECONDS (decimals allowed; 0 is -n)
  -E, --conflict-exit-code CODE
                       exit with CODE (0-255) when the lock is busy or -w runs out
  -o, --close          accepted; COMMAND never inherits the lock anyway (see below)
  -c, --command COMMAND
                       run COMMAND, one argument, with sh -c
Short options bundle as in flock (-xn, -w5).

Waiting: without --wait, -n or -w, run fails at once when the lock is busy (exit 75), unless
the command line uses flock's spelling (any short option, or --exclusive, --nonblock,
--timeout, --conflict-exit-code, --close, --command): then it waits as flock does, and a busy
lock (-n) or a -w that runs out exits 1, flock's status (or -E's CODE).

Unlike flock(1), a missing file is not created without --auto-create (exit 66): a lockspace
file that is missing is usually a mistyped NAME, and a file created by accident would stay.

The lock is held by this lockspace process, not by COMMAND: lock descriptors are close-on-exec
and never inherited. Every signal that can be caught is forwarded to COMMAND while it runs, and
this process exits only after COMMAND has. While waiting for the lock, a signal whose default
action terminates cancels the wait instead (exit 128+N, COMMAND not run). If this process is
killed with SIGKILL, the lock is gone while COMMAND may still run.

Exit status: COMMAND's status, or 128+N if signal N killed it; 75 the lock is busy (or --wait
timed out), with a one-line message (1 or -E's CODE with flock's spelling, see Waiting); 64
usage error (bad option, bad NAME); 66 the resource file does not exist (pass --auto-create);
77 permission denied; 126 COMMAND cannot be executed; 127 COMMAND not found; 71 other system
errors.
`;

const OPTIONS: Record<string, OptSpec> = {
  shared: { kind: 'flag', short: 's' },
  wait: { kind: 'optional' },
  'auto-create': { kind: 'flag' },
  and: { kind: 'repeat' },
  'and-shared': { kind: 'repeat' },
  exclusive: { kind: 'flag', short: 'xe' },
  nonblock: { kind: 'flag', short: 'n' },
  timeout: { kind: 'value', short: 'w' },
  'conflict-exit-code': { kind: 'value', short: 'E' },
  close: { kind: 'flag', short: 'o' },
  command: { kind: 'value', short: 'c' },
  records: { kind: 'flag' },
  label: { kind: 'value' },
  'on-lost': { kind: 'value' },
  grace: { kind: 'value' },
};

/** flock(1)'s long options that lockspace's own lack (--shared is in both). */
const FLOCK_LONG = ['exclusive', 'nonblock', 'timeout', 'conflict-exit-code', 'close', 'command'];

/** --on-lost term: SIGTERM, then SIGKILL after this long (as the holder of bound sets does). */
const DEFAULT_GRACE_MS = 5000;

/** flock(1)'s exit status for a busy lock or a timeout. */
const FLOCK_CONFLICT = 1;

/** What to do, from the parsed command line. */
interface Invocation {
  shared: boolean;
  autoCreate: boolean;
  /** Holder records: undefined off, else the label ('' none). */
  label: string | undefined;
  /** null: fail at once; undefined: wait without a limit; else the limit in ms. */
  waitMs: number | undefined | null;
  /** The exit status for a busy lock or a wait that ran out. */
  conflictStatus: number;
  /** What a lost lock does to COMMAND. */
  onLost: 'kill' | 'term' | 'none';
  graceMs: number;
  argv: string[];
}

function milliseconds(option: string, value: string): number {
  if (!/^(\d+(\.\d*)?|\.\d+)$/.test(value)) throw usage('run', `invalid ${option} value '${value}': expected SECONDS (e.g. 10 or 0.5)`);
  return Number(value) * 1000;
}

/**
 * lockspace's defaults (fail at once, exit 75), or flock(1)'s (wait, exit 1) when the command line
 * uses flock's spelling: lockspace's long options keep the meaning they always had, and a command
 * line written for flock does what a flock user expects.
 */
function invocation(p: Parsed): Invocation {
  const o = p.options;
  const flockStyle = p.shortForms.size > 0 || FLOCK_LONG.some((name) => o.has(name));
  const waits = ['wait', 'nonblock', 'timeout'].filter((name) => o.has(name));
  if (waits.length > 1) throw usage('run', `--${waits[0]} and --${waits[1]} contradict each other: give one`);
  if (o.has('shared') && o.has('exclusive')) throw usage('run', '--shared and --exclusive contradict each other: give one');
  let waitMs: number | undefined | null = flockStyle ? undefined : null;
  const wait = o.get('wait');
  if (wait !== undefined) waitMs = wait === true ? undefined : milliseconds('--wait', wait);
  if (o.has('nonblock')) waitMs = null;
  const timeout = o.get('timeout');
  if (typeof timeout === 'string') waitMs = milliseconds('-w', timeout) || null; // flock: -w 0 is -n
  let conflictStatus = flockStyle ? FLOCK_CONFLICT : EX_TEMPFAIL;
  const code = o.get('conflict-exit-code');
  if (typeof code === 'string') {
    if (!/^\d{1,3}$/.test(code) || Number(code) > 255) throw usage('run', `invalid -E value '${code}': expected an exit status from 0 to 255`);
    conflictStatus = Number(code);
  }
  let argv = p.rest;
  const command = o.get('command');
  if (typeof command === 'string') {
    if (p.rest.length > 0) throw usage('run', `-c takes COMMAND as one argument; unexpected '${p.rest[0]}'`);
    argv = ['sh', '-c', command];
  }
  if (argv.length === 0) throw usage('run', 'missing COMMAND');
  const labelOpt = o.get('label');
  const label = typeof labelOpt === 'string' ? labelOpt : o.has('records') ? '' : undefined;
  if (label !== undefined && (Buffer.byteLength(label) > 256 || label.includes('\0'))) {
    throw usage('run', 'invalid --label: at most 256 bytes, no NUL');
  }
  const onLost = oneOf('run', 'on-lost', o.get('on-lost'), ['kill', 'term', 'none'] as const) ?? 'kill';
  const graceMs = seconds('run', 'grace', o.get('grace')) ?? DEFAULT_GRACE_MS;
  return { shared: o.has('shared'), autoCreate: o.has('auto-create'), label, waitMs, conflictStatus, onLost, graceMs, argv };
}

/**
 * A lock known lost (its signal aborted: on a network file system, the background check) leaves
 * COMMAND working without it while another host may take it: COMMAND and every process it started
 * are fenced as `onLost` says, and stderr says so. `stop()` once COMMAND has exited; `done` settles
 * once a fence begun is over (--on-lost term: its SIGKILL sent, or nothing of the tree left).
 */
function fenceOnLoss(
  signal: AbortSignal,
  child: ChildProcess,
  command: string,
  onLost: 'kill' | 'term' | 'none',
  graceMs: number,
): { stop(): void; done: Promise<void> } {
  let settle!: () => void;
  const done = new Promise<void>((resolve) => (settle = resolve));
  let fencing = false;
  const onAbort = (): void => {
    const reason = signal.reason as { message?: string } | undefined;
    const what =
      onLost === 'kill'
        ? 'killing it and what it started (SIGKILL)'
        : onLost === 'term'
          ? `stopping it and what it started (SIGTERM, SIGKILL after ${graceMs / 1000} s)`
          : 'it runs on without it (--on-lost none)';
    process.stderr.write(`lockspace: ${command}'s lock is lost (${reason?.message ?? 'lost'}): ${what}\n`);
    if (onLost === 'none' || child.pid === undefined) return settle();
    fencing = true;
    const tree = stopTree(child.pid);
    if (onLost === 'kill') {
      signalTree(tree, 'SIGKILL');
      return settle();
    }
    signalTree(tree, 'SIGTERM');
    signalTree(tree, 'SIGCONT');
    const end = Date.now() + graceMs;
    const watch = setInterval(() => {
      if (Date.now() < end && treeAlive(tree)) return;
      clearInterval(watch);
      signalTree(tree, 'SIGKILL');
      settle();
    }, Math.min(100, graceMs));
  };
  if (signal.aborted) onAbort();
  else signal.addEventListener('abort', onAbort, { once: true });
  return {
    stop() {
      signal.removeEventListener('abort', onAbort);
      if (!fencing) settle();
    },
    done,
  };
}

/** One line describing who holds `path`, from /proc/locks (or the error's F_GETLK pid). */
function describeHolders(path: string, err: unknown): string {
  let holders: Holder[] = [];
  try {
    const st = fs.statSync(path, { bigint: true });
    const locks = readProcLocks(new Set([st.ino]));
    if (locks !== null) holders = locksOn(locks, st).holders.filter((h) => h.pid !== process.pid);
  } catch {
    holders = [];
  }
  if (holders.length === 0) {
    const pid = (err as Api.LockspaceError | undefined)?.holderPid;
    // No pid and not in /proc/locks: a network file system's lock (F_GETLK's pid there is one on
    // the holder's own host, so lockspace reports none).
    if (pid === undefined) return ' (held by another host or process)';
    holders = [{ pid, command: commandName(pid), type: 'POSIX', mode: 'exclusive' }];
  }
  const mode = holders.some((h) => h.mode === 'exclusive') ? 'exclusive' : 'shared';
  const who = holders
    .slice(0, 3)
    .map((h) => (h.pid === null ? `an ${h.type} lock (pid unknown)` : `pid ${h.pid}${h.command ? ` ${h.command}` : ''}`))
    .join(', ');
  return ` (${mode} lock held by ${who}${holders.length > 3 ? `, and ${holders.length - 3} more` : ''})`;
}

function codeError(code: string): Error {
  return Object.assign(new Error(code), { code });
}

/** Resolves once `path` exists; rejects with code ETIMEDOUT after `ms`, ABORT_ERR on `signal`. */
function untilExists(path: string, ms: number | undefined, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const watcher = fs.watch(nodePath.dirname(path), () => check()); // inotify: no polling
    let timer: NodeJS.Timeout | undefined;
    const done = (err?: Error): void => {
      watcher.close();
      if (timer) clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      if (err) reject(err);
      else resolve();
    };
    const check = (): void => {
      if (fs.existsSync(path)) done();
    };
    const onAbort = (): void => done(codeError('ABORT_ERR'));
    signal.addEventListener('abort', onAbort);
    if (ms !== undefined) timer = setTimeout(() => done(codeError('ETIMEDOUT')), ms);
    check();
  });
}

interface Request {
  shared: boolean;
  autoCreate: boolean;
  label: string | undefined;
  waitMs: number | undefined | null;
  signal: AbortSignal;
}

/** How long a wait for a deleted file to exist again goes before it is reported on stderr. */
const FILE_WAIT_NOTICE_MS = 1000;

/** Acquires; with --wait, a file deleted while waited for is waited for until it exists again. A
 *  file missing when the wait begins is ENOENT (exit 66): only a deletion makes it wait for one. */
async function acquire(ls: Api.LockSpace, resource: string, path: string, r: Request): Promise<Api.Lease> {
  const { shared, autoCreate, waitMs, signal } = r;
  const label = r.label ? r.label : undefined;
  if (waitMs === null) return ls.acquire(resource, { shared, autoCreate, label });
  const end = waitMs === undefined ? undefined : performance.now() + waitMs;
  const left = (): number | undefined => (end === undefined ? undefined : Math.max(0, end - performance.now()));
  let existed = autoCreate || fs.existsSync(path);
  for (;;) {
    try {
      return await ls.acquire(resource, { shared, autoCreate, label, wait: true, timeout: left(), signal });
    } catch (err) {
      if (errCode(err) !== 'ENOENT' || !existed) throw err;
    }
    // A wait for a file, not for a lock, would look like a hang: say so once it lasts.
    const notice = setTimeout(() => {
      process.stderr.write(`lockspace: waiting for '${path}' to exist: it was deleted while this waited for its lock (by an --auto-create holder?)\n`);
    }, FILE_WAIT_NOTICE_MS);
    try {
      await untilExists(path, left(), signal);
    } finally {
      clearTimeout(notice);
    }
    existed = true;
  }
}

/** Several resources, all or nothing (LockSpace#acquireAll); a missing file is ENOENT, not waited for. */
function acquireAll(ls: Api.LockSpace, requests: { name: string; shared: boolean }[], r: Request): Promise<Api.LeaseSet> {
  const { autoCreate, waitMs, signal } = r;
  const label = r.label ? r.label : undefined;
  if (waitMs === null) return ls.acquireAll(requests, { autoCreate, label });
  return ls.acquireAll(requests, { autoCreate, label, wait: true, timeout: waitMs, signal });
}

export async function run(args: string[]): Promise<number> {
  const p = parse('run', args, OPTIONS, 2);
  if (p.help) {
    out(HELP);
    return 0;
  }
  if (p.positionals.length < 2) throw usage('run', p.positionals.length === 0 ? 'missing DIR and NAME' : 'missing NAME');
  const { shared, autoCreate, label, waitMs, conflictStatus, onLost, graceMs, argv } = invocation(p);
  const [dirArg, nameArg] = p.positionals;
  const pathMode = dirArg === '-';
  if (nameArg === '') throw usage('run', 'invalid NAME: must not be empty');
  if (pathMode && nameArg.endsWith('/')) throw usage('run', `invalid NAME '${nameArg}': must name a file, not end with "/"`);
  // Path mode: the file another process opening NAME reaches (no lexical '..' removal).
  const resource = pathMode ? absoluteAsKernel(nameArg) : nameArg;

  let ls: Api.LockSpace;
  try {
    ls = lib().LockSpace.open(pathMode ? null : dirArg, { records: label !== undefined });
  } catch (err) {
    rethrowArgError('run', err, 'DIR');
  }
  const path = pathMode ? resource : nodePath.join(ls.directory!, resource);
  const more = [
    ...(p.lists.get('and') ?? []).map((name) => ({ name, shared })),
    ...(p.lists.get('and-shared') ?? []).map((name) => ({ name, shared: true })),
  ];
  for (const m of more) {
    if (m.name === '') throw usage('run', 'invalid NAME: must not be empty');
    if (pathMode) m.name = absoluteAsKernel(m.name);
  }

  // Before COMMAND starts, a terminating signal cancels the wait; once it runs, every signal goes to it.
  const controller = new AbortController();
  let received: NodeJS.Signals | undefined;
  let child: ReturnType<typeof spawn> | undefined;
  const running = (): boolean => child !== undefined && child.exitCode === null && child.signalCode === null;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (running()) child!.kill(signal);
    else if (child === undefined && disposition(signal) === 'terminate') {
      received ??= signal;
      controller.abort();
    }
    if (disposition(signal) === 'stop') process.kill(process.pid, 'SIGSTOP'); // job control: stop as asked
  };
  const signals = caughtSignals();
  for (const s of signals) process.on(s, onSignal);
  try {
    let lease: { release(): Promise<void>; readonly signal: AbortSignal };
    try {
      const request = { shared, autoCreate, label, waitMs, signal: controller.signal };
      lease = more.length === 0 ? await acquire(ls, resource, path, request) : await acquireAll(ls, [{ name: resource, shared }, ...more], request);
    } catch (err) {
      const code = errCode(err);
      // Which file: the error's, for a set of several.
      const where = (err as { path?: string }).path ?? path;
      if (code === 'ABORT_ERR' && received) return 128 + signalNumber(received);
      if (code === 'EBUSY') throw new Exit(`'${where}' is busy${describeHolders(where, err)}`, conflictStatus);
      if (code === 'ETIMEDOUT') {
        const seconds = (waitMs ?? 0) / 1000;
        throw new Exit(`timed out after ${seconds} s waiting for '${where}'${describeHolders(where, undefined)}`, conflictStatus);
      }
      if (code === 'ENOENT' && !autoCreate) {
        throw new Exit(`'${where}' does not exist (pass --auto-create to create it)`, EX_NOINPUT);
      }
      rethrowArgError('run', err, 'NAME');
    }
    try {
      if (received) return 128 + signalNumber(received); // signalled just as the lock came
      return await new Promise<number>((resolve) => {
        const [command, ...commandArgs] = argv;
        const started = spawn(command, commandArgs, { stdio: 'inherit' });
        child = started;
        started.on('error', (err: NodeJS.ErrnoException) => {
          if (started.pid !== undefined) {
            // A signal it may not be sent (EPERM: it became another user, as under sudo). It runs
            // on, so the lock stays until it ends: only 'exit' ends the wait.
            process.stderr.write(`lockspace: could not pass a signal on to ${command}: ${err.message}\n`);
            return;
          }
          const notFound = err.code === 'ENOENT';
          process.stderr.write(`lockspace: ${command}: ${notFound ? 'command not found' : err.message}\n`);
          resolve(notFound ? EX_NOT_FOUND : EX_CANNOT_EXEC);
        });
        const fence = fenceOnLoss(lease.signal, started, command, onLost, graceMs);
        started.on('exit', (code, signal) => {
          fence.stop();
          // A fence under way reaches what COMMAND started, too, before this process goes.
          void fence.done.then(() => resolve(signal ? 128 + signalNumber(signal) : (code ?? EX_SOFTWARE)));
        });
      });
    } finally {
      await lease.release();
    }
  } finally {
    for (const s of signals) process.off(s, onSignal);
  }
}
