/* Worker threads: one process-wide table shared by every thread; the close trap; worker exit and
 * terminate while holding and while waiting; hand-off between workers; an addon loaded only by workers. */
import * as fs from 'fs';
import * as path from 'path';
import { spawnSync } from 'child_process';
import { Worker } from 'worker_threads';
import { LockSpace } from '../lib';
import {
  useTmpDir,
  outsideProbe,
  spawnPythonHolder,
  stats,
  waitFor,
  track,
  catchErr,
  catchErrSync,
  WorkerClient,
  FIXTURES,
} from './helpers';

let workers: WorkerClient[] = [];
let rawWorkers: Worker[] = [];
const tmp = useTmpDir({
  beforeCleanup: async () => {
    for (const w of workers) if (w.exitCode === undefined) await w.terminate();
    for (const w of rawWorkers) await w.terminate();
    workers = [];
    rawWorkers = [];
  },
});

async function startWorker(openDir: string | null = tmp.dir): Promise<WorkerClient> {
  const w = await WorkerClient.start();
  workers.push(w);
  await w.call('open', { directory: openDir });
  return w;
}


describe('cross-worker exclusion', () => {
  test('worker A holds; worker B and the main thread get EBUSY (held by this process)', async () => {
    const file = path.join(tmp.dir, 'disk');
    const a = await startWorker();
    const b = await startWorker();
    const leaseA = await a.call('acquireSync', { name: 'disk', options: { autoCreate: true } });
    expect(leaseA.owner).toBe(a.threadId);
    expect(leaseA.path).toBe(file);

    for (const options of [{}, { shared: true }, { autoCreate: true }]) {
      const e = await catchErr(() => b.call('acquireSync', { name: 'disk', options }));
      expect(e.code).toBe('EBUSY');
      expect(e.heldByThisProcess).toBe(true);
      expect(e.path).toBe(file);
    }
    expect(fs.existsSync(file)).toBe(true); // B's failed autoCreate attempt deleted nothing
    expect(await outsideProbe(file)).toBe('busy');
    const e2 = await catchErr(() => b.call('acquire', { name: 'disk' }));
    expect(e2.code).toBe('EBUSY');
    expect(e2.heldByThisProcess).toBe(true);

    const ls = LockSpace.open(tmp.dir);
    const e3 = catchErrSync(() => ls.acquireSync('disk'));
    expect(e3.code).toBe('EBUSY');
    expect(e3.heldByThisProcess).toBe(true);
    expect(ls.resources()).toEqual([
      { name: 'disk', path: file, shared: false, autoCreate: true, owners: [a.threadId] },
    ]);
    // B sees the same table
    expect(await b.call('resources')).toEqual(ls.resources());

    await a.call('release', { leaseId: leaseA.leaseId });
    expect(fs.existsSync(file)).toBe(false);
    const leaseB = await b.call('acquireSync', { name: 'disk', options: { autoCreate: true } });
    expect(leaseB.owner).toBe(b.threadId);
    await b.call('releaseSync', { leaseId: leaseB.leaseId });
  });

  test('shared leases in several workers join one resource', async () => {
    const file = path.join(tmp.dir, 's');
    fs.writeFileSync(file, '');
    const ws = [await startWorker(), await startWorker(), await startWorker()];
    const leases = [];
    for (const w of ws) leases.push(await w.call('acquireSync', { name: 's', options: { shared: true } }));
    const ls = LockSpace.open(tmp.dir);
    expect(stats().resources).toBe(1);
    expect([...ls.resources()[0].owners].sort()).toEqual(ws.map((w) => w.threadId).sort());
    expect(await outsideProbe(file, 'shared')).toBe('locked');
    expect(await outsideProbe(file, 'exclusive')).toBe('busy');
    for (let i = 0; i < ws.length; i++) {
      expect(await outsideProbe(file, 'exclusive')).toBe('busy');
      await ws[i].call('release', { leaseId: leases[i].leaseId });
    }
    expect(await outsideProbe(file, 'exclusive')).toBe('locked');
  });
});

