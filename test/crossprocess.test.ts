/* Conflicts with other processes, both ways: Python's fcntl.lockf and another node process using
 * lockspace, with lslocks as an outside witness. */
import * as fs from 'fs';
import * as path from 'path';
import { spawn, spawnSync } from 'child_process';
import { LockSpace } from '../lib';
import {
  useTmpDir,
  outsideProbe,
  spawnPythonHolder,
  spawnNodeHolder,
  lslocksFor,
  stats,
  catchErr,
  catchErrSync,
  errnoOf,
  python,
} from './helpers';

const tmp = useTmpDir();


function expectOtherProcessBusy(e: any, file: string, pid: number): void {
  expect(e.code).toBe('EBUSY');
  expect(e.errno).toBe(errnoOf('EBUSY'));
  expect(e.syscall).toBe('fcntl');
  expect(e.path).toBe(file);
  expect(e.heldByThisProcess).toBe(false);
  expect(e.holderPid).toBe(pid);
  expect(e.message).toMatch(/^EBUSY: resource busy or locked, fcntl '/);
}

describe('python fcntl.lockf', () => {
  test('we hold exclusive: python sees busy for both lock kinds', async () => {
    const ls = LockSpace.open(tmp.dir);
    const file = path.join(tmp.dir, 'r');
    const l = await ls.acquire('r', { autoCreate: true });
    expect(await outsideProbe(file, 'exclusive')).toBe('busy');
    expect(await outsideProbe(file, 'shared')).toBe('busy');
    await l.release();
    expect(fs.existsSync(file)).toBe(false);
  });

  test('python holds exclusive: EBUSY, not held here, holderPid is python', async () => {
    const ls = LockSpace.open(tmp.dir);
    const file = path.join(tmp.dir, 'r');
    ls.createSync('r');
    const holder = await spawnPythonHolder(file, 'exclusive');
    try {
      expectOtherProcessBusy(catchErrSync(() => ls.acquireSync('r')), file, holder.pid);
      expectOtherProcessBusy(catchErrSync(() => ls.acquireSync('r', { shared: true })), file, holder.pid);
      expectOtherProcessBusy(await catchErr(() => ls.acquire('r', { autoCreate: true })), file, holder.pid);
      expect(stats().resources).toBe(0);
      expect(ls.resources()).toEqual([]);
      // A failed autoCreate attempt must not delete the file python holds.
      expect(fs.existsSync(file)).toBe(true);
    } finally {
      await holder.release();
    }
    const l = ls.acquireSync('r');
    expect(await outsideProbe(file)).toBe('busy');
    l.releaseSync();
  });

  test('shared vs shared is compatible across processes; exclusive is not', async () => {
    const ls = LockSpace.open(tmp.dir);
    const file = path.join(tmp.dir, 'r');
    ls.createSync('r');
    const holder = await spawnPythonHolder(file, 'shared');
    try {
      const l = ls.acquireSync('r', { shared: true });
      // exclusive against our own shared holder: the table answers first
      const here = catchErrSync(() => ls.acquireSync('r', { owner: 'x' }));
      expect(here.code).toBe('EBUSY');
      expect(here.heldByThisProcess).toBe(true);
      expect(lslocksFor(file).map((x) => x.pid).sort()).toEqual([process.pid, holder.pid].sort());
      l.releaseSync();
      expectOtherProcessBusy(catchErrSync(() => ls.acquireSync('r')), file, holder.pid);
    } finally {
      await holder.release();
    }
    // we hold shared: python can share, not take exclusive
    const l2 = ls.acquireSync('r', { shared: true });
    expect(await outsideProbe(file, 'shared')).toBe('locked');
    expect(await outsideProbe(file, 'exclusive')).toBe('busy');
    l2.releaseSync();
    expect(await outsideProbe(file, 'exclusive')).toBe('locked');
  });
});

describe('lslocks', () => {
  test('shows this process holding byte 0 with WRITE, then READ', async () => {
    const ls = LockSpace.open(tmp.dir);
    const file = path.join(tmp.dir, 'r');
    const ex = ls.acquireSync('r', { autoCreate: true });
    let locks = lslocksFor(file);
    expect(locks).toHaveLength(1);
    expect(locks[0]).toMatchObject({ pid: process.pid, type: 'POSIX', mode: 'WRITE', start: 0, end: 0 });
    ex.releaseSync();
    expect(lslocksFor(path.dirname(file)).filter((l) => l.pid === process.pid)).toEqual([]);

    ls.createSync('s');
    const s1 = ls.acquireSync('s', { shared: true, owner: 1 });
    const s2 = ls.acquireSync('s', { shared: true, owner: 2 });
    locks = lslocksFor(path.join(tmp.dir, 's'));
    expect(locks).toHaveLength(1);
    expect(locks[0]).toMatchObject({ pid: process.pid, type: 'POSIX', mode: 'READ', start: 0, end: 0 });
    s1.releaseSync();
    expect(lslocksFor(path.join(tmp.dir, 's'))).toHaveLength(1);
    s2.releaseSync();
    expect(lslocksFor(path.join(tmp.dir, 's'))).toEqual([]);
  });

  test('shows both holders when python shares with us', async () => {
    const ls = LockSpace.open(tmp.dir);
    const file = path.join(tmp.dir, 's');
    ls.createSync('s');
    const l = ls.acquireSync('s', { shared: true });
    const holder = await spawnPythonHolder(file, 'shared');
    try {
      const locks = lslocksFor(file);
      expect(locks.map((x) => x.pid).sort()).toEqual([process.pid, holder.pid].sort());
      expect(locks.every((x) => x.mode === 'READ')).toBe(true);
    } finally {
      await holder.release();
      l.releaseSync();
    }
  });
});

describe('another node process using lockspace', () => {
  test('a child holding a lock conflicts with the parent, and vice versa', async () => {
    const ls = LockSpace.open(tmp.dir);
    const file = path.join(tmp.dir, 'disk');
    const child = await spawnNodeHolder(tmp.dir, 'disk', { autoCreate: true });
    try {
      expectOtherProcessBusy(catchErrSync(() => ls.acquireSync('disk')), file, child.pid);
      expectOtherProcessBusy(await catchErr(() => ls.acquire('disk', { shared: true })), file, child.pid);
      const e = catchErrSync(() => ls.deleteSync('disk'));
      expect(e.code).toBe('EBUSY');
      expect(e.holderPid).toBe(child.pid);
      expect(lslocksFor(file).map((x) => [x.pid, x.mode])).toEqual([[child.pid, 'WRITE']]);
    } finally {
      await child.release();
    }
    // The child's autoCreate file was removed by the child on release.
    expect(fs.existsSync(file)).toBe(false);

    // And the other way round: we hold, the child cannot.
    const mine = ls.acquireSync('disk', { autoCreate: true });
    const e2 = await catchErr(() => spawnNodeHolder(tmp.dir, 'disk'));
    expect(e2.message).toMatch(/busy EBUSY/);
    mine.releaseSync();
  });

  test('shared in both processes, then exclusive conflicts', async () => {
    const ls = LockSpace.open(tmp.dir);
    const file = path.join(tmp.dir, 'img');
    ls.createSync('img');
    const child = await spawnNodeHolder(tmp.dir, 'img', { shared: true });
    try {
      const l = ls.acquireSync('img', { shared: true });
      expect(lslocksFor(file).map((x) => x.pid).sort()).toEqual([process.pid, child.pid].sort());
      l.releaseSync();
      expectOtherProcessBusy(catchErrSync(() => ls.acquireSync('img')), file, child.pid);
    } finally {
      await child.release();
    }
  });

  test('SIGKILL of a child holder frees the lock', async () => {
    const ls = LockSpace.open(tmp.dir);
    const file = path.join(tmp.dir, 'disk');
    ls.createSync('disk');
    const child = await spawnNodeHolder(tmp.dir, 'disk');
    expectOtherProcessBusy(catchErrSync(() => ls.acquireSync('disk')), file, child.pid);
    await child.kill('SIGKILL');
    expect(child.child.signalCode).toBe('SIGKILL');
    const l = ls.acquireSync('disk');
    expect(lslocksFor(file).map((x) => x.pid)).toEqual([process.pid]);
    l.releaseSync();
    expect(await outsideProbe(file)).toBe('locked');
  });

  test('SIGKILL of a child holder wakes our waiter', async () => {
    const ls = LockSpace.open(tmp.dir);
    const file = path.join(tmp.dir, 'disk');
    ls.createSync('disk');
    const child = await spawnNodeHolder(tmp.dir, 'disk');
    const p = ls.acquire('disk', { wait: true });
    await child.kill('SIGKILL');
    const l = await p;
    expect(await outsideProbe(file)).toBe('busy');
    await l.release();
  });

  test('ofd child vs posix parent conflict too', async () => {
    const ls = LockSpace.open(tmp.dir);
    const file = path.join(tmp.dir, 'o');
    ls.createSync('o');
    const child = await spawnNodeHolder(tmp.dir, 'o', { lockType: 'ofd' });
    try {
      const e = catchErrSync(() => ls.acquireSync('o'));
      expect(e.code).toBe('EBUSY');
      expect(e.heldByThisProcess).toBe(false);
      expect(lslocksFor(file).map((x) => x.type)).toEqual(['OFDLCK']);
    } finally {
      await child.release();
    }
    const l = ls.acquireSync('o');
    l.releaseSync();
  });
});

describe('descriptors are close-on-exec', () => {
  const LIST_FDS_PY = `
import os
for fd in os.listdir('/proc/self/fd'):
    try:
        print(os.readlink('/proc/self/fd/' + fd))
    except OSError:
        pass
`;

  test('a spawned process inherits no lock file or lockspace directory descriptor', async () => {
    const posix = LockSpace.open(tmp.dir);
    const ofd = LockSpace.open(path.join(tmp.dir, 'ofd'), { lockType: 'ofd' });
    const l1 = posix.acquireSync('p', { autoCreate: true });
    const l2 = await ofd.acquire('o', { autoCreate: true, shared: true });
    posix.createSync('idle');
    posix.acquireSync('idle').releaseSync(); // possibly cached as an idle descriptor
    const r = spawnSync(python(), ['-c', LIST_FDS_PY], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    const targets = r.stdout.split('\n').filter(Boolean);
    expect(targets.length).toBeGreaterThan(0);
    expect(targets.filter((t) => t.startsWith(tmp.dir))).toEqual([]);
    l1.releaseSync();
    await l2.release();
  });

  test('an OFD lock is not kept alive by a child spawned while it was held', async () => {
    const ls = LockSpace.open(tmp.dir, { lockType: 'ofd' });
    const file = path.join(tmp.dir, 'o');
    ls.createSync('o');
    const lease = ls.acquireSync('o');
    // a long-lived child, spawned while the lock is held
    const child = spawn(python(), ['-c', 'import sys; sys.stdin.readline()'], { stdio: ['pipe', 'ignore', 'ignore'] });
    const exited = new Promise((r) => child.once('exit', r));
    try {
      lease.releaseSync();
      LockSpace.closeIdleFds();
      expect(await outsideProbe(file)).toBe('locked');
    } finally {
      child.stdin.end('\n');
      await exited;
    }
  });
});
