/* Semantics of the public API inside one process (plus outside checks with Python and lslocks). */
import * as fs from 'fs';
import * as path from 'path';
import { threadId } from 'worker_threads';
import { LockSpace, LockspaceError, resourceNameForPath } from '../lib';
import {
  useTmpDir,
  outsideProbe,
  spawnPythonHolder,
  lslocksFor,
  countFds,
  stats,
  catchErr,
  catchErrSync,
  errnoOf,
  sha256hex,
  listDir,
} from './helpers';

const tmp = useTmpDir();


function expectInProcessBusy(e: any, file: string): void {
  expect(e).toBeInstanceOf(Error);
  expect(e).toBeInstanceOf(LockspaceError);
  expect(e.code).toBe('EBUSY');
  expect(e.errno).toBe(errnoOf('EBUSY'));
  expect(e.heldByThisProcess).toBe(true);
  expect(e.path).toBe(file);
  expect(e.message).toMatch(/^EBUSY: resource busy or locked/);
  expect(e.message).toContain(`'${file}'`);
  expect(e.holderPid).toBeUndefined();
}

describe('lease basics', () => {
  test('lease properties and default owner', async () => {
    const ls = LockSpace.open(tmp.dir);
    expect(ls.directory).toBe(tmp.dir);
    expect(ls.lockType).toBe('posix');
    const lease = await ls.acquire('foo', { autoCreate: true });
    expect(lease.name).toBe('foo');
    expect(lease.path).toBe(path.join(tmp.dir, 'foo'));
    expect(lease.shared).toBe(false);
    expect(lease.owner).toBe(threadId);
    expect(lease.owner).toBe(0);
    expect(lease.released).toBe(false);
    expect(ls.resources()).toEqual([
      { name: 'foo', path: path.join(tmp.dir, 'foo'), shared: false, autoCreate: true, owners: [0] },
    ]);
    await lease.release();
    expect(lease.released).toBe(true);
    expect(ls.resources()).toEqual([]);
  });

  test('string and number owners are kept as given', () => {
    const ls = LockSpace.open(tmp.dir);
    ls.createSync('a');
    ls.createSync('b');
    const la = ls.acquireSync('a', { owner: 'vm-1' });
    const lb = ls.acquireSync('b', { owner: 42 });
    expect(la.owner).toBe('vm-1');
    expect(lb.owner).toBe(42);
    const res = ls.resources().sort((x, y) => x.name.localeCompare(y.name));
    expect(res.map((r) => [r.name, r.owners])).toEqual([
      ['a', ['vm-1']],
      ['b', [42]],
    ]);
    la.releaseSync();
    lb.releaseSync();
  });

  test('resources() lists only what is held through this directory', () => {
    const d1 = path.join(tmp.dir, 'one');
    const d2 = path.join(tmp.dir, 'two');
    const ls1 = LockSpace.open(d1);
    const ls2 = LockSpace.open(d2);
    const l1 = ls1.acquireSync('x', { autoCreate: true });
    const l2 = ls2.acquireSync('y', { autoCreate: true });
    expect(ls1.resources().map((r) => r.name)).toEqual(['x']);
    expect(ls2.resources().map((r) => r.name)).toEqual(['y']);
    expect(stats().resources).toBe(2);
    l1.releaseSync();
    l2.releaseSync();
  });
});

