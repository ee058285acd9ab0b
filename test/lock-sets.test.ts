/* Lock sets (acquireAll / acquireAllSync / LeaseSet): all or nothing, one lock per file, no
 * hold-and-wait before escalation, the escalation in canonical order, the set's signal and its
 * release; every exclusion claim checked from another process (python's fcntl.lockf). The
 * opposite-order runs in threads and processes are test/stress/sets.js, shortened. */
import * as dc from 'diagnostics_channel';
import * as fs from 'fs';
import * as path from 'path';
import { spawn } from 'child_process';
import { AbortError, Lease, LeaseSet, LockSpace, LockspaceError } from '../lib';
import { _debug } from '../lib/internal';
import { ESCALATE_AFTER } from '../lib/lease-set';
import {
  catchErr,
  catchErrSync,
  countFds,
  listDir,
  outsideProbe,
  spawnPythonHolder,
  stats,
  track,
  useTmpDir,
  waitFor,
  Holder,
} from './helpers';

const tmp = useTmpDir();
const p = (name: string) => path.join(tmp.dir, name);
const touch = (...names: string[]) => names.forEach((n) => fs.writeFileSync(p(n), ''));

afterEach(() => _debug.setForceRemote(false));

/** Every name busy for an exclusive probe from another process (the set holds them all). */
async function expectHeld(...names: string[]): Promise<void> {
  for (const n of names) expect([n, await outsideProbe(p(n))]).toEqual([n, 'busy']);
}

/** Every name free for another process (nothing of the set is held). */
async function expectFree(...names: string[]): Promise<void> {
  for (const n of names) expect([n, await outsideProbe(p(n))]).toEqual([n, 'locked']);
}

