/* Every bad input, and every file-system oddity at a resource path: the right error, nothing created,
 * deleted or opened for writing, and no trace in the lock table or the fd table. */
import * as fs from 'fs';
import * as path from 'path';
import { spawn, spawnSync } from 'child_process';
import { LockSpace, LockspaceError, resourceNameForPath } from '../lib';
import {
  useTmpDir,
  outsideProbe,
  lslocksFor,
  countFds,
  stats,
  catchErr,
  errnoOf,
  python,
  waitFor,
  sleep,
  FIXTURES,
} from './helpers';

const tmp = useTmpDir();


type Tree = Record<string, string>;
/** Recursive listing: relative name -> type and, for files and links, what identifies their content. */
function tree(dir: string, base = ''): Tree {
  const out: Tree = {};
  for (const name of fs.readdirSync(path.join(dir, base)).sort()) {
    const rel = base ? `${base}/${name}` : name;
    const full = path.join(dir, rel);
    const st = fs.lstatSync(full);
    if (st.isSymbolicLink()) out[rel] = `link:${fs.readlinkSync(full)}`;
    else if (st.isDirectory()) {
      out[rel] = `dir:${(st.mode & 0o777).toString(8)}`;
      Object.assign(out, tree(dir, rel));
    } else if (st.isFile()) out[rel] = `file:${st.ino}:${st.size}:${st.mtimeMs}:${(st.mode & 0o777).toString(8)}`;
    else out[rel] = `other:${st.ino}:${st.mode.toString(8)}`;
  }
  return out;
}

function tableCounts() {
  const s = stats();
  return { resources: s.resources, leases: s.leases, waiters: s.waiters, kernelWaits: s.kernelWaits };
}

/** Runs fn expecting failure; asserts no change to the table, the fd count or the directory tree. */
async function failsCleanly(root: string, fn: () => unknown): Promise<any> {
  const fds0 = countFds();
  const s0 = tableCounts();
  const t0 = tree(root);
  const e = await catchErr(fn);
  expect(tableCounts()).toEqual(s0);
  expect(countFds()).toBe(fds0);
  expect(tree(root)).toEqual(t0);
  return e;
}

/* ------------------------------------------------------------------ names */

type Op = [string, (ls: any, name: any) => unknown];
const NAME_OPS: Op[] = [
  ['acquireSync', (ls, n) => ls.acquireSync(n)],
  ['acquireSync autoCreate', (ls, n) => ls.acquireSync(n, { autoCreate: true })],
  ['acquireSync shared autoCreate', (ls, n) => ls.acquireSync(n, { shared: true, autoCreate: true })],
  ['acquire autoCreate', (ls, n) => ls.acquire(n, { autoCreate: true })],
  ['acquire wait autoCreate', (ls, n) => ls.acquire(n, { wait: true, autoCreate: true })],
  ['createSync', (ls, n) => ls.createSync(n)],
  ['create', (ls, n) => ls.create(n)],
  ['deleteSync', (ls, n) => ls.deleteSync(n)],
  ['delete', (ls, n) => ls.delete(n)],
  ['releaseSync', (ls, n) => ls.releaseSync(n)],
  ['release', (ls, n) => ls.release(n)],
];

const NON_STRING_NAMES: [string, unknown][] = [
  ['number', 1],
  ['null', null],
  ['undefined', undefined],
  ['object', {}],
  ['array', ['a']],
  ['Buffer', Buffer.from('a')],
  ['boolean', true],
];

const BAD_DIR_NAMES: [string, string][] = [
  ['empty', ''],
  ['dot', '.'],
  ['dotdot', '..'],
  ['slash inside', 'a/b'],
  ['absolute', '/etc/passwd'],
  ['trailing slash', 'a/'],
  ['dotdot escape', '../escape'],
  ['NUL', 'a\0b'],
  ['256 bytes', 'x'.repeat(256)],
  ['256 UTF-8 bytes in 128 chars', '\u00e9'.repeat(128)],
];

