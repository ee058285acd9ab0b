/* Shared test helpers: temp dirs, outside (Python) lock checkers, lslocks, holder processes,
 * fd counting and a message-driven worker-thread client. */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as crypto from 'crypto';
import { spawn, spawnSync, ChildProcess } from 'child_process';
import { Worker } from 'worker_threads';
import { LockSpace } from '../lib';
import { _debug } from '../lib/internal';

export const FIXTURES = path.join(__dirname, 'fixtures');
export const DIST_INDEX = path.join(__dirname, '../dist/lib/index.js');
export const DIST_INTERNAL = path.join(__dirname, '../dist/lib/internal.js');

/* ------------------------------------------------------------------ temp dirs */

/** A fresh, canonical (realpath) temp directory. */
export function mkTmpDir(prefix = 'lockspace-test-'): string {
  return fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), prefix)));
}

export function rmTmpDir(dir: string | undefined): void {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
}

/**
 * Registers beforeEach/afterEach that give every test its own temp dir. After each test (and after
 * `beforeCleanup`, e.g. terminating workers) the process-wide lock table must be empty; leftovers are
 * released so that one failing test does not cascade into the next, then the test fails.
 */
export function useTmpDir(opts: { beforeCleanup?: () => unknown } = {}): { readonly dir: string } {
  const box = { dir: '' };
  beforeEach(() => {
    box.dir = mkTmpDir();
  });
  afterEach(async () => {
    try {
      if (opts.beforeCleanup) await opts.beforeCleanup();
      await expectTableEmpty(box.dir);
    } finally {
      rmTmpDir(box.dir);
    }
  });
  return box;
}

function tableCounts(s: Stats) {
  return { resources: s.resources, leases: s.leases, waiters: s.waiters, kernelWaits: s.kernelWaits };
}
const EMPTY = { resources: 0, leases: 0, waiters: 0, kernelWaits: 0 };
const isEmpty = (s: Stats) => s.resources === 0 && s.leases === 0 && s.waiters === 0 && s.kernelWaits === 0;

/** Asserts nothing is held, queued or waited for anywhere in the process (cleaning up if not). */
export async function expectTableEmpty(dir: string): Promise<void> {
  let s = stats();
  if (!isEmpty(s)) {
    // Asynchronous teardown (worker exit, kernel-wait threads) may still be finishing.
    await waitFor(() => isEmpty(stats()), 'empty table', 5000).catch(() => undefined);
    s = stats();
  }
  if (!isEmpty(s)) releaseLeftovers(dir);
  expect(tableCounts(s)).toEqual(EMPTY);
}

function releaseLeftovers(dir: string): void {
  const dirs: (string | null)[] = [null];
  const walk = (d: string) => {
    let st: fs.Stats;
    try {
      st = fs.lstatSync(d);
    } catch {
      return;
    }
    if (!st.isDirectory()) return;
    dirs.push(d);
    for (const n of fs.readdirSync(d)) walk(path.join(d, n));
  };
  if (dir) walk(dir);
  for (const d of dirs) {
    try {
      const ls = LockSpace.open(d);
      for (const r of ls.resources()) {
        for (const o of r.owners) {
          try {
            ls.releaseSync(r.name, o);
          } catch {
            /* best effort */
          }
        }
      }
    } catch {
      /* best effort */
    }
  }
  LockSpace.closeIdleFds();
}

export function sha256hex(s: string | Buffer): string {
  return crypto.createHash('sha256').update(s).digest('hex');
}

export function listDir(dir: string): string[] {
  return fs.readdirSync(dir).sort();
}

/* ------------------------------------------------------------------ python */

let pythonExe: string | undefined;
/** The real python3 interpreter (not the pyenv shim), so a spawned child's pid is python's pid. */
export function python(): string {
  if (!pythonExe) {
    const r = spawnSync('python3', ['-c', 'import sys; print(sys.executable)'], { encoding: 'utf8' });
    if (r.status !== 0 || !r.stdout.trim()) throw new Error(`cannot run python3: ${r.stderr}`);
    pythonExe = r.stdout.trim();
  }
  return pythonExe;
}

export type ProbeMode = 'exclusive' | 'shared';
export type ProbeResult = 'locked' | 'busy';

// Try fcntl.lockf(fd, LOCK_EX|LOCK_NB or LOCK_SH|LOCK_NB, 1, 0) on byte 0 from another process.
// Never creates the file. Prints 'locked' (we got it: nobody conflicting holds it) or 'busy'.
const PROBE_PY = `
import fcntl, os, sys, errno
p, mode = sys.argv[1], sys.argv[2]
fd = os.open(p, os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK)
cmd = (fcntl.LOCK_EX if mode == 'exclusive' else fcntl.LOCK_SH) | fcntl.LOCK_NB
try:
    fcntl.lockf(fd, cmd, 1, 0)
    print('locked')
except OSError as e:
    if e.errno in (errno.EAGAIN, errno.EACCES):
        print('busy')
    else:
        raise
`;

