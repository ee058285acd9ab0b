/* Deadlock detection in the lock table: cycles of waits among owners (threads, workers, Web Locks
 * callbacks, lease sets), hard and soft edges; one waiter of a cycle fails with EDEADLK, the others go
 * on; waits in no cycle are never failed. The survivors' locks are checked from another process. */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { LockSpace, isLockspaceError } from '../lib';
import { useTmpDir, outsideProbe, waitFor, track, catchErr, sleep, WorkerClient, stats, spawnPythonHolder } from './helpers';

let workers: WorkerClient[] = [];
const tmp = useTmpDir({
  beforeCleanup: async () => {
    for (const w of workers) if (w.exitCode === undefined) await w.terminate();
    workers = [];
  },
});

const DELAY = 300; // deadlockTimeout in these tests

async function startWorker(options: Record<string, unknown> = { deadlockTimeout: DELAY }): Promise<WorkerClient> {
  const w = await WorkerClient.start();
  workers.push(w);
  await w.call('open', { directory: tmp.dir, options });
  return w;
}

/** Waits until the table has `n` queued requests. */
const queued = (n: number) => waitFor(() => stats().waiters >= n, `${n} queued requests`);

type Outcome = { ok: true; value: any } | { ok: false; error: any };
const outcome = (p: Promise<any>): Promise<Outcome> =>
  p.then(
    (value) => ({ ok: true as const, value }),
    (error) => ({ ok: false as const, error }),
  );