describe('exclusive and shared conflicts in one process', () => {
  test('exclusive vs exclusive, shared vs exclusive, exclusive vs shared', async () => {
    const ls = LockSpace.open(tmp.dir);
    const file = path.join(tmp.dir, 'r');
    ls.createSync('r');

    const ex = ls.acquireSync('r', { owner: 'a' });
    expectInProcessBusy(catchErrSync(() => ls.acquireSync('r', { owner: 'b' })), file);
    expectInProcessBusy(catchErrSync(() => ls.acquireSync('r', { owner: 'a' })), file);
    expectInProcessBusy(catchErrSync(() => ls.acquireSync('r', { owner: 'b', shared: true })), file);
    expectInProcessBusy(await catchErr(() => ls.acquire('r', { owner: 'b' })), file);
    expect(await outsideProbe(file)).toBe('busy');
    ex.releaseSync();

    const sh = ls.acquireSync('r', { owner: 'a', shared: true });
    expectInProcessBusy(catchErrSync(() => ls.acquireSync('r', { owner: 'b' })), file);
    expectInProcessBusy(await catchErr(() => ls.acquire('r', { owner: 'b' })), file);
    expect(await outsideProbe(file, 'exclusive')).toBe('busy');
    expect(await outsideProbe(file, 'shared')).toBe('locked');
    sh.releaseSync();
    expect(await outsideProbe(file)).toBe('locked');
  });

  test('shared requests join: one resource, all owners listed, no new fd', () => {
    const ls = LockSpace.open(tmp.dir);
    ls.createSync('s');
    const first = ls.acquireSync('s', { shared: true, owner: 'a' });
    const fdsAfterFirst = countFds();
    const second = ls.acquireSync('s', { shared: true, owner: 'b' });
    const third = ls.acquireSync('s', { shared: true, owner: 7 });
    expect(countFds()).toBe(fdsAfterFirst);

    const res = ls.resources();
    expect(res).toHaveLength(1);
    expect(res[0].name).toBe('s');
    expect(res[0].shared).toBe(true);
    expect(res[0].autoCreate).toBe(false);
    expect([...res[0].owners].map(String).sort()).toEqual(['7', 'a', 'b']);
    expect(stats().resources).toBe(1);
    expect(stats().leases).toBe(3);
    for (const l of [first, second, third]) l.releaseSync();
  });

  test('the fd is closed (lock dropped) only on the last shared release', async () => {
    const ls = LockSpace.open(tmp.dir);
    const file = path.join(tmp.dir, 's');
    ls.createSync('s');
    const fds0 = countFds();
    const a = await ls.acquire('s', { shared: true, owner: 'a' });
    const b = await ls.acquire('s', { shared: true, owner: 'b' });
    expect(countFds()).toBe(fds0 + 1);
    expect(await outsideProbe(file)).toBe('busy');

    await a.release();
    expect(await outsideProbe(file)).toBe('busy');
    expect(ls.resources()[0].owners).toEqual(['b']);

    await b.release();
    expect(await outsideProbe(file)).toBe('locked');
    expect(countFds()).toBe(fds0);
  });
});