describe('resource names (directory mode)', () => {
  test.each(NAME_OPS)('%s rejects bad names before touching the file system', async (_label, op) => {
    // 'a' exists as a directory so that 'a/b' would be creatable if it were not rejected
    fs.mkdirSync(path.join(tmp.dir, 'a'));
    const ls = LockSpace.open(path.join(tmp.dir, 'a', '..'));
    for (const [what, name] of NON_STRING_NAMES) {
      const e = await failsCleanly(tmp.dir, () => op(ls, name));
      expect({ what, code: e.code }).toEqual({ what, code: 'ERR_INVALID_ARG_TYPE' });
    }
    for (const [what, name] of BAD_DIR_NAMES) {
      const e = await failsCleanly(tmp.dir, () => op(ls, name));
      expect({ what, code: e.code }).toEqual({ what, code: 'ERR_INVALID_ARG_VALUE' });
    }
    expect(fs.existsSync(path.join(path.dirname(tmp.dir), 'escape'))).toBe(false);
  });

  test('255-byte names are valid', async () => {
    const ls = LockSpace.open(tmp.dir);
    const ascii = 'n'.repeat(255);
    const utf8 = '\u00e9'.repeat(127) + 'x'; // 255 bytes
    for (const name of [ascii, utf8]) {
      expect(Buffer.byteLength(name)).toBe(255);
      ls.createSync(name);
      const l = await ls.acquire(name, { autoCreate: true });
      expect(fs.existsSync(path.join(tmp.dir, name))).toBe(true);
      await l.release();
      expect(fs.existsSync(path.join(tmp.dir, name))).toBe(false);
    }
  });
});

describe('resource names (path mode)', () => {
  const BAD_PATHS: [string, string][] = [
    ['empty', ''],
    ['relative', 'foo'],
    ['relative with slash', 'a/b'],
    ['dot-relative', './foo'],
    ['trailing slash', '/tmp/foo/'],
    ['root', '/'],
    ['NUL', '/tmp/a\0b'],
  ];
  test.each(NAME_OPS)('%s rejects bad paths', async (_label, op) => {
    const ls = LockSpace.open(null);
    const cwd = process.cwd();
    const cwdTree = fs.readdirSync(cwd).sort();
    for (const [what, name] of NON_STRING_NAMES) {
      const e = await failsCleanly(tmp.dir, () => op(ls, name));
      expect({ what, code: e.code }).toEqual({ what, code: 'ERR_INVALID_ARG_TYPE' });
    }
    for (const [what, name] of BAD_PATHS) {
      const p = name.replace('/tmp/', `${tmp.dir}/`);
      const e = await failsCleanly(tmp.dir, () => op(ls, p));
      expect({ what, code: e.code }).toEqual({ what, code: 'ERR_INVALID_ARG_VALUE' });
    }
    expect(fs.readdirSync(cwd).sort()).toEqual(cwdTree);
  });
});

/* ------------------------------------------------------------------ options and owners */

