/* Lost locks (lease.signal, lease.verify, background checks), inspect, and what changes on network
 * file systems (no autoCreate deletion, no holder pid, errno names). Network file systems are
 * simulated with _debug.setForceRemote where needed (the locks are real); test/multihost runs the
 * same against a real distributed file system. */
import * as fs from 'fs';
import * as path from 'path';
import { Lease, LockSpace, LockspaceError } from '../lib';
import { _debug } from '../lib/internal';
import { systemError } from '../lib/errors';
import { spawnSync } from 'child_process';
import { catchErr, catchErrSync, FIXTURES, Holder, outsideProbe, spawnPythonHolder, stats, useTmpDir, waitFor, WITHOUT_PROC } from './helpers';

const tmp = useTmpDir();

afterEach(() => _debug.setForceRemote(false));

describe('lease.verify and lease.signal', () => {
  test('verify resolves while the lock is held and its name reaches the file', async () => {
    const ls = LockSpace.open(tmp.dir);
    const l = await ls.acquire('r', { autoCreate: true });
    await expect(l.verify()).resolves.toBeUndefined();
    expect(l.signal.aborted).toBe(false);
    expect(await outsideProbe(l.path)).toBe('busy');
    await l.release();
    expect(l.signal.aborted).toBe(false); // released is not lost
  });

  test('an unlinked file is a lost lock: verify rejects, the signal aborts, release resolves', async () => {
    const ls = LockSpace.open(tmp.dir);
    const l = await ls.acquire('r', { autoCreate: true });
    const reasons: unknown[] = [];
    l.signal.addEventListener('abort', () => reasons.push(l.signal.reason));
    fs.unlinkSync(l.path);
    const err = await catchErr(() => l.verify());
    expect(err).toBeInstanceOf(LockspaceError);
    expect(err.code).toBe('ERR_LOCK_LOST');
    expect(err.path).toBe(path.join(tmp.dir, 'r'));
    expect(err.cause.code).toBe('ENOENT');
    expect(l.signal.aborted).toBe(true);
    expect(reasons).toEqual([err]);
    expect((await catchErr(() => l.verify())).code).toBe('ERR_LOCK_LOST'); // stays lost
    await expect(l.release()).resolves.toBeUndefined();
    expect(stats().leases).toBe(0);
  });

  test('a file replaced by rename is a lost lock', async () => {
    const ls = LockSpace.open(tmp.dir);
    await ls.create('r');
    const l = ls.acquireSync('r');
    fs.writeFileSync(path.join(tmp.dir, 'new'), '');
    fs.renameSync(path.join(tmp.dir, 'new'), l.path);
    const err = await catchErr(() => l.verify());
    expect(err.code).toBe('ERR_LOCK_LOST');
    expect(err.cause.code).toBe('ERR_LOCK_FILE_REPLACED');
    expect(l.signal.reason).toBe(err);
    l.releaseSync();
  });

  test('the signal of a lease lost before it was first read is aborted at once', async () => {
    const ls = LockSpace.open(tmp.dir);
    const l = await ls.acquire('r', { autoCreate: true });
    fs.unlinkSync(l.path);
    await catchErr(() => l.verify());
    expect(l.signal.aborted).toBe(true);
    expect((l.signal.reason as LockspaceError).code).toBe('ERR_LOCK_LOST');
    await l.release();
  });

  test('verify of a released lease rejects with ERR_LOCK_NOT_HELD and aborts nothing', async () => {
    const ls = LockSpace.open(tmp.dir);
    const l = await ls.acquire('r', { autoCreate: true, owner: 'vm' });
    ls.releaseSync('r', 'vm'); // released by name: the lease learns it from the table
    expect((await catchErr(() => l.verify())).code).toBe('ERR_LOCK_NOT_HELD');
    expect(l.signal.aborted).toBe(false);
  });

  describe('a POSIX lock dropped by a close outside lockspace (the trap) is lost', () => {
    test('another process took it: verify rejects, the signal aborts', async () => {
      const ls = LockSpace.open(tmp.dir);
      await ls.create('r');
      const l = await ls.acquire('r');
      fs.closeSync(fs.openSync(l.path, 'r')); // drops every POSIX lock of this process on the file
      const other = await spawnPythonHolder(l.path); // so another process gets it
      try {
        const err = await catchErr(() => l.verify());
        expect(err.code).toBe('ERR_LOCK_LOST');
        expect(err.cause.code).toBe('EAGAIN');
        expect(l.signal.aborted).toBe(true);
        expect(l.signal.reason).toBe(err);
      } finally {
        await other.release();
      }
      await expect(l.release()).resolves.toBeUndefined();
    });

    test('nobody took it: lost all the same (another process could have), and not taken back', async () => {
      const ls = LockSpace.open(tmp.dir);
      await ls.create('r');
      const l = ls.acquireSync('r');
      fs.closeSync(fs.openSync(l.path, 'r'));
      const err = await catchErr(() => l.verify());
      expect(err.code).toBe('ERR_LOCK_LOST');
      expect(err.cause.code).toBe('ERR_LOCK_DROPPED');
      expect(l.signal.aborted).toBe(true);
      expect(await outsideProbe(l.path)).toBe('locked'); // verify did not re-lock it
      l.releaseSync();
    });

    test('a shared lease, while another process holds the file shared too', async () => {
      const ls = LockSpace.open(tmp.dir);
      await ls.create('r');
      const file = path.join(tmp.dir, 'r');
      const other = await spawnPythonHolder(file, 'shared');
      try {
        const l = await ls.acquire('r', { shared: true });
        await expect(l.verify()).resolves.toBeUndefined();
        fs.closeSync(fs.openSync(file, 'r'));
        expect((await catchErr(() => l.verify())).cause.code).toBe('ERR_LOCK_DROPPED');
        expect(l.signal.aborted).toBe(true);
        await l.release();
      } finally {
        await other.release();
      }
    });

    test.each(['exclusive', 'shared'])('without /proc (no fdinfo to read), a lock query tells: %s', (mode) => {
      fs.writeFileSync(path.join(tmp.dir, 'r'), '');
      const verify = (trap: string) => {
        const r = spawnSync(WITHOUT_PROC[0], [...WITHOUT_PROC.slice(1), process.execPath, path.join(FIXTURES, 'verify-child.js'), tmp.dir, 'r', mode, trap], {
          encoding: 'utf8',
        });
        if (r.status !== 0) throw new Error(`verify-child failed (${r.status}): ${r.stdout} ${r.stderr}`);
        return JSON.parse(r.stdout);
      };
      expect(verify('no-trap')).toEqual({ proc: false, verified: true });
      expect(verify('trap')).toEqual({ proc: false, code: 'ERR_LOCK_LOST', cause: 'ERR_LOCK_DROPPED' });
    });

    // A lease on a dropped lock is lost, but nothing more may be granted on the lock without asking
    // the kernel: a hand-off or a join there would tell a new holder it holds what another process has.
    describe('nothing more is granted on it without the kernel', () => {
      const kernelWaits = () => (_debug.stats() as { kernelWaits: number }).kernelWaits;

      /** `waiter` is not granted while `other` holds the file: once `letGo` has run it waits in the
       *  kernel. Then `other` lets go, and the waiter is granted and holds the lock, as python sees. */
      async function grantedOnlyAfter(waiter: Promise<Lease>, other: Holder, letGo: () => unknown): Promise<Lease> {
        let granted = false;
        void waiter.then(() => (granted = true));
        try {
          await letGo();
          await waitFor(() => kernelWaits() === 1, 'the request waiting in the kernel');
          expect(granted).toBe(false);
        } finally {
          await other.release();
        }
        const lease = await waiter;
        expect(await outsideProbe(lease.path)).toBe('busy');
        return lease;
      }

      test('a hand-off to a waiter of this process while another process took it: the waiter waits for it', async () => {
        const ls = LockSpace.open(tmp.dir);
        await ls.create('r');
        const l = ls.acquireSync('r');
        const waiter = ls.acquire('r', { wait: true, owner: 'second-vm' });
        fs.closeSync(fs.openSync(l.path, 'r'));
        const other = await spawnPythonHolder(l.path);
        const lease = await grantedOnlyAfter(waiter, other, () => l.releaseSync());
        lease.releaseSync();
        expect(await outsideProbe(lease.path)).toBe('locked');
      });

      test('a hand-off while nobody took it: the waiter holds the lock again', async () => {
        const ls = LockSpace.open(tmp.dir);
        await ls.create('r');
        const l = ls.acquireSync('r');
        const waiter = ls.acquire('r', { wait: true, owner: 'second-vm' });
        fs.closeSync(fs.openSync(l.path, 'r'));
        l.releaseSync();
        const lease = await waiter;
        expect(await outsideProbe(lease.path, 'shared')).toBe('busy');
        await expect(lease.verify()).resolves.toBeUndefined();
        lease.releaseSync();
      });

      test('a shared join while another process took it exclusively: EBUSY, or a wait until it lets go', async () => {
        const ls = LockSpace.open(tmp.dir);
        await ls.create('r');
        const l = ls.acquireSync('r', { shared: true });
        fs.closeSync(fs.openSync(l.path, 'r'));
        const other = await spawnPythonHolder(l.path);
        const err = catchErrSync(() => ls.acquireSync('r', { shared: true, owner: 'joiner' }));
        const waiter = ls.acquire('r', { shared: true, wait: true, owner: 'joiner' });
        const lease = await grantedOnlyAfter(waiter, other, () => l.releaseSync());
        expect(err.code).toBe('EBUSY');
        expect(err.message).toMatch(/another process/);
        expect(await outsideProbe(lease.path, 'shared')).toBe('locked');
        lease.releaseSync();
        expect(stats().leases).toBe(0);
      });

      test('a shared join while nobody took it: refused, the lost lease stays lost, and a later acquire holds it', async () => {
        const ls = LockSpace.open(tmp.dir);
        await ls.create('r');
        const l = ls.acquireSync('r', { shared: true });
        fs.closeSync(fs.openSync(l.path, 'r'));
        const err = catchErrSync(() => ls.acquireSync('r', { shared: true, owner: 'joiner' }));
        expect(err.code).toBe('EBUSY');
        expect(err.message).toMatch(/whose lock on it is gone/);
        // Not locked again behind the lease's back: another process could have had it meanwhile.
        expect(await outsideProbe(l.path)).toBe('locked');
        expect((await catchErr(() => l.verify())).cause.code).toBe('ERR_LOCK_DROPPED');
        l.releaseSync();
        const joined = ls.acquireSync('r', { shared: true, owner: 'joiner' });
        expect(await outsideProbe(joined.path)).toBe('busy');
        joined.releaseSync();
        expect(await outsideProbe(joined.path)).toBe('locked');
        expect(stats().leases).toBe(0);
      });

      test("with holder records: the hand-off that takes the lock back shows the new holder's record", async () => {
        const ls = LockSpace.open(tmp.dir, { records: true });
        await ls.create('r');
        const l = ls.acquireSync('r', { label: 'first-vm' });
        const waiter = ls.acquire('r', { wait: true, owner: 'second-vm', label: 'second-vm' });
        fs.closeSync(fs.openSync(l.path, 'r')); // its record's claim and live bytes go too
        l.releaseSync();
        const lease = await waiter;
        expect(await outsideProbe(lease.path)).toBe('busy');
        expect((await ls.inspect('r')).records).toMatchObject([{ pid: process.pid, label: 'second-vm', generation: lease.generation }]);
        lease.releaseSync();
      });

      test('network file systems: a shared join holds the lock it is told it holds', async () => {
        _debug.setForceRemote(true);
        const ls = LockSpace.open(tmp.dir, { checkInterval: 0 });
        await ls.create('r');
        const l = await ls.acquire('r', { shared: true });
        fs.closeSync(fs.openSync(l.path, 'r'));
        const joined = await ls.acquire('r', { shared: true, owner: 'joiner' });
        expect(await outsideProbe(joined.path)).toBe('busy');
        await l.release();
        expect(await outsideProbe(joined.path)).toBe('busy');
        await joined.release();
        expect(await outsideProbe(joined.path)).toBe('locked');
      });

      test('network file systems: a join whose taking of the lock again fails is refused with that error', () => {
        const shim = path.join(tmp.dir, 'fcntl-fault.so');
        const cc = spawnSync('cc', ['-shared', '-fPIC', '-o', shim, path.join(FIXTURES, 'fcntl-fault.c'), '-ldl'], { encoding: 'utf8' });
        expect(cc.stderr).toBe('');
        const lockDir = path.join(tmp.dir, 'locks');
        fs.mkdirSync(lockDir);
        const r = spawnSync(process.execPath, [path.join(FIXTURES, 'join-fault-child.js'), lockDir], {
          encoding: 'utf8',
          // First, ahead of a sanitizer runtime the run may preload.
          env: { ...process.env, LD_PRELOAD: [shim, process.env.LD_PRELOAD].filter(Boolean).join(':'), LOCKSPACE_FAULT_FILE: path.join(tmp.dir, 'fault') },
        });
        expect(r.stderr).toBe('');
        expect(JSON.parse(r.stdout)).toEqual({ code: 'ENOLCK', syscall: 'fcntl' });
      });

      test('shared waiters let in by a cancelled exclusive one, while another process took it: they wait for it', async () => {
        const ls = LockSpace.open(tmp.dir);
        await ls.create('r');
        const l = ls.acquireSync('r', { shared: true });
        const controller = new AbortController();
        const exclusive = ls.acquire('r', { wait: true, owner: 'writer', signal: controller.signal });
        const reader = ls.acquire('r', { shared: true, wait: true, owner: 'reader' });
        fs.closeSync(fs.openSync(l.path, 'r'));
        const other = await spawnPythonHolder(l.path);
        const lease = await grantedOnlyAfter(reader, other, async () => {
          controller.abort();
          expect((await catchErr(() => exclusive)).code).toBe('ABORT_ERR');
          l.releaseSync();
        });
        lease.releaseSync();
      });
    });

    test('an OFD lock is not dropped: verify resolves and the lock is still held', async () => {
      const ls = LockSpace.open(tmp.dir, { lockType: 'ofd' });
      await ls.create('r');
      const l = await ls.acquire('r');
      fs.closeSync(fs.openSync(l.path, 'r'));
      await expect(l.verify()).resolves.toBeUndefined();
      expect(await outsideProbe(l.path)).toBe('busy');
      await l.release();
    });
  });

  test('network file systems: verify runs on the threadpool with the same results', async () => {
    _debug.setForceRemote(true);
    const ls = LockSpace.open(tmp.dir, { checkInterval: 0 });
    const l = await ls.acquire('r', { autoCreate: true, shared: true });
    await expect(l.verify()).resolves.toBeUndefined();
    fs.unlinkSync(l.path);
    expect((await catchErr(() => l.verify())).cause.code).toBe('ENOENT');
    await l.release();
  });

  test('network file systems: leases are checked in the background, without a call by the holder', async () => {
    _debug.setForceRemote(true);
    const ls = LockSpace.open(tmp.dir, { checkInterval: 20 });
    const kept = await ls.acquire('kept', { autoCreate: true });
    const l = await ls.acquire('r', { autoCreate: true });
    const lost = new Promise<unknown>((resolve) => l.signal.addEventListener('abort', () => resolve(l.signal.reason)));
    fs.unlinkSync(l.path);
    const reason = (await lost) as LockspaceError;
    expect(reason.code).toBe('ERR_LOCK_LOST');
    expect((reason.cause as LockspaceError).code).toBe('ENOENT');
    expect(kept.signal.aborted).toBe(false);
    await l.release();
    await kept.release();
  });

  test('checkInterval is validated', () => {
    for (const bad of [-1, 1.5, NaN, Infinity, 2 ** 31]) {
      expect(catchErrSync(() => LockSpace.open(tmp.dir, { checkInterval: bad })).code).toBe('ERR_INVALID_ARG_VALUE');
    }
    expect(catchErrSync(() => LockSpace.open(tmp.dir, { checkInterval: '5' as any })).code).toBe('ERR_INVALID_ARG_TYPE');
  });
});

