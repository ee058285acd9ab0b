/* Hostile input and faults, beyond what errors.test.ts covers: a directory we may not
 * write (as an unprivileged user), a read-only file system, directories that vanish, are swapped for a
 * symlink or are not directories at all, a world-writable lockspace directory with hostile entries
 * planted in it (watched with inotify: nothing outside is created, opened for writing or deleted),
 * descriptor exhaustion on the entry points emfile.js does not reach, EDEADLK, hostile option objects
 * and exotic but valid names and owners. Each gets its documented error and leaves nothing behind. */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { spawn, spawnSync, SpawnSyncReturns } from 'child_process';
import { LockSpace, LockspaceError } from '../lib';
import { useTmpDir, outsideProbe, countFds, stats, catchErr, errnoOf, python, waitFor, FIXTURES } from './helpers';

const tmp = useTmpDir();

function tableCounts() {
  const s = stats();
  return { resources: s.resources, leases: s.leases, waiters: s.waiters, kernelWaits: s.kernelWaits };
}

/** Runs fn expecting failure; asserts no change to the table or the fd count. */
async function failsCleanly(fn: () => unknown): Promise<any> {
  const fds0 = countFds();
  const s0 = tableCounts();
  const e = await catchErr(fn);
  expect(tableCounts()).toEqual(s0);
  expect(countFds()).toBe(fds0);
  return e;
}

function runFaultsChild(scenario: string, cfg: object, prefix: string[] = []): any {
  const args = [...prefix, process.execPath, path.join(FIXTURES, 'faults-child.js'), scenario, JSON.stringify(cfg)];
  const r: SpawnSyncReturns<string> = spawnSync(args[0], args.slice(1), { encoding: 'utf8', timeout: 50000 });
  expect({ status: r.status, signal: r.signal, stderr: r.stderr }).toEqual({ status: 0, signal: null, stderr: '' });
  const out = JSON.parse(r.stdout.trim().split('\n').pop()!);
  expect(out.crash).toBeUndefined();
  return out;
}

/* ------------------------------------------------------------------ permissions and read-only */