describe('options', () => {
  test('LockSpace.open validates its arguments', () => {
    const bad: [string, () => unknown, string][] = [
      ['directory number', () => LockSpace.open(5 as any), 'ERR_INVALID_ARG_TYPE'],
      ['directory object', () => LockSpace.open({} as any), 'ERR_INVALID_ARG_TYPE'],
      ['directory with NUL', () => LockSpace.open(`${tmp.dir}/a\0b`), 'ERR_INVALID_ARG_VALUE'],
      ['options not object', () => LockSpace.open(tmp.dir, 'posix' as any), 'ERR_INVALID_ARG_TYPE'],
      ['lockType unknown', () => LockSpace.open(tmp.dir, { lockType: 'flock' as any }), 'ERR_INVALID_ARG_VALUE'],
      ['lockType type', () => LockSpace.open(tmp.dir, { lockType: 1 as any }), 'ERR_INVALID_ARG_TYPE'],
      ['unknown key', () => LockSpace.open(tmp.dir, { locktype: 'ofd' } as any), 'ERR_INVALID_ARG_VALUE'],
    ];
    const t0 = tree(tmp.dir);
    for (const [what, fn, code] of bad) {
      let e: any;
      try {
        fn();
      } catch (err) {
        e = err;
      }
      expect({ what, code: e?.code }).toEqual({ what, code });
    }
    expect(tree(tmp.dir)).toEqual(t0);
  });

  test('acquire options: types, values, unknown keys, timeout/signal need wait', async () => {
    const ls = LockSpace.open(tmp.dir);
    ls.createSync('r');
    const ac = new AbortController();
    const cases: [string, unknown, string][] = [
      ['options string', 'shared', 'ERR_INVALID_ARG_TYPE'],
      ['options number', 1, 'ERR_INVALID_ARG_TYPE'],
      ['options boolean', true, 'ERR_INVALID_ARG_TYPE'],
      ['unknown key', { sharde: true }, 'ERR_INVALID_ARG_VALUE'],
      ['unknown key (case)', { Shared: true }, 'ERR_INVALID_ARG_VALUE'],
      ['shared string', { shared: 'yes' }, 'ERR_INVALID_ARG_TYPE'],
      ['shared number', { shared: 1 }, 'ERR_INVALID_ARG_TYPE'],
      ['autoCreate string', { autoCreate: 'yes' }, 'ERR_INVALID_ARG_TYPE'],
      ['wait number', { wait: 1 }, 'ERR_INVALID_ARG_TYPE'],
      ['timeout string', { wait: true, timeout: '10' }, 'ERR_INVALID_ARG_TYPE'],
      ['timeout negative', { wait: true, timeout: -1 }, 'ERR_INVALID_ARG_VALUE'],
      ['timeout NaN', { wait: true, timeout: NaN }, 'ERR_INVALID_ARG_VALUE'],
      ['signal object', { wait: true, signal: {} }, 'ERR_INVALID_ARG_TYPE'],
      ['signal string', { wait: true, signal: 'abort' }, 'ERR_INVALID_ARG_TYPE'],
      ['timeout without wait', { timeout: 10 }, 'ERR_INVALID_ARG_VALUE'],
      ['timeout with wait false', { wait: false, timeout: 10 }, 'ERR_INVALID_ARG_VALUE'],
      ['signal without wait', { signal: ac.signal }, 'ERR_INVALID_ARG_VALUE'],
      ['owner NaN', { owner: NaN }, 'ERR_INVALID_ARG_VALUE'],
      ['owner Infinity', { owner: Infinity }, 'ERR_INVALID_ARG_VALUE'],
      ['owner empty string', { owner: '' }, 'ERR_INVALID_ARG_VALUE'],
      ['owner object', { owner: {} }, 'ERR_INVALID_ARG_TYPE'],
      ['owner boolean', { owner: true }, 'ERR_INVALID_ARG_TYPE'],
      ['owner array', { owner: [1] }, 'ERR_INVALID_ARG_TYPE'],
      ['owner bigint', { owner: 1n }, 'ERR_INVALID_ARG_TYPE'],
    ];
    for (const [what, opts, code] of cases) {
      const e1 = await failsCleanly(tmp.dir, () => ls.acquire('r', opts as any));
      expect({ what, api: 'acquire', code: e1.code }).toEqual({ what, api: 'acquire', code });
      if (what.includes('wait') || what.includes('timeout') || what.includes('signal')) continue;
      const e2 = await failsCleanly(tmp.dir, () => ls.acquireSync('r', opts as any));
      expect({ what, api: 'acquireSync', code: e2.code }).toEqual({ what, api: 'acquireSync', code });
    }
    expect(await outsideProbe(path.join(tmp.dir, 'r'))).toBe('locked');
  });

  test('acquireSync never waits: wait, timeout and signal are rejected', async () => {
    const ls = LockSpace.open(tmp.dir);
    ls.createSync('r');
    const ac = new AbortController();
    for (const [what, opts] of [
      ['wait', { wait: true }],
      ['wait+timeout', { wait: true, timeout: 100 }],
      ['timeout', { timeout: 100 }],
      ['signal', { signal: ac.signal }],
    ] as [string, object][]) {
      const e = await failsCleanly(tmp.dir, () => ls.acquireSync('r', opts as any));
      expect({ what, code: e.code }).toEqual({ what, code: 'ERR_INVALID_ARG_VALUE' });
    }
  });

  test('an unknown option gets the hint that fits it: the spelling meant, the call to use, or the known names', async () => {
    const ls = LockSpace.open(tmp.dir);
    ls.createSync('r');
    const hints: [string, () => unknown, string][] = [
      ['acquireSync autocreate', () => ls.acquireSync('r', { autocreate: true } as any), 'unknown property "autocreate" for acquireSync (did you mean autoCreate?)'],
      ['acquire autocreate', () => ls.acquire('r', { autocreate: true } as any), 'unknown property "autocreate" for acquire (did you mean autoCreate?)'],
      ['acquire auto_create', () => ls.acquire('r', { auto_create: true } as any), '"auto_create" for acquire (did you mean autoCreate?)'],
      ['acquire sharde', () => ls.acquire('r', { sharde: true } as any), '"sharde" for acquire (did you mean shared?)'],
      ['acquire timout', () => ls.acquire('r', { wait: true, timout: 5 } as any), '"timout" for acquire (did you mean timeout?)'],
      ['acquireSync wait', () => ls.acquireSync('r', { wait: true } as any), 'has the property "wait", which acquireSync does not take: it never waits; use acquire'],
      ['acquireSync signal', () => ls.acquireSync('r', { signal: new AbortController().signal } as any), 'has the property "signal", which acquireSync does not take: it never waits; use acquire'],
      [
        'acquireSync timout',
        () => ls.acquireSync('r', { timout: 5 } as any),
        '"timout" for acquireSync (did you mean timeout? acquireSync does not take that either: it never waits; use acquire)',
      ],
      ['acquireSync deadlockTimeout', () => ls.acquireSync('r', { deadlockTimeout: 5 } as any), 'has the property "deadlockTimeout", which acquireSync does not take: it never waits; use acquire'],
      ['acquire deadlockTimeout without wait', () => ls.acquire('r', { deadlockTimeout: 5 } as any), 'sets deadlockTimeout without wait: true'],
      ['acquire deadlockTimout', () => ls.acquire('r', { wait: true, deadlockTimout: 5 } as any), '(did you mean deadlockTimeout?)'],
      ['open deadlocktimeout', () => LockSpace.open(tmp.dir, { deadlocktimeout: 5 } as any), '(did you mean deadlockTimeout?)'],
      ['acquire frob', () => ls.acquire('r', { frob: 1 } as any), '"frob" for acquire (known: shared, autoCreate, owner, label, ifGeneration, wait, timeout, signal, deadlockTimeout)'],
      ['open locktype', () => LockSpace.open(tmp.dir, { locktype: 'ofd' } as any), '"locktype" for LockSpace.open (did you mean lockType?)'],
      ['resourceNameForPath canonicalise', () => resourceNameForPath('/x', { canonicalise: false } as any), '(did you mean canonicalize?)'],
      ['locks.request ifavailable', () => ls.locks.request('r', { ifavailable: true } as any, () => 1), '(did you mean ifAvailable?)'],
    ];
    for (const [what, fn, hint] of hints) {
      const e = await failsCleanly(tmp.dir, fn);
      expect({ what, code: e.code, hint: e.message.includes(hint) ? hint : e.message }).toEqual({ what, code: 'ERR_INVALID_ARG_VALUE', hint });
    }
    // One hint each: a misspelt autoCreate is not told that acquireSync never waits.
    expect((await catchErr(() => ls.acquireSync('r', { autocreate: true } as any))).message).not.toContain('never waits');
    expect(await outsideProbe(path.join(tmp.dir, 'r'))).toBe('locked');
  });

  test('release, releaseOwner and resourceNameForPath validate owners and options', async () => {
    const ls = LockSpace.open(tmp.dir);
    const l = ls.acquireSync('r', { autoCreate: true, owner: 'o' });
    const cases: [string, () => unknown, string][] = [
      ['release owner object', () => ls.release('r', {} as any), 'ERR_INVALID_ARG_TYPE'],
      ['releaseSync owner NaN', () => ls.releaseSync('r', NaN), 'ERR_INVALID_ARG_VALUE'],
      ['releaseSync owner empty', () => ls.releaseSync('r', ''), 'ERR_INVALID_ARG_VALUE'],
      ['releaseOwner object', () => ls.releaseOwner({} as any), 'ERR_INVALID_ARG_TYPE'],
      ['releaseOwner NaN', () => ls.releaseOwner(NaN), 'ERR_INVALID_ARG_VALUE'],
      ['releaseOwnerSync empty', () => ls.releaseOwnerSync(''), 'ERR_INVALID_ARG_VALUE'],
      ['releaseOwnerSync boolean', () => ls.releaseOwnerSync(true as any), 'ERR_INVALID_ARG_TYPE'],
      ['resourceNameForPath number', () => resourceNameForPath(5 as any), 'ERR_INVALID_ARG_TYPE'],
      [
        'resourceNameForPath canonicalize type',
        () => resourceNameForPath('/x', { canonicalize: 'yes' as any }),
        'ERR_INVALID_ARG_TYPE',
      ],
      ['resourceNameForPath unknown key', () => resourceNameForPath('/x', { canon: false } as any), 'ERR_INVALID_ARG_VALUE'],
    ];
    for (const [what, fn, code] of cases) {
      const e = await failsCleanly(tmp.dir, fn);
      expect({ what, code: e.code }).toEqual({ what, code });
    }
    expect(l.released).toBe(false);
    expect(ls.resources()[0].owners).toEqual(['o']);
    l.releaseSync();
  });
});