describe('inspect', () => {
  for (const remote of [false, true]) {
    const where = remote ? 'network file system' : 'local file system';

    test(`${where}: free, held here, held by another process; nothing dropped`, async () => {
      _debug.setForceRemote(remote);
      const ls = LockSpace.open(tmp.dir, { checkInterval: 0 });
      await ls.create('r');
      const file = path.join(tmp.dir, 'r');
      expect(await ls.inspect('r')).toEqual({
        name: 'r',
        path: file,
        state: 'free',
        holders: [],
        owners: [],
        waiters: 0,
        records: [],
        generation: null,
      });

      const mine = await ls.acquire('r', { owner: 'vm', shared: true });
      const info = await ls.inspect('r');
      expect(info).toMatchObject({ state: 'shared', owners: ['vm'], waiters: 0 });
      expect(info.holders).toEqual([{ pid: process.pid, mode: 'shared', kind: 'posix' }]);
      expect(await outsideProbe(file)).toBe('busy'); // inspect dropped nothing
      await mine.release();

      const holder = await spawnPythonHolder(file);
      try {
        const held = ls.inspectSync('r');
        expect(held.state).toBe('exclusive');
        expect(held.holders).toEqual([{ pid: remote ? null : holder.pid, mode: 'exclusive', kind: 'posix' }]);
        const waiting = ls.acquire('r', { wait: true });
        await waitFor(() => stats().waiters === 1, 'queued');
        expect((await ls.inspect('r')).waiters).toBe(1);
        await holder.release();
        (await waiting).releaseSync();
      } finally {
        await holder.kill();
      }
      expect(stats().resources).toBe(0); // no reservation left behind
    });
  }

  test('network file system: inspect by a hard link of a held file drops nothing', async () => {
    _debug.setForceRemote(true);
    const ls = LockSpace.open(tmp.dir, { checkInterval: 0 });
    const l = await ls.acquire('r', { autoCreate: true, owner: 'vm' });
    fs.linkSync(l.path, path.join(tmp.dir, 'link'));
    const info = await ls.inspect('link');
    expect(info).toMatchObject({ name: 'link', state: 'exclusive', owners: ['vm'] });
    expect(await outsideProbe(l.path)).toBe('busy');
    await l.verify();
    await l.release();
    expect(await outsideProbe(l.path)).toBe('locked');
  });

  test('an OFD holder is reported as such, and a missing file is ENOENT', async () => {
    const ls = LockSpace.open(tmp.dir, { lockType: 'ofd' });
    const l = await ls.acquire('r', { autoCreate: true });
    expect((await ls.inspect('r')).holders).toEqual([{ pid: null, mode: 'exclusive', kind: 'ofd' }]);
    await l.release();
    const err = await catchErr(() => ls.inspect('missing'));
    expect(err.code).toBe('ENOENT');
    expect(err.path).toBe(path.join(tmp.dir, 'missing'));
  });
});

