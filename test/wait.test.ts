/* wait: true — FIFO hand-off inside the process, timeout, AbortSignal, waiting on another process
 * without starving the libuv threadpool. */
import * as fs from 'fs';
import * as path from 'path';
import { setMaxListeners } from 'events';
import { LockSpace, Lease } from '../lib';
import {
  useTmpDir,
  outsideProbe,
  spawnPythonHolder,
  stats,
  waitFor,
  track,
  catchErr,
  errnoOf,
  countFds,
  lslocksFor,
  Holder,
  python,
} from './helpers';
import { spawn } from 'child_process';

const tmp = useTmpDir();


function expectAbortError(e: any): void {
  expect(e).toBeInstanceOf(Error);
  expect(e.name).toBe('AbortError');
  expect(e.code).toBe('ABORT_ERR');
}

describe('in-process holder', () => {
  test('waiters are granted in FIFO order, one per release', async () => {
    const ls = LockSpace.open(tmp.dir);
    ls.createSync('r');
    const holder = ls.acquireSync('r', { owner: 'h' });
    const order: string[] = [];
    const waits: { owner: string; t: ReturnType<typeof track<Lease>> }[] = [];
    for (const owner of ['w1', 'w2', 'w3', 'w4']) {
      const p = ls.acquire('r', { owner, wait: true }).then((l) => {
        order.push(owner);
        return l;
      });
      waits.push({ owner, t: track(p) });
      // queue order is arrival order: let each one arrive before the next
      await waitFor(() => stats().waiters === waits.length, `${owner} queued`);
    }

    holder.releaseSync();
    let current: Lease = await waits[0].t.promise;
    for (let i = 1; i < waits.length; i++) {
      expect(current.owner).toBe(waits[i - 1].owner);
      expect(ls.resources()[0].owners).toEqual([waits[i - 1].owner]);
      expect(stats().waiters).toBe(waits.length - i);
      expect(waits.slice(i).every((w) => !w.t.settled)).toBe(true);
      expect(await outsideProbe(path.join(tmp.dir, 'r'))).toBe('busy');
      await current.release();
      current = await waits[i].t.promise;
    }
    expect(order).toEqual(['w1', 'w2', 'w3', 'w4']);
    await current.release();
    expect(await outsideProbe(path.join(tmp.dir, 'r'))).toBe('locked');
  });

  test('a free resource is granted at once with wait:true', async () => {
    const ls = LockSpace.open(tmp.dir);
    const l = await ls.acquire('free', { wait: true, autoCreate: true, timeout: 1 });
    expect(await outsideProbe(path.join(tmp.dir, 'free'))).toBe('busy');
    await l.release();
  });

  test('shared waiter behind an exclusive holder', async () => {
    const ls = LockSpace.open(tmp.dir);
    ls.createSync('r');
    const ex = ls.acquireSync('r', { owner: 'x' });
    const s = track(ls.acquire('r', { owner: 's', shared: true, wait: true }));
    await waitFor(() => stats().waiters === 1, 'queued');
    await ex.release();
    const lease = await s.promise;
    expect(lease.shared).toBe(true);
    expect(await outsideProbe(path.join(tmp.dir, 'r'), 'shared')).toBe('locked');
    expect(await outsideProbe(path.join(tmp.dir, 'r'), 'exclusive')).toBe('busy');
    await lease.release();
  });

  test('timeout rejects with ETIMEDOUT and leaves no trace', async () => {
    const ls = LockSpace.open(tmp.dir);
    ls.createSync('r');
    const holder = ls.acquireSync('r');
    const fds0 = countFds();
    const e = await catchErr(() => ls.acquire('r', { wait: true, timeout: 50, owner: 'late' }));
    expect(e.code).toBe('ETIMEDOUT');
    expect(e.errno).toBe(errnoOf('ETIMEDOUT'));
    expect(e.path).toBe(path.join(tmp.dir, 'r'));
    expect(stats()).toMatchObject({ resources: 1, leases: 1, waiters: 0 });
    expect(countFds()).toBe(fds0);
    expect(ls.resources()[0].owners).toEqual([0]);
    holder.releaseSync();
    expect(stats()).toMatchObject({ resources: 0, leases: 0, waiters: 0 });
    expect(await outsideProbe(path.join(tmp.dir, 'r'))).toBe('locked');
  });

  test('a timed-out waiter does not block the waiters behind it', async () => {
    const ls = LockSpace.open(tmp.dir);
    ls.createSync('r');
    const holder = ls.acquireSync('r');
    const first = track(ls.acquire('r', { wait: true, timeout: 30, owner: 'first' }));
    const second = track(ls.acquire('r', { wait: true, owner: 'second' }));
    await expect(first.promise).rejects.toMatchObject({ code: 'ETIMEDOUT' });
    expect(stats().waiters).toBe(1);
    holder.releaseSync();
    const l = await second.promise;
    expect(l.owner).toBe('second');
    await l.release();
  });

  test('AbortSignal: abort rejects with AbortError and removes the waiter', async () => {
    const ls = LockSpace.open(tmp.dir);
    ls.createSync('r');
    const holder = ls.acquireSync('r');
    const ac = new AbortController();
    const p = track(ls.acquire('r', { wait: true, signal: ac.signal, owner: 'w' }));
    const after = track(ls.acquire('r', { wait: true, owner: 'after' }));
    await waitFor(() => stats().waiters === 2, 'queued');
    ac.abort();
    expectAbortError(await catchErr(() => p.promise));
    expect(stats().waiters).toBe(1);
    holder.releaseSync();
    const l = await after.promise;
    expect(l.owner).toBe('after');
    await l.release();
  });

  test('an already-aborted signal rejects with AbortError without queueing', async () => {
    const ls = LockSpace.open(tmp.dir);
    ls.createSync('r');
    const holder = ls.acquireSync('r');
    const e = await catchErr(() => ls.acquire('r', { wait: true, signal: AbortSignal.abort() }));
    expectAbortError(e);
    expect(stats().waiters).toBe(0);
    expect(stats().leases).toBe(1);
    holder.releaseSync();
  });

  test('abort after the grant has no effect on the lease', async () => {
    const ls = LockSpace.open(tmp.dir);
    ls.createSync('r');
    const ac = new AbortController();
    const l = await ls.acquire('r', { wait: true, signal: ac.signal });
    ac.abort();
    expect(l.released).toBe(false);
    expect(await outsideProbe(path.join(tmp.dir, 'r'))).toBe('busy');
    await l.release();
  });

  test('releaseOwner of a holder hands off to the next waiter', async () => {
    const ls = LockSpace.open(tmp.dir);
    ls.createSync('r');
    ls.acquireSync('r', { owner: 'vm' });
    const w = track(ls.acquire('r', { owner: 'next', wait: true }));
    await waitFor(() => stats().waiters === 1, 'queued');
    expect(ls.releaseOwnerSync('vm')).toBe(1);
    const l = await w.promise;
    expect(l.owner).toBe('next');
    await l.release();
  });

  test('releaseOwner releases oldest first: a waiter whose name moved gets the new file, not ENOENT', async () => {
    // The owner holds the old "r" and, after it was unlinked, a new "r" with autoCreate; a wait for
    // "r" is queued on the old one. Oldest first, the wait moves on to the new "r" and the autoCreate
    // release leaves the file to it; newest first would delete the file under it. Several rounds: the
    // table's iteration order (by inode) must not decide.
    const ls = LockSpace.open(tmp.dir);
    const paths = LockSpace.open(null);
    for (let round = 0; round < 16; round++) {
      const file = path.join(tmp.dir, `r${round}`);
      fs.writeFileSync(file, '');
      paths.acquireSync(file, { owner: 'vm' });
      const waiting = track(ls.acquire(`r${round}`, { wait: true, owner: 'next' }));
      await waitFor(() => stats().waiters === 1, 'queued');
      fs.unlinkSync(file);
      paths.acquireSync(file, { owner: 'vm', autoCreate: true });
      expect(paths.releaseOwnerSync('vm')).toBe(2);
      await waitFor(() => waiting.settled, 'the wait settled');
      expect({ round, error: waiting.error?.code, owner: (waiting.value as any)?.owner }).toEqual({ round, error: undefined, owner: 'next' });
      expect(fs.existsSync(file)).toBe(true);
      expect(await outsideProbe(file, 'shared')).toBe('busy');
      await (waiting.value as any).release();
    }
    expect(stats()).toMatchObject({ resources: 0, leases: 0, waiters: 0 });
  });
});