describe('a directory we may not write', () => {
  test('EACCES for every call that would create, open for writing or unlink; a writable file still locks', () => {
    // The directory and files belong to root (or to us); the child runs as another, unprivileged user.
    const dir = path.join(tmp.dir, 'ro');
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'ro'), 'keep');
    fs.chmodSync(path.join(dir, 'ro'), 0o644);
    fs.writeFileSync(path.join(dir, 'rw'), '');
    fs.chmodSync(path.join(dir, 'rw'), 0o666);
    fs.chmodSync(dir, 0o755);
    fs.chmodSync(tmp.dir, 0o755);
    const asRoot = process.getuid!() === 0; // then the child drops to nobody (65534) once loaded
    if (!asRoot) {
      // Not root: we cannot write a directory we do not own only if its mode says so.
      fs.chmodSync(dir, 0o555);
      fs.chmodSync(path.join(dir, 'ro'), 0o444);
    }
    const before = fs.readdirSync(dir).sort();
    try {
      const out = runFaultsChild('readonly', asRoot ? { dir, dropTo: 65534 } : { dir });
      expect(out.uid).not.toBe(0);
      const byLabel = Object.fromEntries(out.results.map((r: any) => [r.label, r]));
      const expected: Record<string, [string, string]> = {
        'acquireSync autoCreate missing': ['open', 'missing'],
        'acquire wait autoCreate missing': ['open', 'missing'],
        createSync: ['open', 'new'],
        create: ['open', 'new'],
        'acquireSync read-only file': ['open', 'ro'],
        'acquire shared read-only file': ['open', 'ro'],
        'deleteSync (cannot unlink)': ['unlink', 'rw'],
        'delete read-only file': ['open', 'ro'],
        'open a subdirectory (cannot mkdir)': ['mkdir', 'sub'],
      };
      for (const [label, [syscall, name]] of Object.entries(expected)) {
        const r = byLabel[label];
        expect({ label, ok: r.ok, code: r.error?.code, syscall: r.error?.syscall, path: r.error?.path }).toEqual({
          label,
          ok: false,
          code: 'EACCES',
          syscall,
          path: path.join(dir, name),
        });
        expect({ label, tableUnchanged: r.tableUnchanged, fdsUnchanged: r.fdsUnchanged }).toEqual({
          label,
          tableUnchanged: true,
          fdsUnchanged: true,
        });
      }
      // The writable file locked; its autoCreate release could not unlink it, and released anyway.
      expect(out.heldTable).toMatchObject({ leases: 1 });
      expect(out.releaseError).toBeNull();
      expect(out.released).toBe(true);
      expect(out.tableAfter).toEqual({ resources: 0, leases: 0, waiters: 0, kernelWaits: 0 });
      expect(out.files).toEqual(before);
      expect(fs.readFileSync(path.join(dir, 'ro'), 'utf8')).toBe('keep');
    } finally {
      fs.chmodSync(dir, 0o755);
    }
  });

  test('EROFS on a read-only file system (a read-only tmpfs in a mount namespace)', () => {
    const mnt = path.join(tmp.dir, 'mnt');
    fs.mkdirSync(mnt);
    const dir = path.join(mnt, 'd');
    const child = `${JSON.stringify(process.execPath)} ${JSON.stringify(path.join(FIXTURES, 'faults-child.js'))} erofs ${JSON.stringify(
      JSON.stringify({ dir }),
    ).replace(/\$/g, '\\$')}`;
    const script = [
      `mount -t tmpfs -o size=1m tmpfs ${JSON.stringify(mnt)}`,
      `mkdir ${JSON.stringify(dir)}`,
      `: > ${JSON.stringify(path.join(dir, 'f'))}`,
      `mount -o remount,ro ${JSON.stringify(mnt)}`,
      `exec ${child}`,
    ].join(' && ');
    const unshare = process.getuid!() === 0 ? ['unshare', '--mount'] : ['unshare', '--mount', '--map-root-user'];
    const r = spawnSync(unshare[0], [...unshare.slice(1), 'sh', '-c', script], { encoding: 'utf8', timeout: 50000 });
    expect({ status: r.status, signal: r.signal, stderr: r.stderr }).toEqual({ status: 0, signal: null, stderr: '' });
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!);
    expect(out.crash).toBeUndefined();
    const byLabel = Object.fromEntries(out.results.map((x: any) => [x.label, x]));
    const expected: Record<string, [string, string] | null> = {
      'acquireSync existing': ['open', 'f'],
      'acquire shared existing': ['open', 'f'],
      'acquire wait existing': ['open', 'f'],
      'acquireSync autoCreate missing': ['open', 'missing'],
      createSync: ['open', 'new'],
      'deleteSync existing': ['open', 'f'],
      'delete missing': null, // absent: nothing to delete, no error
      'open a subdirectory': ['mkdir', 'sub'],
      'path mode acquireSync': ['open', 'f'],
    };
    for (const [label, want] of Object.entries(expected)) {
      const x = byLabel[label];
      const got = x.ok ? null : [x.error.code, x.error.syscall, x.error.path];
      expect({ label, got }).toEqual({ label, got: want && ['EROFS', want[0], path.join(dir, want[1])] });
      expect({ label, tableUnchanged: x.tableUnchanged, fdsUnchanged: x.fdsUnchanged }).toEqual({
        label,
        tableUnchanged: true,
        fdsUnchanged: true,
      });
    }
    expect(out.files).toEqual(['f']);
  });
});

/* ------------------------------------------------------------------ missing and odd directories */