describe('all or nothing', () => {
  let holder: Holder | undefined;
  afterEach(async () => {
    await holder?.release();
    holder = undefined;
  });

  test('acquireAllSync: the third name held by another process is EBUSY; the first two are not kept', async () => {
    const ls = LockSpace.open(tmp.dir);
    touch('a', 'b', 'c');
    holder = await spawnPythonHolder(p('c'));
    const fds = countFds();
    const err = catchErrSync(() => ls.acquireAllSync(['a', 'b', 'c']));
    expect(err).toBeInstanceOf(LockspaceError);
    expect(err).toMatchObject({ code: 'EBUSY', path: p('c'), heldByThisProcess: false, holderPid: holder.pid });
    await expectFree('a', 'b');
    expect(stats()).toMatchObject({ resources: 0, leases: 0, waiters: 0 });
    expect(countFds()).toBe(fds);
  });

  test('acquireAll without wait: the same EBUSY, nothing kept', async () => {
    const ls = LockSpace.open(tmp.dir);
    touch('a', 'b', 'c');
    holder = await spawnPythonHolder(p('c'));
    const fds = countFds();
    const err = await catchErr(() => ls.acquireAll(['a', 'b', 'c']));
    expect(err).toMatchObject({ code: 'EBUSY', path: p('c'), heldByThisProcess: false });
    await expectFree('a', 'b');
    expect(stats()).toMatchObject({ resources: 0, leases: 0, waiters: 0, kernelWaits: 0 });
    expect(countFds()).toBe(fds);
  });

  test('acquireAll with wait and timeout: ETIMEDOUT naming the busy member and the timeout; nothing kept', async () => {
    const ls = LockSpace.open(tmp.dir);
    touch('a', 'b', 'c');
    holder = await spawnPythonHolder(p('c'));
    const fds = countFds();
    const err = await catchErr(() => ls.acquireAll(['a', 'b', 'c'], { wait: true, timeout: 200 }));
    expect(err).toMatchObject({ code: 'ETIMEDOUT', syscall: 'acquire', path: p('c') });
    expect(err.message).toContain('after 200 ms');
    await expectFree('a', 'b');
    await waitFor(() => stats().kernelWaits === 0, 'the cancelled kernel wait to end');
    expect(stats()).toMatchObject({ resources: 0, leases: 0, waiters: 0 });
    expect(countFds()).toBe(fds);
  });

  test('autoCreate: the files created for a set that fails are deleted, sync and async', async () => {
    const ls = LockSpace.open(tmp.dir);
    touch('c');
    holder = await spawnPythonHolder(p('c'));
    const fds = countFds();
    expect(catchErrSync(() => ls.acquireAllSync(['a', 'b', 'c'], { autoCreate: true })).code).toBe('EBUSY');
    expect(listDir(tmp.dir)).toEqual(['c']);
    expect((await catchErr(() => ls.acquireAll(['a', 'b', 'c'], { autoCreate: true }))).code).toBe('EBUSY');
    expect(listDir(tmp.dir)).toEqual(['c']);
    const err = await catchErr(() => ls.acquireAll(['a', 'b', 'c'], { autoCreate: true, wait: true, timeout: 100 }));
    expect(err.code).toBe('ETIMEDOUT');
    expect(listDir(tmp.dir)).toEqual(['c']);
    await waitFor(() => stats().kernelWaits === 0, 'the cancelled kernel wait to end');
    expect(stats()).toMatchObject({ resources: 0, leases: 0, waiters: 0 });
    expect(countFds()).toBe(fds);
  });

  test('an abort while the set waits: AbortError, nothing kept', async () => {
    const ls = LockSpace.open(tmp.dir);
    touch('a', 'b', 'c');
    holder = await spawnPythonHolder(p('c'));
    const ac = new AbortController();
    const pending = track(ls.acquireAll(['a', 'b', 'c'], { wait: true, signal: ac.signal }));
    await waitFor(() => stats().kernelWaits === 1, 'the set to wait for c');
    await expectFree('a', 'b');
    ac.abort(new Error('shutting down'));
    const err = await catchErr(() => pending.promise);
    expect(err).toBeInstanceOf(AbortError);
    expect(err.cause.message).toBe('shutting down');
    await expectFree('a', 'b');
    await waitFor(() => stats().kernelWaits === 0, 'the cancelled kernel wait to end');
    expect(stats()).toMatchObject({ resources: 0, leases: 0, waiters: 0 });
  });

  test('an already aborted signal rejects before anything is taken', async () => {
    const ls = LockSpace.open(tmp.dir);
    const err = await catchErr(() => ls.acquireAll(['a', 'b'], { autoCreate: true, wait: true, signal: AbortSignal.abort() }));
    expect(err).toBeInstanceOf(AbortError);
    expect(listDir(tmp.dir)).toEqual([]);
  });

  test('any other failure (a member missing without autoCreate) ends the set with its error, nothing kept', async () => {
    const ls = LockSpace.open(tmp.dir);
    touch('a', 'b');
    for (const take of [() => ls.acquireAllSync(['a', 'b', 'c']), () => ls.acquireAll(['a', 'b', 'c'], { wait: true })]) {
      const err = await catchErr(take);
      expect(err).toMatchObject({ code: 'ENOENT', path: p('c') });
      await expectFree('a', 'b');
      expect(listDir(tmp.dir)).toEqual(['a', 'b']);
    }
  });

  test('a set granted after waiting holds every member; the wait ends when the other process lets go', async () => {
    const ls = LockSpace.open(tmp.dir);
    touch('a', 'b', 'c');
    holder = await spawnPythonHolder(p('c'));
    const pending = track(ls.acquireAll(['c', 'a', 'b'], { wait: true }));
    await waitFor(() => stats().kernelWaits === 1, 'the set to wait for c');
    expect(pending.settled).toBe(false);
    await holder.release();
    holder = undefined;
    const set = await pending.promise;
    expect(set.leases.map((l) => l.name)).toEqual(['c', 'a', 'b']);
    await expectHeld('a', 'b', 'c');
    await set.release();
    await expectFree('a', 'b', 'c');
  });
});