describe('autoCreate hand-off', () => {
  test('an autoCreate waiter gets a live file after the autoCreate holder deleted its own', async () => {
    const ls = LockSpace.open(tmp.dir);
    const file = path.join(tmp.dir, 'a');
    const first = ls.acquireSync('a', { autoCreate: true, owner: 1 });
    const w = track(ls.acquire('a', { autoCreate: true, wait: true, owner: 2 }));
    await waitFor(() => stats().waiters === 1, 'queued');
    first.releaseSync();
    const second = await w.promise;
    expect(fs.existsSync(file)).toBe(true);
    expect(await outsideProbe(file)).toBe('busy');
    expect(lslocksFor(file).map((l) => l.inode)).toEqual([fs.statSync(file).ino]);
    await second.release();
    expect(fs.existsSync(file)).toBe(false);
  });
});

describe('other-process holder', () => {
  test('the wait is granted once the other process releases', async () => {
    const file = path.join(tmp.dir, 'r');
    fs.writeFileSync(file, '');
    const ls = LockSpace.open(tmp.dir);
    const holder = await spawnPythonHolder(file);
    const p = track(ls.acquire('r', { wait: true }));
    await waitFor(() => stats().kernelWaits === 1, 'kernel wait started');
    expect(p.settled).toBe(false);
    await holder.release();
    const lease = await p.promise;
    expect(await outsideProbe(file)).toBe('busy');
    expect(stats().kernelWaits).toBe(0);
    await lease.release();
    expect(await outsideProbe(file)).toBe('locked');
  });

  test('in-process waiters behind a kernel wait all get their turn', async () => {
    const file = path.join(tmp.dir, 'r');
    fs.writeFileSync(file, '');
    const ls = LockSpace.open(tmp.dir);
    const holder = await spawnPythonHolder(file);
    const a = track(ls.acquire('r', { wait: true, owner: 'a' }));
    const b = track(ls.acquire('r', { wait: true, owner: 'b' }));
    await waitFor(() => stats().kernelWaits === 1, 'kernel wait started');
    await holder.release();
    const first = await Promise.race([a.promise, b.promise]);
    await waitFor(() => a.settled || b.settled, 'one granted');
    expect(a.settled && b.settled).toBe(false);
    await first.release();
    const second = await (first.owner === 'a' ? b.promise : a.promise);
    expect(second.owner).not.toBe(first.owner);
    await second.release();
    expect(await outsideProbe(file)).toBe('locked');
  });

  test('the file is replaced while we wait: we end up holding the file now at the path', async () => {
    const file = path.join(tmp.dir, 'r');
    fs.writeFileSync(file, 'old');
    const ls = LockSpace.open(tmp.dir);
    const holder = await spawnPythonHolder(file);
    const p = track(ls.acquire('r', { wait: true }));
    await waitFor(() => stats().kernelWaits === 1, 'kernel wait started');
    await holder.releaseAfter('replace');
    const lease = await p.promise;
    const ino = fs.statSync(file).ino;
    // (never open the locked file from this process: closing that fd would drop our lock)
    expect(fs.statSync(file).size).toBe(0);
    expect(await outsideProbe(file)).toBe('busy');
    expect(lslocksFor(file).filter((l) => l.pid === process.pid).map((l) => l.inode)).toEqual([ino]);
    await lease.release();
    expect(await outsideProbe(file)).toBe('locked');
  });

  test('the file is unlinked while we wait with autoCreate: we create and hold a new one', async () => {
    const file = path.join(tmp.dir, 'r');
    fs.writeFileSync(file, 'old');
    const ls = LockSpace.open(tmp.dir);
    const holder = await spawnPythonHolder(file);
    const p = track(ls.acquire('r', { wait: true, autoCreate: true }));
    await waitFor(() => stats().kernelWaits === 1, 'kernel wait started');
    await holder.releaseAfter('unlink');
    const lease = await p.promise;
    expect(fs.existsSync(file)).toBe(true);
    // (never open the locked file from this process: closing that fd would drop our lock)
    expect(fs.statSync(file).size).toBe(0);
    expect(await outsideProbe(file)).toBe('busy');
    await lease.release();
    expect(fs.existsSync(file)).toBe(false);
  });

  test('timeout while another process holds: ETIMEDOUT, and the lock is not taken later', async () => {
    const file = path.join(tmp.dir, 'r');
    fs.writeFileSync(file, '');
    const ls = LockSpace.open(tmp.dir);
    const holder = await spawnPythonHolder(file);
    try {
      const e = await catchErr(() => ls.acquire('r', { wait: true, timeout: 100 }));
      expect(e.code).toBe('ETIMEDOUT');
      await waitFor(() => stats().kernelWaits === 0, 'kernel wait ended');
      expect(stats()).toMatchObject({ resources: 0, leases: 0, waiters: 0 });
    } finally {
      await holder.release();
    }
    expect(await outsideProbe(file)).toBe('locked');
  });

  test('32 pending waits do not starve the threadpool; all are granted afterwards', async () => {
    const ls = LockSpace.open(tmp.dir);
    const files = Array.from({ length: 32 }, (_, i) => path.join(tmp.dir, `f${i}`));
    for (const f of files) fs.writeFileSync(f, `content ${path.basename(f)}`);
    const holder = await spawnPythonHolder(files);
    let released = false;
    try {
      const waits = files.map((f) => track(ls.acquire(path.basename(f), { wait: true })));
      await waitFor(() => stats().kernelWaits === 32, '32 kernel waits');

      // Threadpool work (more requests than the pool has threads) completes while all 32 wait.
      const reads = await Promise.all(
        Array.from({ length: 16 }, (_, i) => fs.promises.readFile(files[i % files.length], 'utf8')),
      );
      expect(reads[3]).toBe('content f3');
      const st = await Promise.all(files.map((f) => fs.promises.stat(f)));
      expect(st.every((s) => s.isFile())).toBe(true);
      expect(waits.every((w) => !w.settled)).toBe(true);

      await holder.release();
      released = true;
      const leases = await Promise.all(waits.map((w) => w.promise));
      expect(leases.map((l) => l.name)).toEqual(files.map((f) => path.basename(f)));
      expect(stats().kernelWaits).toBe(0);
      expect(await outsideProbe(files[0])).toBe('busy');
      expect(await outsideProbe(files[31])).toBe('busy');
      await Promise.all(leases.map((l) => l.release()));
    } finally {
      if (!released) await holder.release();
    }
    expect(await outsideProbe(files[17])).toBe('locked');
  });

  test('aborting 32 kernel waits rejects them all and takes no lock afterwards', async () => {
    const ls = LockSpace.open(tmp.dir);
    const files = Array.from({ length: 32 }, (_, i) => path.join(tmp.dir, `f${i}`));
    for (const f of files) fs.writeFileSync(f, '');
    let holder: Holder | undefined = await spawnPythonHolder(files);
    try {
      const ac = new AbortController();
      setMaxListeners(64, ac.signal); // one signal for 32 waits (Node warns past 10 listeners)
      const waits = files.map((f) => track(ls.acquire(path.basename(f), { wait: true, signal: ac.signal })));
      await waitFor(() => stats().kernelWaits === 32, '32 kernel waits');
      ac.abort();
      const results = await Promise.allSettled(waits.map((w) => w.promise));
      for (const r of results) {
        expect(r.status).toBe('rejected');
        expectAbortError((r as PromiseRejectedResult).reason);
      }
      await waitFor(() => stats().kernelWaits === 0, 'kernel waits ended');
      expect(stats()).toMatchObject({ resources: 0, leases: 0, waiters: 0 });
      await holder.release();
      holder = undefined;
      // No aborted wait picked up a lock once the holder left.
      for (const f of [files[0], files[15], files[31]]) expect(await outsideProbe(f)).toBe('locked');
      const l = ls.acquireSync('f7');
      l.releaseSync();
    } finally {
      if (holder) await holder.release();
    }
  });
});