describe('a cycle of waits between worker threads', () => {
  test('2-cycle: one waiter gets EDEADLK naming both resources and owners; the other is granted once it lets go', async () => {
    const [a, b] = [await startWorker(), await startWorker()];
    const x = await a.call('acquire', { name: 'x', options: { autoCreate: true } });
    const y = await b.call('acquire', { name: 'y', options: { autoCreate: true } });
    const aWaits = outcome(a.call('acquire', { name: 'y', options: { wait: true } }));
    await queued(1);
    const bWaits = outcome(b.call('acquire', { name: 'x', options: { wait: true } }));
    const first = await Promise.race([aWaits, bWaits]);
    expect(first.ok).toBe(false);
    const err = (first as { error: any }).error;
    expect(err.code).toBe('EDEADLK');
    expect(err.errno).toBe(-35);
    expect(err.syscall).toBe('acquire');
    for (const p of ['x', 'y']) expect(err.message).toContain(path.join(tmp.dir, p));
    for (const w of [a, b]) expect(err.message).toContain(`owner ${w.threadId}`);
    // The victim (usually the older wait, whose search ran first; a loaded machine can run the other's
    // first) lets go of what it holds, and the other is granted.
    const aIsVictim = err.path === path.join(tmp.dir, 'y');
    expect(err.path).toBe(path.join(tmp.dir, aIsVictim ? 'y' : 'x'));
    const [victim, victimHeld, survivor, survivorHeld, survivorWaits] = aIsVictim ? [a, x, b, y, bWaits] : [b, y, a, x, aWaits];
    await victim.call('release', { leaseId: victimHeld.leaseId });
    const second = await survivorWaits;
    expect(second.ok).toBe(true);
    expect(await outsideProbe(path.join(tmp.dir, 'x'))).toBe('busy');
    expect(await outsideProbe(path.join(tmp.dir, 'y'))).toBe('busy');
    await survivor.call('release', { leaseId: survivorHeld.leaseId });
    await survivor.call('release', { leaseId: (second as { value: any }).value.leaseId });
    expect(stats().waiters).toBe(0);
  });

  test('3-cycle: exactly one EDEADLK; the other two go on', async () => {
    const ws = [await startWorker(), await startWorker(), await startWorker()];
    const names = ['r0', 'r1', 'r2'];
    const held: any[] = [];
    for (let i = 0; i < 3; i++) held.push(await ws[i].call('acquire', { name: names[i], options: { autoCreate: true } }));
    const waits: ReturnType<typeof track<any>>[] = [];
    for (let i = 0; i < 3; i++) {
      waits.push(track(ws[i].call('acquire', { name: names[(i + 1) % 3], options: { wait: true } })));
      await queued(i + 1);
    }
    await waitFor(() => waits.some((w) => w.settled), 'a deadlock reported');
    await sleep(DELAY * 3); // nobody else is failed meanwhile
    const failed = waits.filter((w) => w.settled);
    expect(failed).toHaveLength(1);
    expect(failed[0].error.code).toBe('EDEADLK');
    for (const n of names) expect(failed[0].error.message).toContain(path.join(tmp.dir, n));
    for (const w of ws) expect(failed[0].error.message).toContain(`owner ${w.threadId}`);
    // The victim lets go of what it holds: the chain unwinds.
    const v = waits.indexOf(failed[0]);
    await ws[v].call('release', { leaseId: held[v].leaseId });
    for (let k = 1; k <= 2; k++) {
      const i = (v + 3 - k) % 3; // the one waiting for what was just released
      await waitFor(() => waits[i].settled, `worker ${i} granted`);
      expect(waits[i].error).toBeUndefined();
      expect(await outsideProbe(path.join(tmp.dir, names[(i + 1) % 3]))).toBe('busy');
      await ws[i].call('release', { leaseId: held[i].leaseId });
      await ws[i].call('release', { leaseId: waits[i].value.leaseId });
    }
    expect(stats()).toMatchObject({ waiters: 0, leases: 0 });
  });

  test('through a queued exclusive request (a soft edge): a shared request waits behind it, not for the shared holder', async () => {
    // A holds x shared; B waits for x exclusive; C holds y and asks x shared: queued behind B (FIFO),
    // although A's shared lock would admit it. A then waits for y: A -> C (holds y) -> B (queued
    // ahead of C on x) -> A (holds x).
    const [a, b, c] = [await startWorker(), await startWorker(), await startWorker()];
    const ax = await a.call('acquire', { name: 'x', options: { autoCreate: true, shared: true } });
    const cy = await c.call('acquire', { name: 'y', options: { autoCreate: true } });
    // Only B looks, once the cycle is surely closed: which wait looks first must not depend on how
    // fast three workers queue on a loaded machine (C's and A's own looks could find it first).
    const bx = track(b.call('acquire', { name: 'x', options: { wait: true, deadlockTimeout: DELAY * 5 } }));
    await queued(1);
    const cx = track(c.call('acquire', { name: 'x', options: { wait: true, shared: true, deadlockTimeout: Infinity } }));
    await queued(2);
    const ay = track(a.call('acquire', { name: 'y', options: { wait: true, deadlockTimeout: Infinity } }));
    await waitFor(() => [bx, cx, ay].some((w) => w.settled), 'a deadlock reported');
    await sleep(DELAY * 3);
    const failed = [bx, cx, ay].filter((w) => w.settled && w.error);
    expect(failed).toHaveLength(1);
    expect(failed[0].error.code).toBe('EDEADLK');
    expect(failed[0].error.message).toContain('queued ahead by');
    // B is the one failed; C's shared request joins A's now.
    expect(failed[0]).toBe(bx);
    await waitFor(() => cx.settled, 'C granted x shared');
    expect(cx.error).toBeUndefined();
    expect(await outsideProbe(path.join(tmp.dir, 'x'), 'shared')).toBe('locked');
    expect(await outsideProbe(path.join(tmp.dir, 'x'))).toBe('busy');
    await c.call('release', { leaseId: cy.leaseId });
    await waitFor(() => ay.settled, 'A granted y');
    expect(ay.error).toBeUndefined();
    expect(await outsideProbe(path.join(tmp.dir, 'y'))).toBe('busy');
    for (const [w, l] of [
      [a, ax],
      [a, ay.value],
      [c, cx.value],
    ] as const)
      await w.call('release', { leaseId: l.leaseId });
    expect(stats()).toMatchObject({ waiters: 0, leases: 0 });
  });

  test('a lease set waiting for a member, its owner holding what the other waits for: the set fails whole', async () => {
    const [a, b] = [await startWorker(), await startWorker()];
    const az = await a.call('acquire', { name: 'z', options: { autoCreate: true } });
    const bx = await b.call('acquire', { name: 'x', options: { autoCreate: true } });
    const set = track(a.call('acquireAll', { requests: ['w', 'x'], options: { autoCreate: true, wait: true } }));
    await queued(1);
    const bz = track(b.call('acquire', { name: 'z', options: { wait: true } }));
    await waitFor(() => set.settled || bz.settled, 'a deadlock reported');
    expect(set.settled).toBe(true);
    expect(set.error.code).toBe('EDEADLK');
    expect(set.error.message).toContain(path.join(tmp.dir, 'z'));
    // Nothing of the set is held: the member it took (autoCreate) was released and deleted.
    expect(fs.existsSync(path.join(tmp.dir, 'w'))).toBe(false);
    expect(await outsideProbe(path.join(tmp.dir, 'z'))).toBe('busy');
    await a.call('release', { leaseId: az.leaseId });
    await waitFor(() => bz.settled, 'B granted z');
    expect(bz.error).toBeUndefined();
    await b.call('release', { leaseId: bx.leaseId });
    await b.call('release', { leaseId: bz.value.leaseId });
    expect(stats()).toMatchObject({ waiters: 0, leases: 0 });
  });

  test('deadlockTimeout: Infinity (per lockspace or per acquire) never looks', async () => {
    const [a, b] = [await startWorker({ deadlockTimeout: Infinity }), await startWorker()];
    const x = await a.call('acquire', { name: 'x', options: { autoCreate: true } });
    const y = await b.call('acquire', { name: 'y', options: { autoCreate: true } });
    const aWaits = track(a.call('acquire', { name: 'y', options: { wait: true } }));
    const bWaits = track(b.call('acquire', { name: 'x', options: { wait: true, deadlockTimeout: Infinity } }));
    await queued(2);
    await sleep(DELAY * 4);
    expect(aWaits.settled || bWaits.settled).toBe(false);
    await a.call('release', { leaseId: x.leaseId });
    await waitFor(() => bWaits.settled);
    await b.call('release', { leaseId: y.leaseId });
    await waitFor(() => aWaits.settled);
    expect([aWaits.error, bWaits.error]).toEqual([undefined, undefined]);
    await a.call('release', { leaseId: aWaits.value.leaseId });
    await b.call('release', { leaseId: bWaits.value.leaseId });
  });
});