describe('directories that are missing, vanish, or are not directories', () => {
  test('the lockspace directory removed after open: ENOENT, never re-created; a new directory at the path is followed', async () => {
    const dir = path.join(tmp.dir, 'gone');
    const ls = LockSpace.open(dir);
    fs.rmdirSync(dir);
    for (const op of [
      () => ls.acquireSync('r', { autoCreate: true }),
      () => ls.acquire('r', { autoCreate: true, wait: true }),
      () => ls.acquire('r', { shared: true, autoCreate: true }),
      () => ls.createSync('r'),
    ]) {
      const e = await failsCleanly(op);
      expect(e.code).toBe('ENOENT');
      expect(e.path).toBe(path.join(dir, 'r'));
      expect(e.message).toContain(`the lockspace directory ${dir} was removed or replaced`);
    }
    ls.deleteSync('r'); // absent: no error
    expect(fs.existsSync(dir)).toBe(false);
    expect(fs.readdirSync(tmp.dir)).toEqual([]);
    // The path is the identity: a new directory at the same path is where another process would look.
    fs.mkdirSync(dir);
    const l = ls.acquireSync('r', { autoCreate: true });
    expect(fs.readdirSync(dir)).toEqual(['r']);
    expect(await outsideProbe(path.join(dir, 'r'))).toBe('busy');
    l.releaseSync();
    expect(fs.readdirSync(dir)).toEqual([]);
    expect(fs.readdirSync(tmp.dir)).toEqual(['gone']);
  });

  test('the lockspace directory swapped for a symlink to elsewhere: work follows the path, as another process would', async () => {
    const dir = path.join(tmp.dir, 'locks');
    const moved = path.join(tmp.dir, 'moved');
    const elsewhere = path.join(tmp.dir, 'elsewhere');
    fs.mkdirSync(elsewhere);
    const ls = LockSpace.open(dir);
    fs.renameSync(dir, moved);
    fs.symlinkSync(elsewhere, dir);
    const l = ls.acquireSync('x', { autoCreate: true });
    ls.createSync('y');
    expect(fs.readdirSync(elsewhere).sort()).toEqual(['x', 'y']);
    expect(await outsideProbe(path.join(dir, 'x'))).toBe('busy');
    l.releaseSync();
    ls.deleteSync('y');
    expect(fs.readdirSync(elsewhere)).toEqual([]);
    expect(fs.readdirSync(moved)).toEqual([]);
  });

  test('LockSpace.open of a regular file, below a regular file, through a dangling symlink, too long', async () => {
    const file = path.join(tmp.dir, 'file');
    fs.writeFileSync(file, 'data');
    const target = path.join(tmp.dir, 'target');
    fs.symlinkSync(target, path.join(tmp.dir, 'dangling'));
    const cases: [string, string][] = [
      [file, 'ENOTDIR'],
      [path.join(file, 'sub'), 'ENOTDIR'],
      [path.join(tmp.dir, 'dangling'), 'ENOENT'],
      [path.join(tmp.dir, 'x'.repeat(300)), 'ENAMETOOLONG'],
    ];
    for (const [dir, code] of cases) {
      const e = await failsCleanly(() => LockSpace.open(dir));
      expect({ dir, code: e.code }).toEqual({ dir, code });
      expect(e).toBeInstanceOf(LockspaceError);
      expect(typeof e.syscall).toBe('string');
    }
    expect(fs.existsSync(target)).toBe(false); // mkdir never follows the dangling link
    expect(fs.readFileSync(file, 'utf8')).toBe('data');
    expect(fs.readdirSync(tmp.dir).sort()).toEqual(['dangling', 'file']);
  });

  test('path mode: a regular file as a parent (ENOTDIR), a component over 255 bytes (ENAMETOOLONG)', async () => {
    const ls = LockSpace.open(null);
    const file = path.join(tmp.dir, 'file');
    fs.writeFileSync(file, '');
    const cases: [string, string][] = [
      [path.join(file, 'r'), 'ENOTDIR'],
      [path.join(tmp.dir, 'n'.repeat(256)), 'ENAMETOOLONG'],
    ];
    for (const [name, code] of cases) {
      for (const op of [() => ls.acquireSync(name, { autoCreate: true }), () => ls.acquire(name, { autoCreate: true, wait: true }), () => ls.createSync(name)]) {
        const e = await failsCleanly(op);
        expect({ name, code: e.code, path: e.path }).toEqual({ name, code, path: name });
      }
    }
    expect(fs.readdirSync(tmp.dir)).toEqual(['file']);
  });
});