describe('no hold-and-wait, then the canonical order', () => {
  test('while the set waits for a busy member it holds nothing; it takes its turn in the FIFO queue', async () => {
    const ls = LockSpace.open(tmp.dir);
    touch('a', 'b');
    const other = ls.acquireSync('b', { owner: 'other' });
    const pending = track(ls.acquireAll(['a', 'b'], { wait: true }));
    let later: ReturnType<typeof track<Lease>>;
    try {
      await waitFor(() => ls.inspectSync('b').waiters === 1, 'the set to queue for b');
      await expectFree('a'); // taken and let go: never held while waiting
      later = track(ls.acquire('b', { wait: true, owner: 'later' })); // queued behind the set
      await waitFor(() => ls.inspectSync('b').waiters === 2, 'the later request to queue');
    } finally {
      other.releaseSync();
    }
    const set = await pending.promise;
    await expectHeld('a', 'b');
    expect(later.settled).toBe(false);
    await set.release();
    const lease = await later.promise;
    lease.releaseSync();
  });

  test(`after ${ESCALATE_AFTER} busy rounds the set waits in canonical order, holding the members before the one it waits for`, async () => {
    const ls = LockSpace.open(tmp.dir);
    touch('a', 'b');
    // Each round: the set waits for `busy` (holding nothing), another process takes the other member
    // first, then lets `busy` go: granted it, the set finds the other busy and lets go again.
    let holder = await spawnPythonHolder(p('b'));
    let [busy, other] = ['b', 'a'];
    const pending = track(ls.acquireAll(['b', 'a'], { wait: true }));
    try {
      for (let round = 1; round < ESCALATE_AFTER; round++) {
        await waitFor(() => ls.inspectSync(busy).waiters === 1, `round ${round}: the set to wait for ${busy}`);
        await expectFree(other);
        const next = await spawnPythonHolder(p(other));
        await holder.release();
        holder = next;
        [busy, other] = [other, busy];
      }
      expect(busy).toBe('b'); // (the rounds above end with b busy, so that the order shows below)
      // Busy round ESCALATE_AFTER: the set takes a, then waits for b holding a.
      await waitFor(() => ls.inspectSync('b').waiters === 1, 'the set to wait for b in canonical order');
      await expectHeld('a');
      expect(pending.settled).toBe(false);
    } finally {
      await holder.release();
    }
    const set = await pending.promise;
    await expectHeld('a', 'b');
    set.releaseSync();
    await expectFree('a', 'b');
  });
});

describe('one lock per file', () => {
  test('the same name twice is one lease', async () => {
    const ls = LockSpace.open(tmp.dir);
    const set = ls.acquireAllSync(['a', 'b', 'a'], { autoCreate: true });
    expect(set.leases).toHaveLength(3);
    expect(set.leases[2]).toBe(set.leases[0]);
    expect(stats().leases).toBe(2);
    await expectHeld('a', 'b');
    set.releaseSync();
    expect(listDir(tmp.dir)).toEqual([]);
  });

  test('a hard link and its target: one lock, granted, sync and async', async () => {
    const ls = LockSpace.open(tmp.dir);
    touch('a', 'c');
    fs.linkSync(p('a'), p('b'));
    for (const take of [() => ls.acquireAllSync(['b', 'c', 'a']), () => ls.acquireAll(['b', 'c', 'a'], { wait: true })]) {
      const set = await take();
      expect(set.leases.map((l) => l.name)).toEqual(['a', 'c', 'a']); // canonical order: 'a' is taken, 'b' reaches its file
      expect(set.leases[0]).toBe(set.leases[2]);
      expect(stats().leases).toBe(2);
      await expectHeld('a', 'b', 'c');
      await set.release();
      await expectFree('a', 'b', 'c');
    }
  });

  test("path mode: '/d/./a' and '/d/a' are one member", async () => {
    const ls = LockSpace.open(null);
    touch('a');
    const set = await ls.acquireAll([`${tmp.dir}/./a`, p('a')]);
    expect(set.leases[0]).toBe(set.leases[1]);
    expect(set.leases[0].name).toBe(`${tmp.dir}/./a`);
    expect(stats().leases).toBe(1);
    await expectHeld('a');
    await set.release();
  });

  test('shared and exclusive requests of one name: one exclusive lease', async () => {
    const ls = LockSpace.open(tmp.dir);
    const set = ls.acquireAllSync([{ name: 'a', shared: true }, 'a'], { autoCreate: true });
    expect(set.leases[0]).toBe(set.leases[1]);
    expect(set.leases[0].shared).toBe(false);
    expect(await outsideProbe(p('a'), 'shared')).toBe('busy');
    set.releaseSync();
  });

  test('a hard link asked exclusive whose target the set took shared: the set takes it again, exclusive', async () => {
    const ls = LockSpace.open(tmp.dir);
    touch('a');
    fs.linkSync(p('a'), p('b'));
    // Canonical order takes 'a' (shared) first; 'b' reaches the same file and wants it exclusive.
    const requests = [{ name: 'b', shared: false }, 'a'];
    for (const take of [() => ls.acquireAllSync(requests, { shared: true }), () => ls.acquireAll(requests, { shared: true, wait: true })]) {
      const set = await take();
      expect(set.leases[0]).toBe(set.leases[1]);
      expect(set.leases[0]).toMatchObject({ name: 'a', shared: false });
      expect(stats().leases).toBe(1);
      expect(await outsideProbe(p('a'), 'shared')).toBe('busy');
      await set.release();
      await expectFree('a');
    }
  });

  test('two shared requests reaching one file through a hard link share its one shared lock', async () => {
    const ls = LockSpace.open(tmp.dir);
    touch('a');
    fs.linkSync(p('a'), p('b'));
    const set = ls.acquireAllSync(['a', 'b'], { shared: true });
    expect(set.leases.every((l) => l.shared)).toBe(true);
    expect(await outsideProbe(p('a'), 'shared')).toBe('locked');
    expect(await outsideProbe(p('a'), 'exclusive')).toBe('busy');
    set.releaseSync();
    await expectFree('a');
  });

  test('network file systems (simulated): the same results, the calls on the threadpool', async () => {
    _debug.setForceRemote(true);
    const ls = LockSpace.open(tmp.dir, { checkInterval: 0 });
    touch('a', 'c');
    fs.linkSync(p('a'), p('b'));
    const set = await ls.acquireAll(['a', 'b', 'c'], { wait: true });
    expect(set.leases[0]).toBe(set.leases[1]);
    await expectHeld('a', 'b', 'c');
    await set.release();
    const holder = await spawnPythonHolder(p('c'));
    try {
      expect((await catchErr(() => ls.acquireAll(['a', 'b', 'c']))).code).toBe('EBUSY');
      await expectFree('a');
    } finally {
      await holder.release();
    }
  });
});