describe('the close trap', () => {
  test("a worker's failed attempts never drop another worker's lock (checked from another process)", async () => {
    const file = path.join(tmp.dir, 'disk');
    fs.writeFileSync(file, '');
    fs.linkSync(file, path.join(tmp.dir, 'hardlink'));
    fs.symlinkSync(tmp.dir, path.join(tmp.dir, '..', path.basename(tmp.dir) + '-sym'));
    const symDir = path.join(tmp.dir, '..', path.basename(tmp.dir) + '-sym');
    try {
      const a = await startWorker();
      const b = await startWorker();
      await b.call('open', { directory: null, space: 'paths' });
      await b.call('open', { directory: symDir, space: 'sym' });
      const leaseA = await a.call('acquireSync', { name: 'disk' });
      expect(await outsideProbe(file)).toBe('busy');

      const attempts: [string, Record<string, unknown>][] = [
        ['same name', { name: 'disk' }],
        ['same name shared', { name: 'disk', options: { shared: true } }],
        ['hard link', { name: 'hardlink' }],
        ['path mode', { space: 'paths', name: file }],
        ['path mode dotted', { space: 'paths', name: `${tmp.dir}/./disk` }],
        ['symlinked dir', { space: 'sym', name: 'disk' }],
      ];
      for (const [what, args] of attempts) {
        const e = await catchErr(() => b.call('acquireSync', args));
        expect({ what, code: e.code, here: e.heldByThisProcess }).toEqual({ what, code: 'EBUSY', here: true });
        // The lock must still be held after every failed attempt.
        expect({ what, probe: await outsideProbe(file) }).toEqual({ what, probe: 'busy' });
      }
      // B going away does not drop it either.
      b.call('exit').catch(() => undefined); // never answered: the worker is gone
      expect(await b.exited).toBe(0);
      expect(await outsideProbe(file)).toBe('busy');
      expect(await outsideProbe(file, 'shared')).toBe('busy');

      await a.call('release', { leaseId: leaseA.leaseId });
      expect(await outsideProbe(file)).toBe('locked');
    } finally {
      fs.unlinkSync(symDir);
    }
  });
});