describe('release', () => {
  test('lease.release is idempotent (async and sync)', async () => {
    const ls = LockSpace.open(tmp.dir);
    const file = path.join(tmp.dir, 'x');
    const lease = await ls.acquire('x', { autoCreate: true });
    await lease.release();
    expect(lease.released).toBe(true);
    await lease.release();
    lease.releaseSync();
    expect(lease.released).toBe(true);
    expect(fs.existsSync(file)).toBe(false);

    ls.createSync('y');
    const l2 = ls.acquireSync('y');
    l2.releaseSync();
    l2.releaseSync();
    await l2.release();
    expect(l2.released).toBe(true);
    expect(await outsideProbe(path.join(tmp.dir, 'y'))).toBe('locked');
  });

  test('a released lease does not release a later holder of the same resource', async () => {
    const ls = LockSpace.open(tmp.dir);
    const file = path.join(tmp.dir, 'x');
    ls.createSync('x');
    const old = ls.acquireSync('x');
    old.releaseSync();
    const now = ls.acquireSync('x');
    old.releaseSync();
    await old.release();
    expect(now.released).toBe(false);
    expect(ls.resources()).toHaveLength(1);
    expect(await outsideProbe(file)).toBe('busy');
    now.releaseSync();
  });

  test('Symbol.asyncDispose and Symbol.dispose release the lease', async () => {
    const ls = LockSpace.open(tmp.dir);
    ls.createSync('d');
    const file = path.join(tmp.dir, 'd');

    const a = await ls.acquire('d');
    expect(typeof a[Symbol.asyncDispose]).toBe('function');
    await a[Symbol.asyncDispose]();
    expect(a.released).toBe(true);
    expect(await outsideProbe(file)).toBe('locked');

    const b = ls.acquireSync('d');
    expect(typeof b[Symbol.dispose]).toBe('function');
    b[Symbol.dispose]();
    expect(b.released).toBe(true);
    expect(await outsideProbe(file)).toBe('locked');
  });

  test('await using releases at scope exit', async () => {
    const ls = LockSpace.open(tmp.dir);
    ls.createSync('u');
    const file = path.join(tmp.dir, 'u');
    let seen: any;
    {
      await using lease = await ls.acquire('u');
      seen = lease;
      expect(await outsideProbe(file)).toBe('busy');
    }
    expect(seen.released).toBe(true);
    expect(await outsideProbe(file)).toBe('locked');
    {
      using lease = ls.acquireSync('u');
      seen = lease;
      expect(ls.resources()).toHaveLength(1);
    }
    expect(seen.released).toBe(true);
    expect(ls.resources()).toEqual([]);
  });

  test('release(name, owner) releases that owner; lease sees it', async () => {
    const ls = LockSpace.open(tmp.dir);
    ls.createSync('n');
    const a = ls.acquireSync('n', { shared: true, owner: 'a' });
    const b = ls.acquireSync('n', { shared: true, owner: 'b' });
    await ls.release('n', 'a');
    expect(a.released).toBe(true);
    expect(b.released).toBe(false);
    expect(ls.resources()[0].owners).toEqual(['b']);
    ls.releaseSync('n', 'b');
    expect(b.released).toBe(true);
    expect(ls.resources()).toEqual([]);
    // the lease objects stay idempotent afterwards
    await a.release();
    b.releaseSync();
  });

  test('release(name) defaults to the thread id as owner', async () => {
    const ls = LockSpace.open(tmp.dir);
    ls.createSync('n');
    const l = ls.acquireSync('n');
    await ls.release('n');
    expect(l.released).toBe(true);
    const l2 = ls.acquireSync('n');
    ls.releaseSync('n');
    expect(l2.released).toBe(true);
  });

  test('ERR_LOCK_NOT_HELD for unheld names and wrong owners', async () => {
    const ls = LockSpace.open(tmp.dir);
    ls.createSync('n');

    for (const e of [await catchErr(() => ls.release('n')), catchErrSync(() => ls.releaseSync('n', 'x'))]) {
      expect(e.code).toBe('ERR_LOCK_NOT_HELD');
    }
    // A name that does not even exist on disk.
    expect((await catchErr(() => ls.release('absent', 'x'))).code).toBe('ERR_LOCK_NOT_HELD');
    expect(fs.existsSync(path.join(tmp.dir, 'absent'))).toBe(false);

    const l = ls.acquireSync('n', { owner: 'a' });
    expect((await catchErr(() => ls.release('n', 'b'))).code).toBe('ERR_LOCK_NOT_HELD');
    expect(catchErrSync(() => ls.releaseSync('n', 'b')).code).toBe('ERR_LOCK_NOT_HELD');
    expect(catchErrSync(() => ls.releaseSync('n')).code).toBe('ERR_LOCK_NOT_HELD'); // owner 0 != 'a'
    // owner identity is strict: the number 1 is not the string '1'
    const l1 = ls.acquireSync('m', { owner: 1, autoCreate: true });
    expect(catchErrSync(() => ls.releaseSync('m', '1')).code).toBe('ERR_LOCK_NOT_HELD');
    expect(l.released).toBe(false);
    expect(await outsideProbe(path.join(tmp.dir, 'n'))).toBe('busy');
    l.releaseSync();
    l1.releaseSync();
    // after release, releasing again by name is an error (unlike lease.release)
    expect(catchErrSync(() => ls.releaseSync('n', 'a')).code).toBe('ERR_LOCK_NOT_HELD');
  });

  test('releaseOwner releases every lease of that owner and returns the count', async () => {
    const ls = LockSpace.open(tmp.dir);
    for (const n of ['a', 'b', 'c', 'd']) ls.createSync(n);
    const la = ls.acquireSync('a', { owner: 'o' });
    const lb = ls.acquireSync('b', { owner: 'o' });
    const lc1 = ls.acquireSync('c', { owner: 'o', shared: true });
    const lc2 = ls.acquireSync('c', { owner: 'p', shared: true });
    const ld = ls.acquireSync('d', { owner: 'p' });

    expect(await ls.releaseOwner('o')).toBe(3);
    for (const l of [la, lb, lc1]) expect(l.released).toBe(true);
    expect(lc2.released).toBe(false);
    const res = ls.resources().sort((x, y) => x.name.localeCompare(y.name));
    expect(res.map((r) => [r.name, r.owners])).toEqual([
      ['c', ['p']],
      ['d', ['p']],
    ]);
    expect(await outsideProbe(path.join(tmp.dir, 'a'))).toBe('locked');
    expect(await outsideProbe(path.join(tmp.dir, 'c'))).toBe('busy');

    expect(await ls.releaseOwner('o')).toBe(0);

    // the same owner joining a shared resource twice: releaseOwner drops both entries
    const t1 = ls.acquireSync('c', { owner: 't', shared: true });
    const t2 = ls.acquireSync('c', { owner: 't', shared: true });
    expect(ls.resources().find((r) => r.name === 'c')!.owners.sort()).toEqual(['p', 't', 't']);
    expect(ls.releaseOwnerSync('t')).toBe(2);
    expect(t1.released && t2.released).toBe(true);
    expect(ls.resources().find((r) => r.name === 'c')!.owners).toEqual(['p']);
    expect(ls.releaseOwnerSync('nobody')).toBe(0);
    expect(ls.releaseOwnerSync('p')).toBe(2);
    expect(ld.released).toBe(true);
    expect(ls.resources()).toEqual([]);
  });
});