describe('LeaseSet', () => {
  test('signal aborts when any member is lost, with that lease reason', async () => {
    const ls = LockSpace.open(tmp.dir);
    const set = await ls.acquireAll(['a', 'b'], { autoCreate: true });
    const reasons: unknown[] = [];
    set.signal.addEventListener('abort', () => reasons.push(set.signal.reason));
    expect(set.signal.aborted).toBe(false);
    fs.unlinkSync(p('b'));
    await expect(set.leases[0].verify()).resolves.toBeUndefined();
    const err = await catchErr(() => set.leases[1].verify());
    expect(err.code).toBe('ERR_LOCK_LOST');
    expect(set.signal.aborted).toBe(true);
    expect(reasons).toEqual([err]);
    await set.release();
  });

  test('a signal first read after a loss is aborted at once; a released set never aborts', async () => {
    const ls = LockSpace.open(tmp.dir);
    const lost = ls.acquireAllSync(['a', 'b'], { autoCreate: true });
    fs.unlinkSync(p('a'));
    await catchErr(() => lost.leases[0].verify());
    expect(lost.signal.aborted).toBe(true);
    expect((lost.signal.reason as LockspaceError).code).toBe('ERR_LOCK_LOST');
    lost.releaseSync();
    const kept = ls.acquireAllSync(['c', 'd'], { autoCreate: true });
    const signal = kept.signal;
    kept.releaseSync();
    expect(signal.aborted).toBe(false);
  });

  test('disposal releases every member; releasing twice is harmless', async () => {
    const ls = LockSpace.open(tmp.dir);
    touch('a', 'b');
    {
      using set = ls.acquireAllSync(['a', 'b']);
      expect(set).toBeInstanceOf(LeaseSet);
      await expectHeld('a', 'b');
    }
    await expectFree('a', 'b');
    {
      await using _set = await ls.acquireAll(['a', 'b']);
      await expectHeld('a', 'b');
    }
    await expectFree('a', 'b');
    const set = await ls.acquireAll(['a', 'b']);
    await set.release();
    await set.release();
    set.releaseSync();
    expect(set.leases.every((l) => l.released)).toBe(true);
    // a member released on its own (by name) meanwhile: the set's release still succeeds
    const again = ls.acquireAllSync(['a', 'b']);
    ls.releaseSync('a');
    again.releaseSync();
    expect(stats().leases).toBe(0);
  });

  test('release lets the members go in the reverse of the canonical order', async () => {
    const ls = LockSpace.open(tmp.dir);
    const released: string[] = [];
    const onRelease = (m: unknown) => released.push((m as { name: string }).name);
    dc.subscribe('lockspace:release', onRelease);
    try {
      const set = await ls.acquireAll(['b', 'c', 'a', 'b'], { autoCreate: true });
      await set.release();
      ls.acquireAllSync(['c', 'a', 'b'], { autoCreate: true }).releaseSync();
    } finally {
      dc.unsubscribe('lockspace:release', onRelease);
    }
    expect(released).toEqual(['c', 'b', 'a', 'c', 'b', 'a']);
  });

  test('lease sets come from acquireAll only', () => {
    expect(() => new (LeaseSet as any)(Symbol('lockspace.leaseSet'), [], [])).toThrow(TypeError);
  });
});