describe('worker exit and terminate', () => {
  test.each(['exit', 'terminate'])('%s while holding releases the worker’s leases', async (how) => {
    const ls = LockSpace.open(tmp.dir);
    const w = await startWorker();
    const excl = path.join(tmp.dir, 'excl');
    const auto = path.join(tmp.dir, 'auto');
    const shared = path.join(tmp.dir, 'shared');
    fs.writeFileSync(excl, '');
    fs.writeFileSync(shared, '');
    await w.call('acquireSync', { name: 'excl' });
    await w.call('acquire', { name: 'auto', options: { autoCreate: true } });
    await w.call('acquireSync', { name: 'shared', options: { shared: true } });
    const mine = ls.acquireSync('shared', { shared: true });
    expect(await outsideProbe(excl)).toBe('busy');
    expect(await outsideProbe(auto)).toBe('busy');
    expect(stats().leases).toBe(4);

    if (how === 'exit') {
      const r = track(w.call('exit'));
      expect(await w.exited).toBe(0);
      await r.promise.catch(() => undefined);
    } else {
      await w.terminate();
    }

    expect(stats().leases).toBe(1);
    expect(stats().resources).toBe(1);
    expect(await outsideProbe(excl)).toBe('locked');
    expect(fs.existsSync(auto)).toBe(false); // autoCreate file deleted on the (implicit) last release
    // Our own shared lease on 'shared' survives the worker's departure.
    expect(mine.released).toBe(false);
    expect(ls.resources()).toEqual([{ name: 'shared', path: shared, shared: true, autoCreate: false, owners: [0] }]);
    expect(await outsideProbe(shared, 'exclusive')).toBe('busy');
    mine.releaseSync();
    expect(await outsideProbe(shared, 'exclusive')).toBe('locked');
  });

  test('terminate while waiting for an in-process holder: waiter gone, release finds no waiter', async () => {
    const ls = LockSpace.open(tmp.dir);
    const file = path.join(tmp.dir, 'r');
    fs.writeFileSync(file, '');
    const held = ls.acquireSync('r');
    const w = await startWorker();
    const pending = track(w.call('acquire', { name: 'r', options: { wait: true } }));
    await waitFor(() => stats().waiters === 1, 'worker waiter queued');

    await w.terminate();
    await pending.promise.catch(() => undefined);
    expect(pending.value).toBeUndefined();
    expect(stats().waiters).toBe(0);

    held.releaseSync();
    expect(stats()).toMatchObject({ resources: 0, leases: 0, waiters: 0 });
    expect(await outsideProbe(file)).toBe('locked');
    // and the resource is immediately available to this thread
    const again = ls.acquireSync('r');
    again.releaseSync();
  });

  test('terminate lets in every shared wait that the worker’s queued exclusive ones held back', async () => {
    // Queue on a resource held shared: worker X, main S, worker X, main S. The worker's end removes
    // both X; both S must join the shared holder, not just the first.
    const ls = LockSpace.open(tmp.dir);
    const file = path.join(tmp.dir, 'r');
    fs.writeFileSync(file, '');
    const held = ls.acquireSync('r', { shared: true });
    const w = await startWorker();
    const shared: ReturnType<typeof track>[] = [];
    for (let i = 0; i < 2; i++) {
      const waiters = stats().waiters;
      void w.call('acquire', { name: 'r', options: { wait: true } }).catch(() => undefined);
      await waitFor(() => stats().waiters === waiters + 1, 'worker exclusive wait queued');
      shared.push(track(ls.acquire('r', { shared: true, wait: true })));
    }
    expect(stats().waiters).toBe(4);

    await w.terminate();
    await waitFor(() => shared.every((s) => s.settled), 'both shared waits granted');
    expect(shared.map((s) => ({ error: s.error, shared: (s.value as any)?.shared }))).toEqual([
      { error: undefined, shared: true },
      { error: undefined, shared: true },
    ]);
    expect(ls.resources()).toEqual([{ name: 'r', path: file, shared: true, autoCreate: false, owners: [0, 0, 0] }]);
    expect(await outsideProbe(file, 'shared')).toBe('locked');
    expect(await outsideProbe(file, 'exclusive')).toBe('busy');
    for (const s of shared) await (s.value as any).release();
    held.releaseSync();
    expect(await outsideProbe(file, 'exclusive')).toBe('locked');
    expect(stats()).toMatchObject({ resources: 0, leases: 0, waiters: 0 });
  });

  test('a thread’s end releases its leases oldest first', async () => {
    // The worker holds the old "r"; the main thread waits for it (through a symlinked directory); "r"
    // is replaced and the worker takes the new one shared with autoCreate (in path mode). Released
    // oldest first, the wait moves on to the new "r" and the last shared release leaves the file to
    // it; newest first would delete the file under it. Several rounds: the table's iteration order
    // (by inode) must not decide.
    const alias = path.join(path.dirname(tmp.dir), `${path.basename(tmp.dir)}-alias`);
    fs.symlinkSync(tmp.dir, alias);
    const ls = LockSpace.open(alias);
    const start = async (): Promise<WorkerClient> => {
      const w = await startWorker();
      await w.call('open', { directory: null, space: 'paths' });
      return w;
    };
    let w = await start();
    try {
      for (let round = 0; round < 16; round++) {
        const file = path.join(tmp.dir, `r${round}`);
        fs.writeFileSync(file, '');
        await w.call('acquireSync', { name: `r${round}` });
        const waiting = track(ls.acquire(`r${round}`, { wait: true }));
        await waitFor(() => stats().waiters === 1, 'main thread queued');
        fs.writeFileSync(`${file}.new`, '');
        fs.renameSync(`${file}.new`, file);
        await w.call('acquireSync', { space: 'paths', name: file, options: { shared: true, autoCreate: true } });
        const next = await start();
        await w.terminate();
        w = next;
        await waitFor(() => waiting.settled, 'the wait settled');
        expect({ round, error: waiting.error?.code, shared: (waiting.value as any)?.shared }).toEqual({ round, error: undefined, shared: false });
        expect(fs.existsSync(file)).toBe(true);
        expect(await outsideProbe(file, 'shared')).toBe('busy');
        await (waiting.value as any).release();
      }
    } finally {
      fs.unlinkSync(alias);
    }
    expect(stats()).toMatchObject({ resources: 0, leases: 0, waiters: 0 });
  });

  test('terminate while waiting for another process: the kernel wait is abandoned', async () => {
    const file = path.join(tmp.dir, 'r');
    fs.writeFileSync(file, '');
    const holder = await spawnPythonHolder(file);
    try {
      const w = await startWorker();
      const pending = track(w.call('acquire', { name: 'r', options: { wait: true } }));
      await waitFor(() => stats().kernelWaits === 1, 'kernel wait started');
      await w.terminate();
      await pending.promise.catch(() => undefined);
      await waitFor(() => stats().kernelWaits === 0 && stats().waiters === 0, 'kernel wait gone');
    } finally {
      await holder.release();
    }
    // Nobody in this process may have picked the lock up after the holder left.
    expect(await outsideProbe(file)).toBe('locked');
    expect(stats()).toMatchObject({ resources: 0, leases: 0 });
  });

  test('many workers acquiring and leaving at random leave nothing behind', async () => {
    const names = ['a', 'b', 'c'];
    for (const n of names) fs.writeFileSync(path.join(tmp.dir, n), '');
    const ws = await Promise.all(Array.from({ length: 6 }, () => startWorker()));
    const calls: Promise<unknown>[] = [];
    ws.forEach((w, i) => {
      calls.push(
        w.call('acquire', { name: names[i % 3], options: { shared: i % 2 === 0, wait: true, timeout: 30000 } }),
      );
    });
    // Half the workers are terminated, half exit, whatever state their acquires are in.
    await Promise.all(
      ws.map(async (w, i) => {
        if (i % 2 === 0) await w.terminate();
        else {
          w.call('exit').catch(() => undefined);
          await w.exited;
        }
      }),
    );
    await Promise.allSettled(calls);
    await waitFor(() => {
      const s = stats();
      return s.resources === 0 && s.leases === 0 && s.waiters === 0;
    }, 'table empty');
    for (const n of names) expect(await outsideProbe(path.join(tmp.dir, n))).toBe('locked');
  });
});