function parseProbe(p: string, status: number | null, stdout: string, stderr: string): ProbeResult {
  const out = stdout.trim();
  if (status !== 0 || (out !== 'locked' && out !== 'busy')) {
    throw new Error(`outside probe of ${p} failed (status ${status}): ${stdout} ${stderr}`);
  }
  return out;
}

/** Outside checker: can another process take the lock on byte 0 right now? */
export function outsideProbe(p: string, mode: ProbeMode = 'exclusive'): Promise<ProbeResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(python(), ['-c', PROBE_PY, p, mode], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d) => (err += d));
    child.on('error', reject);
    child.on('close', (status) => {
      try {
        resolve(parseProbe(p, status, out, err));
      } catch (e) {
        reject(e);
      }
    });
  });
}

/** Synchronous variant (blocks this thread only; the kernel answers, not our event loop). */
export function outsideProbeSync(p: string, mode: ProbeMode = 'exclusive'): ProbeResult {
  const r = spawnSync(python(), ['-c', PROBE_PY, p, mode], { encoding: 'utf8' });
  return parseProbe(p, r.status, r.stdout, r.stderr);
}

/* ------------------------------------------------------------------ holder process */

// Holds lockf locks on each path until a line (or EOF) arrives on stdin.
const HOLDER_PY = `
import fcntl, os, sys
mode = sys.argv[1]
fds = []
for p in sys.argv[2:]:
    fd = os.open(p, os.O_RDWR | os.O_NOFOLLOW)
    cmd = (fcntl.LOCK_EX if mode == 'exclusive' else fcntl.LOCK_SH) | fcntl.LOCK_NB
    try:
        fcntl.lockf(fd, cmd, 1, 0)
    except OSError as e:
        print('busy %d' % e.errno, flush=True)
        sys.exit(3)
    fds.append(fd)
print('locked %d' % os.getpid(), flush=True)
cmd = sys.stdin.readline().strip()
for p in sys.argv[2:]:
    if cmd == 'replace':  # a new file takes the name while the old inode is still locked
        with open(p + '.new', 'w'):
            pass
        os.rename(p + '.new', p)
    elif cmd == 'unlink':
        os.unlink(p)
for fd in fds:
    fcntl.lockf(fd, fcntl.LOCK_UN, 1, 0)
    os.close(fd)
print('released', flush=True)
`;

export interface Holder {
  pid: number;
  child: ChildProcess;
  /** Tell the holder to unlock and exit; resolves once it has exited. */
  release(): Promise<void>;
  /** Python holder only: replace (rename a new file over) or unlink each path, then unlock and exit. */
  releaseAfter(action: 'replace' | 'unlink'): Promise<void>;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

function waitExit(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
  });
}

/** Spawns a python process that holds lockf locks (byte 0, len 1) on the given existing files. */
export function spawnPythonHolder(paths: string | string[], mode: ProbeMode = 'exclusive'): Promise<Holder> {
  const list = Array.isArray(paths) ? paths : [paths];
  const child = spawn(python(), ['-c', HOLDER_PY, mode, ...list], { stdio: ['pipe', 'pipe', 'pipe'] });
  return holderFromChild(child, 'python holder');
}

/** Common protocol: child prints 'locked <pid>' when it holds, releases on a stdin line. */
export function holderFromChild(child: ChildProcess, what: string): Promise<Holder> {
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    let done = false;
    const exited = waitExit(child);
    child.stderr!.setEncoding('utf8').on('data', (d) => (err += d));
    child.on('error', (e) => {
      if (!done) {
        done = true;
        reject(e);
      }
    });
    child.on('exit', (code, sig) => {
      if (!done) {
        done = true;
        reject(new Error(`${what} exited early (code ${code}, signal ${sig}): ${out} ${err}`));
      }
    });
    child.stdout!.setEncoding('utf8').on('data', (d) => {
      out += d;
      const m = /locked (\d+)/.exec(out);
      if (m && !done) {
        done = true;
        const pid = Number(m[1]);
        resolve({
          pid,
          child,
          async release() {
            if (child.exitCode === null && child.signalCode === null) {
              child.stdin!.end('release\n');
            }
            await exited;
          },
          async releaseAfter(action: 'replace' | 'unlink') {
            child.stdin!.end(`${action}\n`);
            await exited;
            if (child.exitCode !== 0) throw new Error(`${what} failed to ${action}: ${err}`);
          },
          async kill(signal: NodeJS.Signals = 'SIGKILL') {
            if (child.exitCode === null && child.signalCode === null) child.kill(signal);
            await exited;
          },
        });
      } else if (/busy/.test(out) && !done) {
        done = true;
        reject(new Error(`${what} could not take the lock: ${out}`));
      }
    });
  });
}