describe('bad input: a typed error before anything is taken', () => {
  const cases: [string, unknown, unknown, string][] = [
    ['not an array', 'a', undefined, 'ERR_INVALID_ARG_TYPE'],
    ['no requests', [], undefined, 'ERR_INVALID_ARG_VALUE'],
    ['a number', ['a', 42], undefined, 'ERR_INVALID_ARG_TYPE'],
    ['null', ['a', null], undefined, 'ERR_INVALID_ARG_TYPE'],
    ['an array', ['a', ['b']], undefined, 'ERR_INVALID_ARG_TYPE'],
    ['a hole', ['a', , 'b'], undefined, 'ERR_INVALID_ARG_TYPE'], // eslint-disable-line no-sparse-arrays
    ['an empty name', ['a', ''], undefined, 'ERR_INVALID_ARG_VALUE'],
    ['a name with a slash', ['a', 'x/y'], undefined, 'ERR_INVALID_ARG_VALUE'],
    ['..', ['a', '..'], undefined, 'ERR_INVALID_ARG_VALUE'],
    ['a lone surrogate', ['a', '\uD800'], undefined, 'ERR_INVALID_ARG_VALUE'],
    ['an object without name', ['a', { shared: true }], undefined, 'ERR_INVALID_ARG_TYPE'],
    ['a misspelt property', ['a', { name: 'b', shraed: true }], undefined, 'ERR_INVALID_ARG_VALUE'],
    ['shared not a boolean', ['a', { name: 'b', shared: 'yes' }], undefined, 'ERR_INVALID_ARG_TYPE'],
    ['an unknown option', ['a', 'b'], { autocreate: true }, 'ERR_INVALID_ARG_VALUE'],
    ['options not an object', ['a', 'b'], 'wait', 'ERR_INVALID_ARG_TYPE'],
  ];

  test.each(cases)('%s', async (_what, requests, options, code) => {
    const ls = LockSpace.open(tmp.dir);
    const fds = countFds();
    const opts = { autoCreate: true, ...(options as object) };
    const sync = catchErrSync(() => ls.acquireAllSync(requests as any, typeof options === 'string' ? (options as any) : opts));
    expect(sync).toBeInstanceOf(TypeError);
    expect(sync.code).toBe(code);
    let thrown: unknown;
    let pending: Promise<unknown> | undefined;
    try {
      pending = ls.acquireAll(requests as any, typeof options === 'string' ? (options as any) : opts);
    } catch (e) {
      thrown = e;
    }
    expect(thrown).toBeUndefined(); // a rejection, never a throw
    const async = await catchErr(() => pending!);
    expect(async).toBeInstanceOf(TypeError);
    expect(async.code).toBe(code);
    expect(listDir(tmp.dir)).toEqual([]);
    expect(stats()).toMatchObject({ resources: 0, leases: 0 });
    expect(countFds()).toBe(fds);
  });

  test('errors name the request: requests[i] and requests[i].name', () => {
    const ls = LockSpace.open(tmp.dir);
    expect(catchErrSync(() => ls.acquireAllSync(['a', 7] as any)).message).toContain('"requests[1]"');
    expect(catchErrSync(() => ls.acquireAllSync(['a', { name: 'x/y' }])).message).toContain("'requests[1].name'");
    expect(catchErrSync(() => ls.acquireAllSync(['a', { name: 'b', shraed: true }] as any)).message).toContain('did you mean shared?');
    expect(catchErrSync(() => ls.acquireAllSync([])).message).toContain('must name at least one resource');
  });

  test("options: acquireAll's as acquire's, acquireAllSync's as acquireSync's", async () => {
    const ls = LockSpace.open(tmp.dir);
    const noWait = await catchErr(() => ls.acquireAll(['a'], { timeout: 5 } as any));
    expect(noWait).toMatchObject({ code: 'ERR_INVALID_ARG_VALUE' });
    expect(noWait.message).toContain('without wait: true');
    const sync = catchErrSync(() => ls.acquireAllSync(['a'], { wait: true } as any));
    expect(sync.code).toBe('ERR_INVALID_ARG_VALUE');
    expect(sync.message).toContain('use acquireAll');
    const signal = catchErrSync(() => ls.acquireAllSync(['a'], { signal: {} } as any));
    expect(signal.code).toBe('ERR_INVALID_ARG_VALUE');
    expect((await catchErr(() => ls.acquireAll(['a'], { wait: true, signal: {} as AbortSignal }))).code).toBe('ERR_INVALID_ARG_TYPE');
    expect(listDir(tmp.dir)).toEqual([]);
  });

  test('path mode: a relative name is rejected, and nothing of the valid ones is taken', async () => {
    const ls = LockSpace.open(null);
    touch('a');
    const err = await catchErr(() => ls.acquireAll([p('a'), 'b']));
    expect(err.code).toBe('ERR_INVALID_ARG_VALUE');
    expect(stats().leases).toBe(0);
  });

  test('each request is read once (a getter runs once)', () => {
    const ls = LockSpace.open(tmp.dir);
    let reads = 0;
    const request = {
      get name() {
        reads++;
        return reads === 1 ? 'a' : 'x/y';
      },
    };
    const set = ls.acquireAllSync([request], { autoCreate: true });
    expect(reads).toBe(1);
    expect(set.leases[0].name).toBe('a');
    set.releaseSync();
  });
});