describe('autoCreate', () => {
  test('creates the file 0600 and deletes it on the last release', async () => {
    const ls = LockSpace.open(tmp.dir);
    const file = path.join(tmp.dir, 'auto');
    const a = await ls.acquire('auto', { autoCreate: true, shared: true, owner: 'a' });
    expect(fs.statSync(file).isFile()).toBe(true);
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    const b = await ls.acquire('auto', { autoCreate: true, shared: true, owner: 'b' });
    expect(ls.resources()[0].autoCreate).toBe(true);
    await a.release();
    expect(fs.existsSync(file)).toBe(true);
    await b.release();
    expect(fs.existsSync(file)).toBe(false);
    expect(listDir(tmp.dir)).toEqual([]);
  });

  test('shared autoCreate: not deleted while another process holds a shared lock', async () => {
    const ls = LockSpace.open(tmp.dir);
    const file = path.join(tmp.dir, 'shared-auto');
    const lease = await ls.acquire('shared-auto', { autoCreate: true, shared: true });
    const ino = fs.statSync(file).ino;
    const holder = await spawnPythonHolder(file, 'shared');
    try {
      await lease.release(); // no error: deletion is skipped, not failed
      expect(lease.released).toBe(true);
      expect(fs.existsSync(file)).toBe(true);
      expect(fs.statSync(file).ino).toBe(ino);
      expect(ls.resources()).toEqual([]);
      // We no longer hold anything: only python's shared lock remains.
      expect(lslocksFor(file).map((l) => l.pid)).toEqual([holder.pid]);
    } finally {
      await holder.release();
    }
    expect(await outsideProbe(file)).toBe('locked');
  });

  test('autoCreate on a missing file with an exclusive lock leaves no file', () => {
    const ls = LockSpace.open(tmp.dir);
    const l = ls.acquireSync('e', { autoCreate: true });
    expect(listDir(tmp.dir)).toEqual(['e']);
    l.releaseSync();
    expect(listDir(tmp.dir)).toEqual([]);
  });
});