describe('fairness to another process', () => {
  // python waits (blocking lockf) for an exclusive lock; prints how long it waited, holds it 100 ms
  // while it checks that no shared lock can be had meanwhile, then exits.
  const WRITER = `
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR)
print('waiting', flush=True)
t0 = time.monotonic()
fcntl.lockf(fd, fcntl.LOCK_EX, 1, 0)
print('granted %d' % ((time.monotonic() - t0) * 1000), flush=True)
time.sleep(0.1)
print('releasing', flush=True)
`;

  test("a stream of overlapping shared leases here does not starve another process's exclusive waiter", async () => {
    const ls = LockSpace.open(tmp.dir);
    const file = path.join(tmp.dir, 'iso');
    fs.writeFileSync(file, '');
    let stop = false;
    let taken = 0;
    const releases: Promise<void>[] = [];
    // Each shared lease is held 30 ms and a new one is requested every 5 ms: they always overlap.
    const stream = (async () => {
      const deadline = Date.now() + 8000;
      while (!stop && Date.now() < deadline) {
        const lease = await ls.acquire('iso', { shared: true, wait: true });
        taken++;
        releases.push(new Promise<void>((r) => setTimeout(() => lease.release().then(r), 30)));
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    await waitFor(() => taken >= 20, 'the shared stream going');
    const writer = spawn(python(), ['-c', WRITER, file], { stdio: ['ignore', 'pipe', 'inherit'] });
    const lines: string[] = [];
    let takenWhileWriterHeld = -1;
    writer.stdout.setEncoding('utf8').on('data', (d: string) => {
      for (const l of d.split('\n').filter(Boolean)) {
        lines.push(l);
        if (l.startsWith('granted')) takenWhileWriterHeld = taken;
        if (l === 'releasing') takenWhileWriterHeld = taken - takenWhileWriterHeld;
      }
    });
    const status = await new Promise<number | null>((r) => writer.on('close', r));
    const takenAfter = taken;
    await waitFor(() => taken > takenAfter, 'the shared stream going on after the writer');
    stop = true;
    await stream;
    await Promise.all(releases);
    expect(status).toBe(0);
    const granted = lines.find((l) => l.startsWith('granted'));
    expect(granted).toBeDefined();
    // Granted while the stream went on (it did after the writer, above), not after it ended.
    process.stdout.write(`fair to another process's writer: granted after ${granted!.split(' ')[1]} ms of the shared stream\n`);
    expect(takenWhileWriterHeld).toBe(0); // no shared lease here while the writer held it
    expect(stats()).toMatchObject({ leases: 0, waiters: 0 });
  });
});