/* ------------------------------------------------------------------ file-system errors */

function expectFsError(e: any, code: string, file: string): void {
  expect(e).toBeInstanceOf(Error);
  expect(e).toBeInstanceOf(LockspaceError);
  expect(e.code).toBe(code);
  expect(e.errno).toBe(errnoOf(code));
  expect(typeof e.syscall).toBe('string');
  expect(e.syscall.length).toBeGreaterThan(0);
  expect(e.path).toBe(file);
  expect(e.message.startsWith(`${code}: `)).toBe(true);
  expect(e.message).toContain(`${e.syscall} '${file}'`);
}

const ACQUIRE_OPS: Op[] = [
  ['acquireSync', (ls, n) => ls.acquireSync(n)],
  ['acquireSync autoCreate', (ls, n) => ls.acquireSync(n, { autoCreate: true })],
  ['acquireSync shared', (ls, n) => ls.acquireSync(n, { shared: true })],
  ['acquire', (ls, n) => ls.acquire(n)],
  ['acquire shared autoCreate', (ls, n) => ls.acquire(n, { shared: true, autoCreate: true })],
  ['acquire wait autoCreate', (ls, n) => ls.acquire(n, { wait: true, autoCreate: true, timeout: 10000 })],
];

async function expectAllAcquiresFail(ls: LockSpace, name: string, code: string, file: string): Promise<void> {
  for (const [what, op] of ACQUIRE_OPS) {
    const e = await failsCleanly(tmp.dir, () => op(ls, name));
    expect({ what, code: e.code }).toEqual({ what, code });
    expectFsError(e, code, file);
  }
}