describe('identity is the inode', () => {
  test('a hard link to a held file is the same resource', async () => {
    const ls = LockSpace.open(tmp.dir);
    ls.createSync('a');
    fs.linkSync(path.join(tmp.dir, 'a'), path.join(tmp.dir, 'b'));
    const fds0 = countFds();
    const la = ls.acquireSync('a');
    expectInProcessBusy(catchErrSync(() => ls.acquireSync('b')), path.join(tmp.dir, 'b'));
    expectInProcessBusy(catchErrSync(() => ls.acquireSync('b', { shared: true })), path.join(tmp.dir, 'b'));
    expect(countFds()).toBe(fds0 + 1);
    expect(await outsideProbe(path.join(tmp.dir, 'a'))).toBe('busy');
    la.releaseSync();
    expect(await outsideProbe(path.join(tmp.dir, 'a'))).toBe('locked');
  });

  test('shared through two hard links joins; lock held until both are released', async () => {
    const ls = LockSpace.open(tmp.dir);
    ls.createSync('a');
    fs.linkSync(path.join(tmp.dir, 'a'), path.join(tmp.dir, 'b'));
    const la = ls.acquireSync('a', { shared: true, owner: 1 });
    const lb = ls.acquireSync('b', { shared: true, owner: 2 });
    expect(stats().resources).toBe(1);
    expectInProcessBusy(catchErrSync(() => ls.acquireSync('b', { owner: 3 })), path.join(tmp.dir, 'b'));
    la.releaseSync();
    expect(await outsideProbe(path.join(tmp.dir, 'a'))).toBe('busy');
    lb.releaseSync();
    expect(await outsideProbe(path.join(tmp.dir, 'a'))).toBe('locked');
  });

  test('autoCreate through a hard link creates nothing, so it deletes nothing: not the other name, not its own', async () => {
    const ls = LockSpace.open(tmp.dir);
    ls.createSync('a');
    fs.linkSync(path.join(tmp.dir, 'a'), path.join(tmp.dir, 'b'));
    // A shared join through the second name.
    const la = ls.acquireSync('a', { shared: true, owner: 1 });
    const lb = ls.acquireSync('b', { shared: true, owner: 2, autoCreate: true });
    la.releaseSync();
    lb.releaseSync();
    expect(listDir(tmp.dir)).toEqual(['a', 'b']);
    // A queued request through the second name, granted at the release of the first.
    const held = ls.acquireSync('a', { owner: 1 });
    const waiting = ls.acquire('b', { owner: 2, autoCreate: true, wait: true });
    held.releaseSync();
    await (await waiting).release();
    expect(listDir(tmp.dir)).toEqual(['a', 'b']);
    expect(await outsideProbe(path.join(tmp.dir, 'a'))).toBe('locked');
  });

  test('autoCreate through the same name in path mode (even spelt with // or /./) is the same name: its release deletes the file', async () => {
    const ls = LockSpace.open(tmp.dir);
    const byPath = LockSpace.open(null);
    for (const spelt of [path.join(tmp.dir, 'a'), `${tmp.dir}//a`, `${tmp.dir}/./a`]) {
      ls.createSync('a');
      const first = ls.acquireSync('a', { shared: true, owner: 1 });
      const joined = byPath.acquireSync(spelt, { shared: true, owner: 2, autoCreate: true });
      first.releaseSync();
      joined.releaseSync();
      expect(listDir(tmp.dir)).toEqual([]);
    }
  });

  test('an autoCreate request that is never granted (aborted while another process held the file) leaves the file to those that are', async () => {
    const ls = LockSpace.open(tmp.dir);
    const file = path.join(tmp.dir, 'a');
    ls.createSync('a');
    const holder = await spawnPythonHolder(file, 'exclusive');
    const abort = new AbortController();
    const creating = ls.acquire('a', { autoCreate: true, wait: true, signal: abort.signal, owner: 1 });
    const plain = ls.acquire('a', { wait: true, owner: 2 });
    abort.abort();
    await expect(creating).rejects.toMatchObject({ name: 'AbortError' });
    await holder.release();
    await (await plain).release();
    expect(listDir(tmp.dir)).toEqual(['a']);
    expect(await outsideProbe(file)).toBe('locked');
  });

  test('a symlinked directory opens the same lockspace (canonical directory)', async () => {
    const real = path.join(tmp.dir, 'real');
    const link = path.join(tmp.dir, 'link');
    const ls1 = LockSpace.open(real);
    fs.symlinkSync(real, link);
    const ls2 = LockSpace.open(link);
    expect(ls2.directory).toBe(real);
    ls1.createSync('r');
    const l = ls1.acquireSync('r');
    expectInProcessBusy(catchErrSync(() => ls2.acquireSync('r')), path.join(real, 'r'));
    expectInProcessBusy(await catchErr(() => ls2.acquire('r', { shared: true })), path.join(real, 'r'));
    expect(await outsideProbe(path.join(real, 'r'))).toBe('busy');
    // resources() of the second object sees the resource too (same directory)
    expect(ls2.resources().map((r) => r.name)).toEqual(['r']);
    l.releaseSync();
    expect(await outsideProbe(path.join(real, 'r'))).toBe('locked');
  });

  test('two LockSpace objects on the same directory share the table', async () => {
    const ls1 = LockSpace.open(tmp.dir);
    const ls2 = LockSpace.open(tmp.dir);
    const l = ls1.acquireSync('r', { autoCreate: true });
    expectInProcessBusy(catchErrSync(() => ls2.acquireSync('r')), path.join(tmp.dir, 'r'));
    expectInProcessBusy(catchErrSync(() => ls2.acquireSync('r', { autoCreate: true })), path.join(tmp.dir, 'r'));
    expect(catchErrSync(() => ls2.createSync('r')).code).toBe('EBUSY');
    expect(await outsideProbe(path.join(tmp.dir, 'r'))).toBe('busy');
    // release through the other object
    ls2.releaseSync('r');
    expect(l.released).toBe(true);
    expect(fs.existsSync(path.join(tmp.dir, 'r'))).toBe(false);
  });

  test('a path-mode lockspace naming a file of a directory lockspace is the same resource', async () => {
    const dirLs = LockSpace.open(tmp.dir);
    const pathLs = LockSpace.open(null);
    const file = path.join(tmp.dir, 'r');
    dirLs.createSync('r');
    const l = dirLs.acquireSync('r');
    expectInProcessBusy(catchErrSync(() => pathLs.acquireSync(file)), file);
    // Non-canonical spellings of the same path reach the same inode.
    const dotted = `${tmp.dir}/./r`;
    expectInProcessBusy(catchErrSync(() => pathLs.acquireSync(dotted)), dotted);
    const dotdot = `${tmp.dir}/../${path.basename(tmp.dir)}/r`;
    expectInProcessBusy(await catchErr(() => pathLs.acquire(dotdot)), dotdot);
    expect(await outsideProbe(file)).toBe('busy');
    l.releaseSync();

    // And the other way round.
    const p = pathLs.acquireSync(file);
    expectInProcessBusy(catchErrSync(() => dirLs.acquireSync('r')), file);
    expect(await outsideProbe(file)).toBe('busy');
    p.releaseSync();
    expect(await outsideProbe(file)).toBe('locked');
  });
});