describe('opposite orders in threads and processes (test/stress/sets.js)', () => {
  const SETS = path.join(__dirname, 'stress', 'sets.js');

  function runSets(args: string[]): Promise<{ status: number | null; summary: any; stderr: string }> {
    return new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [SETS, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
      child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
      child.on('error', reject);
      child.on('close', (status) => {
        const line = stdout.trim().split('\n').pop() ?? '';
        resolve({ status, stderr, summary: line.startsWith('{') ? JSON.parse(line) : undefined });
      });
    });
  }

  const expectClean = (s: any, setRounds: number) => {
    expect(s).toMatchObject({
      setRounds,
      allRounds: true,
      overlaps: 0,
      counterMismatches: 0,
      malformed: 0,
      violations: { marker: 0, probe: 0 },
      leakedFds: 0,
      tableNotEmpty: 0,
      crashes: [],
      ok: true,
    });
    expect(s.probes).toBeGreaterThan(0);
  };

  test('two worker threads, {A,B} and {B,A} with wait, 300 rounds each: every round ends, no overlap, the whole set held', async () => {
    const r = await runSets(['--procs', '1', '--workers', '2', '--rounds', '300', '--probe-every', '30']);
    expect(r.stderr).toBe('');
    expectClean(r.summary, 600);
    expect(r.status).toBe(0);
  });

  test('two processes with a worker each, 300 rounds each', async () => {
    const r = await runSets(['--procs', '2', '--workers', '1', '--rounds', '300', '--probe-every', '30']);
    expect(r.stderr).toBe('');
    expectClean(r.summary, 600);
    expect(r.status).toBe(0);
  });

  test('with single acquires of A and B going on all along, autoCreate: the sets still finish', async () => {
    const r = await runSets(['--procs', '1', '--workers', '2', '--singles', '2', '--rounds', '200', '--probe-every', '40', '--auto-create']);
    expect(r.stderr).toBe('');
    expectClean(r.summary, 400);
    expect(r.summary.singleRounds).toBeGreaterThan(0);
    expect(r.status).toBe(0);
  });
});