describe('non-regular files at the resource path', () => {
  test('symlink to an existing file: ELOOP, target untouched and not locked', async () => {
    const ls = LockSpace.open(tmp.dir);
    const target = path.join(tmp.dir, 'target');
    fs.writeFileSync(target, 'payload');
    fs.symlinkSync(target, path.join(tmp.dir, 'link'));
    await expectAllAcquiresFail(ls, 'link', 'ELOOP', path.join(tmp.dir, 'link'));
    // delete does not unlink the symlink (nor the target)
    const e = await failsCleanly(tmp.dir, () => ls.deleteSync('link'));
    expect(e.code).toBe('ELOOP');
    expect(fs.readFileSync(target, 'utf8')).toBe('payload');
    expect(await outsideProbe(target)).toBe('locked');
    expect(lslocksFor(target)).toEqual([]);
    // the target itself is fine
    const l = ls.acquireSync('target');
    l.releaseSync();
  });

  test('dangling symlink with autoCreate: ELOOP and the target is not created', async () => {
    const ls = LockSpace.open(tmp.dir);
    const inside = path.join(tmp.dir, 'missing-target');
    const outsideDir = path.join(tmp.dir, 'elsewhere');
    fs.mkdirSync(outsideDir);
    const outside = path.join(outsideDir, 'victim');
    fs.symlinkSync(inside, path.join(tmp.dir, 'dangling'));
    fs.symlinkSync(outside, path.join(tmp.dir, 'dangling2'));
    await expectAllAcquiresFail(ls, 'dangling', 'ELOOP', path.join(tmp.dir, 'dangling'));
    await expectAllAcquiresFail(ls, 'dangling2', 'ELOOP', path.join(tmp.dir, 'dangling2'));
    expect(fs.existsSync(inside)).toBe(false);
    expect(fs.existsSync(outside)).toBe(false);
  });

  test('symlink as the last component in path mode: ELOOP (symlinks above it are fine)', async () => {
    const ls = LockSpace.open(null);
    const real = path.join(tmp.dir, 'real');
    fs.mkdirSync(real);
    fs.writeFileSync(path.join(real, 'f'), '');
    fs.symlinkSync(path.join(real, 'f'), path.join(real, 'flink'));
    fs.symlinkSync(real, path.join(tmp.dir, 'dirlink'));
    await expectAllAcquiresFail(ls, path.join(real, 'flink'), 'ELOOP', path.join(real, 'flink'));
    const l = ls.acquireSync(path.join(tmp.dir, 'dirlink', 'f'));
    expect(await outsideProbe(path.join(real, 'f'))).toBe('busy');
    l.releaseSync();
  });

  test('directory: EISDIR, nothing removed', async () => {
    const ls = LockSpace.open(tmp.dir);
    const sub = path.join(tmp.dir, 'sub');
    fs.mkdirSync(sub);
    await expectAllAcquiresFail(ls, 'sub', 'EISDIR', sub);
    for (const op of [() => ls.deleteSync('sub'), () => ls.delete('sub')]) {
      const e = await failsCleanly(tmp.dir, op);
      expect(e.code).toBe('EISDIR');
    }
    expect(fs.statSync(sub).isDirectory()).toBe(true);
  });

  test('FIFO: EINVAL, and never opened for writing (a blocked reader stays blocked)', async () => {
    const ls = LockSpace.open(tmp.dir);
    const fifo = path.join(tmp.dir, 'fifo');
    expect(spawnSync('mkfifo', ['-m', '600', fifo]).status).toBe(0);
    const reader = spawn(python(), ['-c', `open(${JSON.stringify(fifo)}, 'rb'); print('opened', flush=True)`], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    reader.stdout.setEncoding('utf8').on('data', (d) => (out += d));
    const exited = new Promise((r) => reader.once('exit', r));
    const wchan = () => {
      try {
        return fs.readFileSync(`/proc/${reader.pid}/wchan`, 'utf8');
      } catch {
        return '';
      }
    };
    try {
      // The reader is blocked inside open(2) waiting for a writer.
      await waitFor(() => /wait_for_partner|fifo_open/.test(wchan()), 'reader blocked on the FIFO');

      await expectAllAcquiresFail(ls, 'fifo', 'EINVAL', fifo);
      for (const op of [() => ls.deleteSync('fifo'), () => ls.delete('fifo')]) {
        const e = await failsCleanly(tmp.dir, op);
        expect(e.code).toBe('EINVAL');
      }
      expect(fs.statSync(fifo).isFIFO()).toBe(true);

      // Give a wrongly woken reader ample opportunity to finish; it must still be blocked.
      await sleep(300);
      expect(out).toBe('');
      expect(reader.exitCode).toBeNull();
      expect(wchan()).toMatch(/wait_for_partner|fifo_open/);
    } finally {
      reader.kill('SIGKILL');
      await exited;
    }
  });

  test('unix socket: EINVAL, nothing removed', async () => {
    const ls = LockSpace.open(tmp.dir);
    const sock = path.join(tmp.dir, 'sock');
    const r = spawnSync(python(), [
      '-c',
      `import socket; s = socket.socket(socket.AF_UNIX); s.bind(${JSON.stringify(sock)})`,
    ]);
    expect(r.status).toBe(0);
    expect(fs.statSync(sock).isSocket()).toBe(true);
    await expectAllAcquiresFail(ls, 'sock', 'EINVAL', sock);
    const e = await failsCleanly(tmp.dir, () => ls.deleteSync('sock'));
    expect(e.code).toBe('EINVAL');
    expect(fs.statSync(sock).isSocket()).toBe(true);
  });

  test('character device: EINVAL (directory and path mode), nothing removed', async () => {
    const ls = LockSpace.open(tmp.dir);
    const dev = path.join(tmp.dir, 'nulldev');
    const r = spawnSync('mknod', ['-m', '600', dev, 'c', '1', '3']);
    expect(r.status).toBe(0);
    await expectAllAcquiresFail(ls, 'nulldev', 'EINVAL', dev);
    const e = await failsCleanly(tmp.dir, () => ls.deleteSync('nulldev'));
    expect(e.code).toBe('EINVAL');
    expect(fs.statSync(dev).isCharacterDevice()).toBe(true);

    // the system's /dev/null, without autoCreate (so even a wrong success could never delete it)
    const pathLs = LockSpace.open(null);
    for (const op of [() => pathLs.acquireSync('/dev/null'), () => pathLs.acquire('/dev/null', { shared: true })]) {
      const e2 = await failsCleanly(tmp.dir, op);
      expectFsError(e2, 'EINVAL', '/dev/null');
    }
    expect(fs.statSync('/dev/null').isCharacterDevice()).toBe(true);
  });
});

describe('missing files', () => {
  test('ENOENT without autoCreate, nothing created', async () => {
    const ls = LockSpace.open(tmp.dir);
    const file = path.join(tmp.dir, 'missing');
    for (const op of [
      () => ls.acquireSync('missing'),
      () => ls.acquireSync('missing', { shared: true }),
      () => ls.acquire('missing'),
      () => ls.acquire('missing', { wait: true, timeout: 10000 }),
    ]) {
      const e = await failsCleanly(tmp.dir, op);
      expectFsError(e, 'ENOENT', file);
    }
    expect(fs.readdirSync(tmp.dir)).toEqual([]);
  });

  test('path mode: missing parent directory is not created, even with autoCreate', async () => {
    const ls = LockSpace.open(null);
    const file = path.join(tmp.dir, 'nodir', 'f');
    for (const op of [() => ls.acquireSync(file, { autoCreate: true }), () => ls.acquire(file, { autoCreate: true })]) {
      const e = await failsCleanly(tmp.dir, op);
      expectFsError(e, 'ENOENT', file);
    }
    for (const op of [() => ls.createSync(file), () => ls.create(file)]) {
      const e = await failsCleanly(tmp.dir, op);
      expect(e.code).toBe('ENOENT');
    }
    expect(fs.existsSync(path.join(tmp.dir, 'nodir'))).toBe(false);
  });

  test('error objects look like Node fs errors', async () => {
    const ls = LockSpace.open(tmp.dir);
    const e = await catchErr(() => ls.acquire('nope'));
    expect(e).toBeInstanceOf(LockspaceError);
    expect(e).toBeInstanceOf(Error);
    expect(e.code).toBe('ENOENT');
    expect(e.errno).toBe(-2);
    expect(e.syscall).toBe('open');
    expect(e.path).toBe(path.join(tmp.dir, 'nope'));
    expect(e.message).toMatch(new RegExp(`^ENOENT: no such file or directory, open '${tmp.dir}/nope'`));
    expect(typeof e.stack).toBe('string');
  });

  test('an error carries only the fields that apply: no own property for an absent one', async () => {
    const ls = LockSpace.open(tmp.dir);
    const fields = (e: object) => Object.keys(e).sort();
    const missing = await catchErr(() => ls.acquire('nope'));
    expect(fields(missing)).toEqual(['code', 'errno', 'name', 'path', 'syscall']);
    expect('holderPid' in missing || 'heldByThisProcess' in missing).toBe(false);
    const held = ls.acquireSync('r', { autoCreate: true });
    const busyHere = await catchErr(() => ls.acquireSync('r'));
    expect(fields(busyHere)).toEqual(['code', 'errno', 'heldByThisProcess', 'name', 'path', 'syscall']);
    expect('holderPid' in busyHere).toBe(false);
    const timedOut = await catchErr(() => ls.acquire('r', { wait: true, timeout: 0 }));
    expect(fields(timedOut)).toEqual(['code', 'errno', 'name', 'path', 'syscall']);
    await held.release();
    const notHeld = await catchErr(() => ls.release('r'));
    expect(notHeld.code).toBe('ERR_LOCK_NOT_HELD');
    expect(fields(notHeld)).toEqual(['code', 'name', 'path']);
    expect('errno' in notHeld || 'syscall' in notHeld).toBe(false);
  });
});

/* ------------------------------------------------------------------ EMFILE */

/** The table counts (other stats fields, such as memory figures, may move). */
function table(s: any) {
  return {
    resources: s.resources,
    leases: s.leases,
    waiters: s.waiters,
    kernelWaits: s.kernelWaits,
    idleFds: s.idleFds,
    spareFds: s.spareFds,
  };
}

describe('out of file descriptors', () => {
  test('EMFILE: an error, an unchanged table, and recovery afterwards (child process)', () => {
    const r = spawnSync('prlimit', ['--nofile=64:64', process.execPath, path.join(FIXTURES, 'emfile.js'), tmp.dir], {
      encoding: 'utf8',
      timeout: 50000,
    });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!);
    expect(out.crash).toBeUndefined();

    expect(out.acquired).toBeGreaterThan(1);
    expect(out.syncErr).toMatchObject({ code: 'EMFILE', errno: errnoOf('EMFILE') });
    expect(table(out.statsAfter)).toEqual(table(out.statsBefore));
    expect(out.statsBefore.resources).toBe(out.acquired);
    expect(out.statsBefore.leases).toBe(out.acquired);

    expect(out.asyncErr).toMatchObject({ code: 'EMFILE' });
    expect(out.waitErr).toMatchObject({ code: 'EMFILE' });
    expect(out.existingErr).toMatchObject({ code: 'EMFILE' });
    // create may legitimately need no descriptor; if it fails, it is EMFILE and nothing is created
    const created = out.createErr === null;
    if (!created) expect(out.createErr).toMatchObject({ code: 'EMFILE' });
    expect(table(out.statsAfterOthers)).toEqual(table(out.statsBeforeOthers));

    expect(out.joinOk).toBe(true);

    expect(out.failedNameExists).toBe(false);
    const extra = created ? ['created-at-limit'] : [];
    expect(out.filesAfterRelease).toEqual([...extra, 'pre', 'shared']);
    expect(out.finalStats).toMatchObject({ resources: 0, leases: 0, waiters: 0, kernelWaits: 0 });
    expect(out.finalFiles).toEqual([...extra, 'pre']);
  });
});