describe('create and delete', () => {
  test('create: 0600 regular empty file; EEXIST if present; EBUSY if held here', async () => {
    const ls = LockSpace.open(tmp.dir);
    const file = path.join(tmp.dir, 'c');
    ls.createSync('c');
    const st = fs.statSync(file);
    expect(st.isFile()).toBe(true);
    expect(st.size).toBe(0);
    expect(st.mode & 0o777).toBe(0o600);

    const e1 = catchErrSync(() => ls.createSync('c'));
    expect(e1.code).toBe('EEXIST');
    expect(e1.errno).toBe(errnoOf('EEXIST'));
    expect(e1.path).toBe(file);
    const e2 = await catchErr(() => ls.create('c'));
    expect(e2.code).toBe('EEXIST');

    await ls.create('c2');
    expect(fs.statSync(path.join(tmp.dir, 'c2')).mode & 0o777).toBe(0o600);

    const l = ls.acquireSync('c');
    const e3 = catchErrSync(() => ls.createSync('c'));
    expect(e3.code).toBe('EBUSY');
    expect(e3.heldByThisProcess).toBe(true);
    expect((await catchErr(() => ls.create('c'))).code).toBe('EBUSY');
    expect(await outsideProbe(file)).toBe('busy');
    l.releaseSync();
  });

  test('delete: removes, absent is fine, EBUSY when held here', async () => {
    const ls = LockSpace.open(tmp.dir);
    const file = path.join(tmp.dir, 'd');
    ls.createSync('d');
    await ls.delete('d');
    expect(fs.existsSync(file)).toBe(false);
    await ls.delete('d');
    ls.deleteSync('d');
    ls.deleteSync('never-existed');

    ls.createSync('d');
    const l = ls.acquireSync('d', { shared: true });
    const e = catchErrSync(() => ls.deleteSync('d'));
    expect(e.code).toBe('EBUSY');
    expect(e.errno).toBe(errnoOf('EBUSY'));
    expect(e.heldByThisProcess).toBe(true);
    expect(e.path).toBe(file);
    expect((await catchErr(() => ls.delete('d'))).code).toBe('EBUSY');
    expect(fs.existsSync(file)).toBe(true);
    expect(await outsideProbe(file, 'exclusive')).toBe('busy');
    l.releaseSync();
    ls.deleteSync('d');
    expect(fs.existsSync(file)).toBe(false);
  });

  test('delete: EBUSY with holderPid when another process holds it', async () => {
    const ls = LockSpace.open(tmp.dir);
    const file = path.join(tmp.dir, 'd');
    ls.createSync('d');
    for (const mode of ['exclusive', 'shared'] as const) {
      const holder = await spawnPythonHolder(file, mode);
      try {
        for (const e of [catchErrSync(() => ls.deleteSync('d')), await catchErr(() => ls.delete('d'))]) {
          expect(e.code).toBe('EBUSY');
          expect(e.heldByThisProcess).toBe(false);
          expect(e.holderPid).toBe(holder.pid);
          expect(e.path).toBe(file);
        }
        expect(fs.existsSync(file)).toBe(true);
      } finally {
        await holder.release();
      }
    }
    expect(stats().resources).toBe(0);
    ls.deleteSync('d');
    expect(fs.existsSync(file)).toBe(false);
  });
});