/* ------------------------------------------------------------------ namespaces (root) */

/** A command prefix: its own pid namespace and /proc, which cannot see this process or its children. */
export const IN_PID_NAMESPACE = ['unshare', '-p', '-f', '--mount-proc'];

/** A command prefix: its own mount namespace, with `over` bind-mounted on /proc/locks. */
export function procLocksReplacedBy(over: string): string[] {
  return ['unshare', '-m', 'sh', '-c', `mount --bind '${over}' /proc/locks && exec "$@"`, 'sh'];
}

/** A command prefix: its own mount namespace with an empty /proc (no /proc/self, no /proc/locks). */
export const WITHOUT_PROC = ['unshare', '-m', 'sh', '-c', 'mount -t tmpfs none /proc && exec "$@"', 'sh'];

/** A command prefix: run as nobody (uid and gid 65534, no supplementary groups). */
export const AS_NOBODY = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'];

/** A Unix socket file in `dir` (bind-mounted on /proc/locks, it cannot be opened: ENXIO). */
export function socketFile(dir: string): string {
  const p = path.join(dir, 'socket');
  const r = spawnSync(python(), ['-c', 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])', p], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`cannot make a socket file: ${r.stderr}`);
  return p;
}

/* ------------------------------------------------------------------ lslocks */

export interface LslocksEntry {
  pid: number | null;
  type: string;
  mode: string;
  path: string | null;
  start: number;
  end: number;
  inode: number;
  majmin: string;
}