describe('network file systems', () => {
  beforeEach(() => _debug.setForceRemote(true));

  test('autoCreate keeps the file at the last release (a waiter elsewhere may hold its inode)', async () => {
    const ls = LockSpace.open(tmp.dir);
    const l = await ls.acquire('r', { autoCreate: true });
    const ino = fs.statSync(l.path).ino;
    await l.release();
    expect(fs.statSync(path.join(tmp.dir, 'r')).ino).toBe(ino);
    expect(await outsideProbe(path.join(tmp.dir, 'r'))).toBe('locked');
    await ls.delete('r'); // delete still deletes
    expect(fs.existsSync(path.join(tmp.dir, 'r'))).toBe(false);
  });

  test('EBUSY names no holder pid: the kernel reports it on the holder\'s own host', async () => {
    const ls = LockSpace.open(tmp.dir);
    await ls.create('r');
    const holder = await spawnPythonHolder(path.join(tmp.dir, 'r'));
    try {
      const err = await catchErr(() => ls.acquire('r'));
      expect(err.code).toBe('EBUSY');
      expect(err.heldByThisProcess).toBe(false);
      expect(err.holderPid).toBeUndefined();
      expect(err.message).toContain('another host or process');
    } finally {
      await holder.release();
    }
  });
});

test('errno names for what network file systems return', () => {
  const names = Object.fromEntries([116, 107, 77, 5, 37].map((n) => [n, systemError(n, 'fcntl').code]));
  expect(names).toEqual({ 116: 'ESTALE', 107: 'ENOTCONN', 77: 'EBADFD', 5: 'EIO', 37: 'ENOLCK' });
  expect(systemError(116, 'open', '/x').message).toBe("ESTALE: stale file handle, open '/x'");
});