describe('lockspace directory', () => {
  test('missing directory is created 0700 with parents', () => {
    const deep = path.join(tmp.dir, 'a', 'b', 'c');
    const ls = LockSpace.open(deep);
    expect(ls.directory).toBe(deep);
    const st = fs.statSync(deep);
    expect(st.isDirectory()).toBe(true);
    expect(st.mode & 0o777).toBe(0o700);
  });

  test('an existing directory is used as is', () => {
    fs.chmodSync(tmp.dir, 0o755);
    const ls = LockSpace.open(tmp.dir);
    expect(ls.directory).toBe(tmp.dir);
    expect(fs.statSync(tmp.dir).mode & 0o777).toBe(0o755);
  });

  test('directory is the realpath', () => {
    fs.mkdirSync(path.join(tmp.dir, 'x'));
    fs.symlinkSync(path.join(tmp.dir, 'x'), path.join(tmp.dir, 'sym'));
    expect(LockSpace.open(`${tmp.dir}/x/../x/.`).directory).toBe(path.join(tmp.dir, 'x'));
    expect(LockSpace.open(path.join(tmp.dir, 'sym')).directory).toBe(path.join(tmp.dir, 'x'));
    expect(LockSpace.open(`${tmp.dir}/x/`).directory).toBe(path.join(tmp.dir, 'x'));
  });
});

describe('resourceNameForPath', () => {
  test('sha256 hex of the path bytes', () => {
    const p = '/var/lib/libvirt/images/disk.qcow2';
    expect(resourceNameForPath(p, { canonicalize: false })).toBe(sha256hex(p));
    expect(resourceNameForPath(p, { canonicalize: false })).toMatch(/^[0-9a-f]{64}$/);
    // non-canonical spellings are hashed byte for byte when canonicalize is false
    expect(resourceNameForPath('/a/./b', { canonicalize: false })).toBe(sha256hex('/a/./b'));
    // UTF-8 bytes
    const u = '/images/d\u00e9j\u00e0.img';
    expect(resourceNameForPath(u, { canonicalize: false })).toBe(sha256hex(Buffer.from(u, 'utf8')));
  });

  test('canonicalize (default true) resolves symlinks first', () => {
    const target = path.join(tmp.dir, 'disk.img');
    fs.writeFileSync(target, '');
    fs.symlinkSync(tmp.dir, path.join(tmp.dir, 'dirlink'));
    const viaLink = path.join(tmp.dir, 'dirlink', 'disk.img');
    expect(resourceNameForPath(viaLink, { canonicalize: false })).toBe(sha256hex(viaLink));
    expect(resourceNameForPath(viaLink, { canonicalize: true })).toBe(sha256hex(target));
    expect(resourceNameForPath(viaLink)).toBe(sha256hex(target));
    expect(resourceNameForPath(target)).toBe(sha256hex(target));
  });

  test('the result is a valid resource name', () => {
    const ls = LockSpace.open(tmp.dir);
    const name = resourceNameForPath('/some/disk', { canonicalize: false });
    const l = ls.acquireSync(name, { autoCreate: true });
    expect(fs.existsSync(path.join(tmp.dir, name))).toBe(true);
    l.releaseSync();
  });
});

describe("lockType 'ofd'", () => {
  test('conflicts with other processes both ways and shows as OFDLCK', async () => {
    const ls = LockSpace.open(tmp.dir, { lockType: 'ofd' });
    expect(ls.lockType).toBe('ofd');
    const file = path.join(tmp.dir, 'o');
    const l = await ls.acquire('o', { autoCreate: true });
    expect(await outsideProbe(file, 'exclusive')).toBe('busy');
    expect(await outsideProbe(file, 'shared')).toBe('busy');
    const locks = lslocksFor(file);
    expect(locks).toHaveLength(1);
    expect(locks[0].type).toBe('OFDLCK');
    expect(locks[0].mode).toBe('WRITE');
    expect(locks[0].start).toBe(0);
    expect(locks[0].end).toBe(0);
    await l.release();
    expect(fs.existsSync(file)).toBe(false);

    ls.createSync('o');
    const holder = await spawnPythonHolder(file, 'exclusive');
    try {
      const e = catchErrSync(() => ls.acquireSync('o'));
      expect(e.code).toBe('EBUSY');
      expect(e.heldByThisProcess).toBe(false);
      expect(e.path).toBe(file);
    } finally {
      await holder.release();
    }
    const s = await ls.acquire('o', { shared: true });
    expect(lslocksFor(file).map((x) => [x.type, x.mode])).toEqual([['OFDLCK', 'READ']]);
    expect(await outsideProbe(file, 'shared')).toBe('locked');
    expect(await outsideProbe(file, 'exclusive')).toBe('busy');
    await s.release();
    expect(await outsideProbe(file, 'exclusive')).toBe('locked');
  });

  test('ofd and posix lockspaces on the same file are still one resource in this process', async () => {
    const posix = LockSpace.open(tmp.dir);
    const ofd = LockSpace.open(tmp.dir, { lockType: 'ofd' });
    const file = path.join(tmp.dir, 'm');
    posix.createSync('m');
    const l = ofd.acquireSync('m');
    expectInProcessBusy(catchErrSync(() => posix.acquireSync('m')), file);
    expect(await outsideProbe(file)).toBe('busy');
    l.releaseSync();
    const l2 = posix.acquireSync('m');
    expectInProcessBusy(catchErrSync(() => ofd.acquireSync('m')), file);
    l2.releaseSync();
    expect(await outsideProbe(file)).toBe('locked');
  });
});