/** One lslocks read of the locks on `p` (matched by device+inode, or by path). */
function lslocksOnce(p: string, st: fs.Stats, majmin: string): LslocksEntry[] {
  const r = spawnSync('lslocks', ['--json', '--output', 'PID,TYPE,MODE,PATH,START,END,INODE,MAJ:MIN'], {
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`lslocks failed: ${r.stderr}`);
  const parsed = JSON.parse(r.stdout || '{"locks":[]}');
  const locks: any[] = Array.isArray(parsed) ? parsed : parsed.locks ?? [];
  return locks
    .map((l) => ({
      pid: l.pid === null || l.pid === undefined ? null : Number(l.pid),
      type: String(l.type),
      mode: String(l.mode),
      path: l.path ?? null,
      start: Number(l.start),
      end: Number(l.end),
      inode: Number(l.inode),
      majmin: String(l['maj:min']),
    }))
    .filter((l) => (l.inode === st.ino && l.majmin === majmin) || l.path === p);
}

/**
 * Locks on `p` as seen by lslocks.
 *
 * /proc/locks is a seq_file read in chunks while other processes (e.g. a parallel Jest worker) take and
 * drop locks, so a line can be read twice, or skipped (a lock released before the read position shifts
 * the rest back). Repeats that cannot be real are dropped: two identical POSIX locks of one process
 * (the kernel merges them) and two identical held WRITE locks (they would conflict). Identical shared
 * OFD locks can be real (two open file descriptions). Then three reads vote: each entry counts as
 * often as the middle one of its three counts, so one read that skipped a line or read it twice is
 * outvoted.
 */
export function lslocksFor(p: string): LslocksEntry[] {
  const st = fs.statSync(p);
  const majmin = `${Math.floor(st.dev / 256) & 0xfff}:${(st.dev & 0xff) | ((st.dev >> 12) & 0xfff00)}`;
  const reads = [0, 1, 2].map(() => {
    const counts = new Map<string, number>();
    for (const l of lslocksOnce(p, st, majmin)) {
      const key = JSON.stringify(l);
      const impossibleRepeat = l.type === 'POSIX' || l.mode === 'WRITE';
      counts.set(key, impossibleRepeat ? 1 : (counts.get(key) ?? 0) + 1);
    }
    return counts;
  });
  const keys = new Set(reads.flatMap((r) => [...r.keys()]));
  return [...keys].flatMap((key) => {
    const middle = reads.map((r) => r.get(key) ?? 0).sort((a, b) => a - b)[1];
    return Array.from({ length: middle }, () => JSON.parse(key) as LslocksEntry);
  });
}

/* ------------------------------------------------------------------ fds / stats */

/** Number of open fds in this process, after closing the lock library's idle fd cache. */
export function countFds(): number {
  LockSpace.closeIdleFds();
  return fs.readdirSync('/proc/self/fd').length;
}

export interface Stats {
  resources: number;
  leases: number;
  waiters: number;
  kernelWaits: number;
  idleFds: number;
}

/**
 * The native table counts, after closing the idle-fd cache: the implementation counts idle (unlocked,
 * cached) descriptors as table entries in `resources`, so tests look at the table without them.
 */
export function stats(): Stats {
  LockSpace.closeIdleFds();
  return _debug.stats() as Stats;
}

/** Poll `cond` until it holds; a bounded wait for asynchronous cleanup, not a timing assertion. */
export async function waitFor(cond: () => boolean | Promise<boolean>, what = 'condition', limitMs = 20000): Promise<void> {
  const deadline = Date.now() + limitMs;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Settles state of a promise without awaiting it. */
export function track<T>(p: Promise<T>): { promise: Promise<T>; settled: boolean; value?: T; error?: any } {
  const t: { promise: Promise<T>; settled: boolean; value?: T; error?: any } = { promise: p, settled: false };
  p.then(
    (v) => {
      t.settled = true;
      t.value = v;
    },
    (e) => {
      t.settled = true;
      t.error = e;
    },
  );
  return t;
}

/** Runs `fn`, expecting it to throw or reject; returns the error. */
export async function catchErr(fn: () => unknown): Promise<any> {
  try {
    await fn();
  } catch (e) {
    return e;
  }
  throw new Error('expected an error, got success');
}

export function catchErrSync(fn: () => unknown): any {
  try {
    fn();
  } catch (e) {
    return e;
  }
  throw new Error('expected an error, got success');
}

export function errnoOf(code: string): number {
  const n = (os.constants.errno as Record<string, number>)[code];
  if (n === undefined) throw new Error(`unknown errno ${code}`);
  return -n;
}

/* ------------------------------------------------------------------ node child fixtures */

/** Spawns a node fixture (test/fixtures/child-holder.js) holding a lock until told to release. */
export function spawnNodeHolder(
  directory: string | null,
  name: string,
  opts: { shared?: boolean; autoCreate?: boolean; lockType?: 'posix' | 'ofd'; records?: boolean; label?: string } = {},
): Promise<Holder> {
  const child = spawn(
    process.execPath,
    [path.join(FIXTURES, 'child-holder.js'), JSON.stringify({ directory, name, ...opts })],
    { stdio: ['pipe', 'pipe', 'pipe'] },
  );
  return holderFromChild(child, 'node holder');
}

/* ------------------------------------------------------------------ worker client */

export interface RemoteError extends Error {
  code?: string;
  errno?: number;
  syscall?: string;
  path?: string;
  heldByThisProcess?: boolean;
  holderPid?: number;
  remoteName?: string;
}

/** Drives test/fixtures/worker.js: each call is a message, each reply resolves/rejects the call. */
export class WorkerClient {
  readonly worker: Worker;
  threadId = -1;
  exitCode: number | undefined;
  readonly exited: Promise<number>;
  private nextId = 1;
  private pending = new Map<number, { resolve: (v: any) => void; reject: (e: any) => void }>();
  private readyP: Promise<void>;

  private constructor() {
    this.worker = new Worker(path.join(FIXTURES, 'worker.js'));
    this.exited = new Promise((resolve) => {
      this.worker.on('exit', (code) => {
        this.exitCode = code;
        for (const p of this.pending.values()) p.reject(new Error(`worker exited (${code})`));
        this.pending.clear();
        resolve(code);
      });
    });
    this.readyP = new Promise((resolve, reject) => {
      this.worker.on('error', (e) => {
        reject(e);
        for (const p of this.pending.values()) p.reject(e);
        this.pending.clear();
      });
      this.worker.on('message', (m: any) => {
        if (m && m.ready) {
          this.threadId = m.threadId;
          resolve();
          return;
        }
        const p = this.pending.get(m.id);
        if (!p) return;
        this.pending.delete(m.id);
        if (m.ok) p.resolve(m.result);
        else {
          const e = new Error(m.error.message) as RemoteError;
          Object.assign(e, m.error, { remoteName: m.error.name });
          p.reject(e);
        }
      });
    });
  }

  static async start(): Promise<WorkerClient> {
    const c = new WorkerClient();
    await c.readyP;
    return c;
  }

  call(op: string, args: Record<string, unknown> = {}): Promise<any> {
    if (this.exitCode !== undefined) return Promise.reject(new Error('worker already exited'));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ id, op, args });
    });
  }

  async terminate(): Promise<void> {
    await this.worker.terminate();
    await this.exited;
  }
}