/* ------------------------------------------------------------------ world-writable directory */

const INOTIFY_PY = `
import ctypes, os, struct, sys, json
libc = ctypes.CDLL('libc.so.6', use_errno=True)
fd = libc.inotify_init1(os.O_NONBLOCK)
wds = {}
for p in sys.argv[1:]:
    wd = libc.inotify_add_watch(fd, p.encode(), 0xfff)
    if wd < 0: raise OSError(ctypes.get_errno(), p)
    wds[wd] = p
print('ready', flush=True)
sys.stdin.readline()
names = {0x1:'ACCESS',0x2:'MODIFY',0x4:'ATTRIB',0x8:'CLOSE_WRITE',0x10:'CLOSE_NOWRITE',0x20:'OPEN',0x40:'MOVED_FROM',
         0x80:'MOVED_TO',0x100:'CREATE',0x200:'DELETE',0x400:'DELETE_SELF',0x800:'MOVE_SELF',0x4000:'Q_OVERFLOW'}
events = []
while True:
    try:
        buf = os.read(fd, 65536)
    except BlockingIOError:
        break
    i = 0
    while i < len(buf):
        wd, mask, cookie, ln = struct.unpack_from('iIII', buf, i)
        name = buf[i + 16:i + 16 + ln].rstrip(b'\\0').decode()
        for k, v in names.items():
            if mask & k:
                events.append([wds.get(wd), name, v])
        i += 16 + ln
print(json.dumps(events), flush=True)
`;