describe('path mode', () => {
  test('names are absolute paths; lease.path is the name', async () => {
    const ls = LockSpace.open(null);
    const file = path.join(tmp.dir, 'p');
    const l = await ls.acquire(file, { autoCreate: true });
    expect(l.name).toBe(file);
    expect(l.path).toBe(file);
    expect(ls.resources()).toEqual([{ name: file, path: file, shared: false, autoCreate: true, owners: [0] }]);
    expect(await outsideProbe(file)).toBe('busy');
    await l.release();
    expect(fs.existsSync(file)).toBe(false);
  });
});

describe('idle descriptor cache', () => {
  test('closing idle fds never drops a lock taken on the same inode through another name', async () => {
    const ls = LockSpace.open(tmp.dir);
    const pathLs = LockSpace.open(null);
    const a = path.join(tmp.dir, 'a');
    ls.createSync('a');
    fs.linkSync(a, path.join(tmp.dir, 'b'));
    for (const take of [() => ls.acquireSync('b'), () => pathLs.acquireSync(a), () => pathLs.acquireSync(`${tmp.dir}/./a`)]) {
      const first = ls.acquireSync('a');
      first.releaseSync(); // its descriptor may now sit in the idle cache
      const held = take();
      LockSpace.closeIdleFds();
      expect(await outsideProbe(a)).toBe('busy');
      held.releaseSync();
      expect(await outsideProbe(a)).toBe('locked');
    }
  });

  test('a cached fd of a deleted file is not reused for the new file of the same name', async () => {
    const ls = LockSpace.open(tmp.dir);
    const file = path.join(tmp.dir, 'c');
    ls.createSync('c');
    ls.acquireSync('c').releaseSync();
    ls.deleteSync('c');
    expect(fs.existsSync(file)).toBe(false);
    const l = ls.acquireSync('c', { autoCreate: true });
    expect(await outsideProbe(file)).toBe('busy');
    l.releaseSync();
    expect(fs.existsSync(file)).toBe(false);
  });

  test('a cached fd of a file replaced behind our back is not reused', async () => {
    const ls = LockSpace.open(tmp.dir);
    const file = path.join(tmp.dir, 'c');
    ls.createSync('c');
    ls.acquireSync('c').releaseSync();
    // replaced by another program (rename over it), and separately unlinked and recreated
    fs.writeFileSync(`${file}.tmp`, '');
    fs.renameSync(`${file}.tmp`, file);
    const l = ls.acquireSync('c');
    expect(await outsideProbe(file)).toBe('busy');
    expect(lslocksFor(file).map((x) => x.inode)).toEqual([fs.statSync(file).ino]);
    l.releaseSync();

    fs.unlinkSync(file);
    fs.writeFileSync(file, '');
    const l2 = await ls.acquire('c', { shared: true });
    expect(await outsideProbe(file, 'exclusive')).toBe('busy');
    await l2.release();
    expect(await outsideProbe(file, 'exclusive')).toBe('locked');
  });

  test('re-acquiring after release works repeatedly and keeps at most one fd per file', async () => {
    const ls = LockSpace.open(tmp.dir);
    const file = path.join(tmp.dir, 'loop');
    ls.createSync('loop');
    const fds0 = countFds();
    for (let i = 0; i < 200; i++) {
      const l = ls.acquireSync('loop', { shared: i % 2 === 0 });
      l.releaseSync();
    }
    expect(fs.readdirSync('/proc/self/fd').length).toBeLessThanOrEqual(fds0 + 1);
    expect(countFds()).toBe(fds0);
    expect(await outsideProbe(file)).toBe('locked');
  });
});