describe('ls.locks', () => {
  test("nested request('n', () => request('n', ...)): the inner request fails with EDEADLK", async () => {
    const ls = LockSpace.open(tmp.dir, { deadlockTimeout: DELAY });
    let inner: unknown;
    const outer = ls.locks.request('n', async () => {
      try {
        await ls.locks.request('n', () => 'never');
      } catch (err) {
        inner = err;
      }
      return 'outer done';
    });
    await expect(outer).resolves.toBe('outer done');
    expect(isLockspaceError(inner, 'EDEADLK')).toBe(true);
    expect((inner as Error).message).toContain(`owner "lockspace.locks ${process.pid}/`);
    expect(stats()).toMatchObject({ waiters: 0, leases: 0 });
  });

  test('nested through another name: n -> m held by a sibling waiting for n', async () => {
    const ls = LockSpace.open(tmp.dir, { deadlockTimeout: DELAY });
    let release!: () => void;
    const siblingHolds = new Promise<void>((r) => (release = r));
    let siblingError: unknown;
    const sibling = ls.locks.request('m', async () => {
      release();
      await sleep(50);
      try {
        await ls.locks.request('n', () => 'sibling got n');
      } catch (err) {
        siblingError = err;
      }
    });
    await siblingHolds;
    const outer = ls.locks.request('n', async () => ls.locks.request('m', () => 'outer got m'));
    const results = await Promise.allSettled([outer, sibling]);
    const deadlocks = [siblingError, results[0].status === 'rejected' ? results[0].reason : undefined].filter((e) =>
      isLockspaceError(e, 'EDEADLK'),
    );
    expect(deadlocks).toHaveLength(1);
    expect(stats()).toMatchObject({ waiters: 0, leases: 0 });
  });

  test('requests that are not nested wait as long as it takes (no EDEADLK)', async () => {
    const ls = LockSpace.open(tmp.dir, { deadlockTimeout: 50 });
    const first = ls.locks.request('n', () => sleep(DELAY * 2));
    const second = ls.locks.request('n', () => 'second');
    await expect(second).resolves.toBe('second');
    await first;
  });
});

describe('waits in no cycle are never failed', () => {
  test('one thread, its default owner, one task holding while another waits for the same lock', async () => {
    const ls = LockSpace.open(tmp.dir, { deadlockTimeout: 50 });
    const held = await ls.acquire('x', { autoCreate: true });
    const waits = [ls.acquire('x', { wait: true }), ls.acquire('x', { wait: true, shared: true })];
    await sleep(DELAY);
    await held.release();
    const first = await waits[0];
    await first.release();
    await (await waits[1]).release();
  });

  test('waits for another process are no cycle here: they wait (and time out) as before', async () => {
    const ls = LockSpace.open(tmp.dir, { deadlockTimeout: 50 });
    const file = path.join(tmp.dir, 'held-outside');
    fs.writeFileSync(file, '');
    const holder = await spawnPythonHolder(file);
    try {
      const waits = [ls.acquire('held-outside', { wait: true, timeout: 400 }), ls.acquire('held-outside', { wait: true, timeout: 400, shared: true })];
      for (const w of waits) expect((await catchErr(() => w)).code).toBe('ETIMEDOUT');
    } finally {
      await holder.release();
    }
    expect(stats()).toMatchObject({ waiters: 0, leases: 0 });
  });
});

describe('under load (test/stress/deadlock.js, shortened; npm run stress runs 100,000)', () => {
  const STRESS = path.join(__dirname, 'stress', 'deadlock.js');
  const runStress = (args: string[]) => {
    const r = spawnSync(process.execPath, [STRESS, ...args], { encoding: 'utf8', timeout: 120_000 });
    expect(r.stderr).toBe('');
    return { status: r.status, out: JSON.parse(r.stdout.trim().split('\n').pop()!) };
  };

  test('8 workers taking chains, lease sets and nested ls.locks requests in one global order: zero EDEADLK', () => {
    const { status, out } = runStress(['--workers', '8', '--acquisitions', '12000']);
    expect(out).toMatchObject({ deadlocks: 0, violations: 0, tableEmpty: true });
    expect(out.acquisitions).toBeGreaterThanOrEqual(12000);
    expect(out.longWaits).toBeGreaterThan(100); // waits that lasted past deadlockTimeout: searched
    expect(status).toBe(0);
  });

  test('control: in any order, real deadlocks come, each broken by one EDEADLK, and the run finishes', () => {
    const { status, out } = runStress(['--workers', '8', '--acquisitions', '3000', '--any-order']);
    expect(out.deadlocks).toBeGreaterThan(0);
    expect(out).toMatchObject({ violations: 0, tableEmpty: true });
    expect(status).toBe(0);
  });
});