/** inotify watches on paths (directories: their entries; files: the inode wherever it is reached). */
async function watch(paths: string[]): Promise<{ stop(): Promise<[string, string, string][]> }> {
  const child = spawn(python(), ['-c', INOTIFY_PY, ...paths], { stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (d) => (out += d));
  await waitFor(() => out.includes('ready\n'), 'inotify watcher ready');
  return {
    async stop() {
      const closed = new Promise((r) => child.once('close', r));
      child.stdin.end('stop\n');
      await closed;
      return JSON.parse(out.split('\n')[1]);
    },
  };
}

describe('a world-writable lockspace directory with hostile entries planted in it', () => {
  test('symlinks, FIFOs, sockets, directories and hard links: nothing outside is created, written or deleted', async () => {
    const dir = path.join(tmp.dir, 'locks');
    const outside = path.join(tmp.dir, 'outside');
    fs.mkdirSync(dir);
    fs.chmodSync(dir, 0o777); // anyone may plant entries (no sticky bit either)
    fs.mkdirSync(outside);
    const victim = path.join(outside, 'victim');
    const linked = path.join(outside, 'linked');
    fs.writeFileSync(victim, 'precious', { mode: 0o600 });
    fs.writeFileSync(linked, 'precious too', { mode: 0o600 });
    fs.symlinkSync(victim, path.join(dir, 'sym'));
    fs.symlinkSync(path.join(outside, 'created'), path.join(dir, 'dangling'));
    fs.symlinkSync(outside, path.join(dir, 'dirsym'));
    fs.mkdirSync(path.join(dir, 'subdir'));
    expect(spawnSync('mkfifo', [path.join(dir, 'fifo')]).status).toBe(0);
    expect(spawnSync(python(), ['-c', `import socket; socket.socket(socket.AF_UNIX).bind(${JSON.stringify(path.join(dir, 'sock'))})`]).status).toBe(0);
    fs.linkSync(linked, path.join(dir, 'hard')); // a hard link is the same file: documented as one resource
    const victimStat = fs.statSync(victim);

    const w = await watch([outside, victim, linked]);
    const ls = LockSpace.open(dir);
    expect((fs.statSync(dir).mode & 0o777).toString(8)).toBe('777'); // used as it is
    const expectedCode: Record<string, string> = {
      sym: 'ELOOP',
      dangling: 'ELOOP',
      dirsym: 'ELOOP',
      subdir: 'EISDIR',
      fifo: 'EINVAL',
      sock: 'EINVAL',
    };
    for (const [name, code] of Object.entries(expectedCode)) {
      for (const op of [
        () => ls.acquireSync(name),
        () => ls.acquireSync(name, { autoCreate: true }),
        () => ls.acquire(name, { shared: true, autoCreate: true }),
        () => ls.acquire(name, { autoCreate: true, wait: true }),
        () => ls.deleteSync(name),
        () => ls.delete(name),
      ]) {
        const e = await failsCleanly(op);
        expect({ name, code: e.code }).toEqual({ name, code });
      }
      const e = await failsCleanly(() => ls.createSync(name));
      expect({ name, code: e.code }).toEqual({ name, code: 'EEXIST' });
    }
    // The hard link: locked like any file (it is the same inode), its autoCreate release unlinks only
    // the name in the lockspace, never the file's other name outside.
    const h1 = ls.acquireSync('hard');
    expect(await outsideProbe(path.join(dir, 'hard'))).toBe('busy'); // (the probe opens it too: via the lockspace)
    h1.releaseSync();
    const h2 = ls.acquireSync('hard', { autoCreate: true });
    h2.releaseSync();
    expect(fs.existsSync(path.join(dir, 'hard'))).toBe(false);
    LockSpace.closeIdleFds();
    const events = await w.stop();

    // Nothing happened in the outside directory, nor to the symlinks' target.
    expect(events.filter(([p]) => p !== linked)).toEqual([]);
    // The hard-linked file was opened (to lock it), had a link removed, and was never written.
    expect(events.filter(([, , ev]) => !['OPEN', 'ATTRIB', 'CLOSE_WRITE', 'CLOSE_NOWRITE'].includes(ev))).toEqual([]);
    expect(fs.readdirSync(outside).sort()).toEqual(['linked', 'victim']);
    expect(fs.readFileSync(victim, 'utf8')).toBe('precious');
    expect(fs.readFileSync(linked, 'utf8')).toBe('precious too');
    expect(fs.statSync(victim).mtimeMs).toBe(victimStat.mtimeMs);
    expect(fs.statSync(victim).mode & 0o777).toBe(0o600);
    expect(fs.readdirSync(dir).sort()).toEqual(['dangling', 'dirsym', 'fifo', 'sock', 'subdir', 'sym']);
    expect(await outsideProbe(victim)).toBe('locked');
  });
});

/* ------------------------------------------------------------------ descriptors */

describe('idle descriptors under a low descriptor limit (child process, RLIMIT_NOFILE 1024)', () => {
  test('1,100 resources touched once keep at most 1/8 of the limit open, and the application can still open files', () => {
    const dir = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'lockspace-idle-')));
    try {
      const r = spawnSync('prlimit', ['--nofile=1024:1024', process.execPath, path.join(FIXTURES, 'idle-share.js'), dir], {
        encoding: 'utf8',
      });
      expect(r.stderr).toBe('');
      const out = JSON.parse(r.stdout.trim());
      expect(out.idleFds).toBeGreaterThan(0); // the cache still works
      expect(out.idleFds).toBeLessThanOrEqual(1024 / 8);
      expect({ opened: out.opened, openError: out.openError, requireOk: out.requireOk }).toEqual({
        opened: 600,
        openError: null,
        requireOk: true,
      });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('out of file descriptors (child process, RLIMIT_NOFILE 64)', () => {
  let out: any;
  let dir: string;
  beforeAll(() => {
    dir = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'lockspace-emfile-')));
    out = runFaultsChild('emfile', { dir }, ['prlimit', '--nofile=64:64']);
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('at the limit, LockSpace.open needs no descriptor (the path is the identity) and works', () => {
    const r = out.results.find((x: any) => x.label === 'LockSpace.open of another directory');
    expect({ ok: r.ok, code: r.error?.code }).toEqual({ ok: true, code: undefined });
  });

  test('delete and acquire fail with EMFILE and leave the table as it was', () => {
    const byLabel = Object.fromEntries(out.results.map((r: any) => [r.label, r]));
    for (const [label, name] of [
      ['deleteSync', 'victim'],
      ['delete', 'victim'],
      ['acquireSync', 'plain'],
    ]) {
      const r = byLabel[label];
      expect({ label, ok: r.ok, code: r.error?.code, path: r.error?.path, tableUnchanged: r.tableUnchanged }).toEqual({
        label,
        ok: false,
        code: 'EMFILE',
        path: path.join(dir, name),
        tableUnchanged: true,
      });
    }
    expect(out.tableEnd).toEqual({ resources: 0, leases: 0, waiters: 0, kernelWaits: 0 });
    expect(out.fdsAfter).toBe(out.fdsBefore);
  });

  test('at the limit, a wait for a lock held in this process is handed over (no descriptor needed)', () => {
    expect(out.queued).toBe(1);
    expect(out.handedOver).toEqual({ ok: true, owner: 'waiter' });
    expect(out.heldFileLeft).toBe(false); // its autoCreate release unlinked it: no descriptor needed either
  });

  test('at the limit, an idle (cached, unlocked) descriptor gives way to a new acquire', () => {
    expect(out.idleBefore).toBe(1);
    expect(out.evict).toEqual({ ok: true, idleAfter: 0 });
  });

  test('nothing created by the failed calls, nothing deleted', () => {
    expect(out.files).toEqual(['other', 'plain', 'victim']); // 'other': the directory LockSpace.open made
  });
});

/* ------------------------------------------------------------------ EDEADLK */

describe('EDEADLK', () => {
  test('a wait the kernel finds would deadlock between processes fails with code EDEADLK', async () => {
    const ls = LockSpace.open(tmp.dir);
    for (const n of ['a', 'b']) fs.writeFileSync(path.join(tmp.dir, n), '');
    const mine = ls.acquireSync('a');
    // Another process takes 'b', then blocks in F_SETLKW for 'a' (ours).
    const py = spawn(
      python(),
      [
        '-c',
        `
import fcntl, os, sys
b = os.open(sys.argv[1], os.O_RDWR); fcntl.lockf(b, fcntl.LOCK_EX, 1, 0)
print('holding', os.getpid(), flush=True)
a = os.open(sys.argv[2], os.O_RDWR); fcntl.lockf(a, fcntl.LOCK_EX, 1, 0)
print('got a', flush=True)
`,
        path.join(tmp.dir, 'b'),
        path.join(tmp.dir, 'a'),
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let out = '';
    py.stdout.setEncoding('utf8').on('data', (d) => (out += d));
    const exited = new Promise((r) => py.once('close', r));
    try {
      await waitFor(() => /holding \d+/.test(out), 'python holds b');
      const pid = /holding (\d+)/.exec(out)![1];
      // It is blocked once /proc/locks shows its pending request ("->") on a.
      await waitFor(
        () => fs.readFileSync('/proc/locks', 'utf8').split('\n').some((l) => l.includes('->') && l.split(/\s+/).includes(pid)),
        'python blocked on a',
      );
      const e = await catchErr(() => ls.acquire('b', { wait: true }));
      expect(e).toBeInstanceOf(LockspaceError);
      expect({ code: e.code, errno: e.errno, syscall: e.syscall, path: e.path }).toEqual({
        code: 'EDEADLK',
        errno: errnoOf('EDEADLK'),
        syscall: 'fcntl',
        path: path.join(tmp.dir, 'b'),
      });
      expect(e.message.startsWith('EDEADLK: ')).toBe(true);
      expect(tableCounts()).toEqual({ resources: 1, leases: 1, waiters: 0, kernelWaits: 0 });
    } finally {
      mine.releaseSync();
      await exited;
    }
    expect(out).toContain('got a');
  });
});

/* ------------------------------------------------------------------ hostile arguments */

describe('hostile argument objects', () => {
  test('options with throwing getters and proxies: their error, before any file-system call', async () => {
    const ls = LockSpace.open(tmp.dir);
    const boom = new Error('boom');
    const getter = Object.defineProperty({}, 'shared', {
      enumerable: true,
      get() {
        throw boom;
      },
    });
    const proxy = new Proxy(
      { autoCreate: true },
      {
        ownKeys() {
          throw boom;
        },
      },
    );
    const openGetter = Object.defineProperty({}, 'lockType', {
      enumerable: true,
      get() {
        throw boom;
      },
    });
    for (const op of [
      () => ls.acquireSync('r', getter as any),
      () => ls.acquire('r', getter as any),
      () => ls.acquireSync('r', proxy as any),
      () => ls.acquire('r', proxy as any),
      () => LockSpace.open(path.join(tmp.dir, 'sub'), openGetter as any),
      () => LockSpace.open(path.join(tmp.dir, 'sub'), proxy as any),
    ]) {
      const e = await failsCleanly(op);
      expect(e).toBe(boom);
    }
    const nameObj = { toString: () => 'r' };
    const e = await failsCleanly(() => ls.acquireSync(nameObj as any, { autoCreate: true }));
    expect(e.code).toBe('ERR_INVALID_ARG_TYPE');
    expect(fs.readdirSync(tmp.dir)).toEqual([]);
  });

  test('unusual but valid names stay inside the directory and work', async () => {
    const ls = LockSpace.open(tmp.dir);
    const names = ['-rf', ' ', 'a b', 'line\nbreak', 'tab\t', '*', '?', '\\', '..a', '.a', 'a.', '~', '$HOME', '%s%n', '\u00e9', '\u{1F512}', '\u202Eevil'];
    for (const n of names) {
      ls.createSync(n);
      const l = await ls.acquire(n, { autoCreate: true });
      expect(l.path).toBe(path.join(tmp.dir, n));
      expect(await outsideProbe(path.join(tmp.dir, n))).toBe('busy');
      l.releaseSync();
      ls.deleteSync(n);
    }
    expect(fs.readdirSync(tmp.dir)).toEqual([]);
    expect(fs.readdirSync(path.dirname(tmp.dir)).filter((n) => n === '-rf' || n === '*')).toEqual([]);
  });

  test('exotic owners round-trip exactly and stay distinct', () => {
    const ls = LockSpace.open(tmp.dir);
    const owners = [0.1 + 0.2, 1e21, -5, Number.MAX_VALUE, Number.MIN_VALUE, 'n1', 1, '1', 'a\0b', 'a', '\u{1F512}', ' ', 'x'.repeat(65536)];
    for (const o of owners) ls.acquireSync('r', { shared: true, autoCreate: true, owner: o });
    expect(ls.resources()[0].owners).toEqual(owners);
    for (const o of owners) expect({ o: typeof o === 'string' ? o.slice(0, 10) : o, n: ls.releaseOwnerSync(o) }).toEqual({ o: typeof o === 'string' ? o.slice(0, 10) : o, n: 1 });
    expect(ls.resources()).toEqual([]);
    expect(fs.readdirSync(tmp.dir)).toEqual([]);
  });
});