describe('hand-off between workers', () => {
  test('wait:true in worker B is granted when worker A releases', async () => {
    const file = path.join(tmp.dir, 'disk');
    fs.writeFileSync(file, '');
    const a = await startWorker();
    const b = await startWorker();
    const c = await startWorker();
    const leaseA = await a.call('acquireSync', { name: 'disk' });
    const pendingB = track(b.call('acquire', { name: 'disk', options: { wait: true } }));
    await waitFor(() => stats().waiters === 1, 'B queued');
    const pendingC = track(c.call('acquire', { name: 'disk', options: { wait: true } }));
    await waitFor(() => stats().waiters === 2, 'C queued');
    expect(pendingB.settled).toBe(false);

    await a.call('release', { leaseId: leaseA.leaseId });
    const leaseB = await pendingB.promise;
    expect(leaseB.owner).toBe(b.threadId);
    expect(await outsideProbe(file)).toBe('busy');
    expect(pendingC.settled).toBe(false);
    expect(stats().waiters).toBe(1);
    expect(LockSpace.open(tmp.dir).resources()[0].owners).toEqual([b.threadId]);

    // B leaves while holding: C gets it.
    await b.terminate();
    const leaseC = await pendingC.promise;
    expect(leaseC.owner).toBe(c.threadId);
    expect(await outsideProbe(file)).toBe('busy');
    await c.call('release', { leaseId: leaseC.leaseId });
    expect(await outsideProbe(file)).toBe('locked');
  });
});

describe('stress', () => {
  test('workers acquiring and releasing at random never hold conflicting leases', async () => {
    const names = ['x', 'y'];
    const sab = new SharedArrayBuffer(4 * 2 * names.length);
    const results = await Promise.all(
      Array.from(
        { length: 4 },
        (_, i) =>
          new Promise<any>((resolve, reject) => {
            const w = new Worker(path.join(FIXTURES, 'stress-worker.js'), {
              workerData: { dir: tmp.dir, names, iterations: 150, sab, seed: 1234 + i },
            });
            rawWorkers.push(w);
            let msg: any;
            w.on('message', (m) => (msg = m));
            w.on('error', reject);
            w.on('exit', () => resolve(msg));
          }),
      ),
    );
    for (const r of results) {
      expect(r.error).toBeUndefined();
      expect(r.violations).toBe(0);
    }
    expect(results.reduce((n, r) => n + r.grants, 0)).toBeGreaterThan(300);
    expect(Array.from(new Int32Array(sab))).toEqual([0, 0, 0, 0]);
    // every autoCreate file was deleted by its last release
    expect(fs.readdirSync(tmp.dir)).toEqual([]);
  });
});

describe('process exit', () => {
  test('process.exit while threads hold leases and wait (in-process and in the kernel) does not crash', async () => {
    const ls = LockSpace.open(tmp.dir);
    const b = ls.acquireSync('b', { autoCreate: true });
    try {
      const r = spawnSync(process.execPath, [path.join(FIXTURES, 'exit-while-busy.js'), tmp.dir], {
        encoding: 'utf8',
        timeout: 50000,
      });
      expect(r.stderr).toBe('');
      expect(r.stdout).toBe('busy\n');
      expect(r.signal).toBeNull();
      expect(r.status).toBe(0);
      // The child's locks died with it (its autoCreate files may or may not have been cleaned up).
      for (const n of ['a', 'c']) {
        const f = path.join(tmp.dir, n);
        if (fs.existsSync(f)) expect(await outsideProbe(f)).toBe('locked');
      }
      expect(await outsideProbe(path.join(tmp.dir, 'b'))).toBe('busy');
    } finally {
      b.releaseSync();
    }
  });
});

describe('addon loaded only inside workers', () => {
  test('a child whose workers load, lock and leave (repeatedly) exits cleanly', () => {
    const r = spawnSync(process.execPath, [path.join(FIXTURES, 'worker-only-child.js'), tmp.dir], {
      encoding: 'utf8',
      timeout: 50000,
    });
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('ok\n');
    expect(r.signal).toBeNull();
    expect(r.status).toBe(0);
    expect(fs.readdirSync(tmp.dir)).toEqual([]);
  });
});
