/* Crash and exit. A SIGKILLed holder frees its locks for others at once.
 * worker.terminate() in every phase (idle, mid-acquire, mid-wait in the table and in the kernel, grant
 * in flight, holding shared with other owners) leaves the lock table and the fd count exactly as if the
 * worker had released; an addon loaded only inside workers survives the last worker's exit. The
 * terminate scenarios run in child processes (test/fixtures/teardown-child.js), so an abort can only
 * fail a test, never take Jest down; every child must exit 0 with nothing on stderr. */
import * as fs from 'fs';
import * as path from 'path';
import { spawn } from 'child_process';
import { LockSpace } from '../lib';
import type { NativeStats } from '../lib/native';
import { useTmpDir, outsideProbe, python, spawnPythonHolder, stats, track, waitFor, FIXTURES } from './helpers';

const tmp = useTmpDir();

type Stats = NativeStats;

interface Shot {
  stats: Stats;
  statsAfterCloseIdle: Stats;
  fdDelta: number;
  files: string[];
  outside: Record<string, string>;
  resources: { name: string; path: string; shared: boolean; autoCreate: boolean; owners: (string | number)[] }[];
}

function spawnAsync(args: string[]): Promise<{ status: number | null; signal: string | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, LOCKSPACE_PYTHON: python() },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (status, signal) => resolve({ status, signal, stdout, stderr }));
  });
}

async function runChild(scenario: string, mode: 'release' | 'terminate' | 'exit'): Promise<any> {
  const dir = fs.mkdtempSync(path.join(tmp.dir, `${scenario}-${mode}-`));
  const r = await spawnAsync([path.join(FIXTURES, 'teardown-child.js'), scenario, dir, mode]);
  expect({ scenario, mode, signal: r.signal, status: r.status, stderr: r.stderr }).toEqual({
    scenario,
    mode,
    signal: null,
    status: 0,
    stderr: '',
  });
  const out = JSON.parse(r.stdout.trim().split('\n').pop()!);
  expect(out.crash).toBeUndefined();
  return out;
}

/** Stats minus the allocator's byte count, which no two runs share. */
function tableOf(s: Stats): Omit<Stats, 'heapBytes'> {
  const { heapBytes: _ignored, ...rest } = s;
  return rest;
}

function comparable(shots: any[]): any[] {
  return shots.map((s) =>
    s.stats ? { ...s, stats: tableOf(s.stats), statsAfterCloseIdle: tableOf(s.statsAfterCloseIdle) } : s,
  );
}

const ZERO = { resources: 0, leases: 0, waiters: 0, kernelWaits: 0, idleFds: 0, spareFds: 0 };

/** Runs a scenario released and terminated; they must leave identical traces. Returns the terminated run. */
async function terminatedLikeReleased(scenario: string): Promise<Shot[]> {
  const [released, terminated] = await Promise.all([runChild(scenario, 'release'), runChild(scenario, 'terminate')]);
  expect(released.clean).toBe(true);
  expect(terminated.clean).toBe(true);
  expect(comparable(terminated.shots)).toEqual(comparable(released.shots));
  const last: Shot = terminated.shots[terminated.shots.length - 1];
  expect(last.statsAfterCloseIdle).toMatchObject(ZERO);
  expect(last.fdDelta).toBe(0);
  return terminated.shots;
}

describe('worker.terminate() in every phase leaves the table and fds as a release would', () => {
  test('idle (after acquiring and releasing)', async () => {
    const [s] = await terminatedLikeReleased('idle');
    expect(s.files).toEqual(['p']);
    expect(s.outside).toEqual({ p: 'free/free', auto: 'missing/missing' });
    expect(s.stats).toMatchObject({ leases: 0, waiters: 0, idleFds: 1 }); // 'p' cached, as after any release
  });

  test('holding exclusive, autoCreate, and shared with other owners (main thread, another worker)', async () => {
    const [during, after] = await terminatedLikeReleased('holding');
    // Only the worker's leases went: the others still hold 's' and 'as' shared.
    expect(during.stats).toMatchObject({ leases: 3, waiters: 0, kernelWaits: 0 });
    expect(during.resources).toEqual([
      { name: 'as', path: 'as', shared: true, autoCreate: true, owners: ['main'] },
      { name: 's', path: 's', shared: true, autoCreate: false, owners: ['main', 'o2'] },
    ]);
    expect(during.outside).toEqual({ x: 'free/free', ax: 'missing/missing', s: 'busy/free', as: 'busy/free' });
    expect(during.files).toEqual(['as', 's', 'x']);
    // ... and their releases finish the job (the autoCreate file goes with the last one).
    expect(after.outside).toEqual({ x: 'free/free', ax: 'missing/missing', s: 'free/free', as: 'missing/missing' });
    expect(after.files).toEqual(['s', 'x']);
  });

  test('mid-wait in the table: the waiters queued behind it get their turn', async () => {
    const [queued, granted, after] = await terminatedLikeReleased('waitInProcess');
    expect(queued.stats).toMatchObject({ leases: 1, waiters: 2 });
    expect(queued.resources).toEqual([{ name: 'q', path: 'q', shared: false, autoCreate: false, owners: ['main'] }]);
    expect(granted.resources).toEqual([{ name: 'q', path: 'q', shared: true, autoCreate: false, owners: ['w2', 'w3'] }]);
    expect(granted.outside).toEqual({ q: 'busy/free' });
    expect(after.outside).toEqual({ q: 'free/free' });
  });

  test('mid-wait in the kernel (F_SETLKW thread): abandoned, the next waiter takes over', async () => {
    const [queued, granted, after] = (await terminatedLikeReleased('waitKernel')) as any[];
    expect(queued).toEqual({ waiters: 1, kernelWaits: 1 });
    expect(granted.resources).toEqual([{ name: 'k', path: 'k', shared: true, autoCreate: false, owners: ['w2'] }]);
    expect(granted.outside).toEqual({ k: 'busy/free' });
    expect(after.stats).toMatchObject({ leases: 0, waiters: 0, kernelWaits: 0 });
    expect(after.outside).toEqual({ k: 'free/free' });
  });

  test('grant in flight: handed to the worker, which is terminated before taking it', async () => {
    const shots = await terminatedLikeReleased('grantInFlight');
    expect(shots).toHaveLength(10);
    for (const s of shots) {
      expect(s.statsAfterCloseIdle).toMatchObject(ZERO);
      expect(s.files).toEqual([]); // the holder's autoCreate file went with the last release
      expect(s.fdDelta).toBe(0);
    }
  });

  test('mid-acquire: terminated at arbitrary points of a tight acquire/release loop', async () => {
    const shots = await terminatedLikeReleased('midAcquire');
    expect(shots).toHaveLength(17);
    for (const s of shots.slice(0, 16)) {
      expect(s.statsAfterCloseIdle).toMatchObject({ resources: 1, leases: 1, waiters: 0, kernelWaits: 0, spareFds: 0 });
      expect(s.resources).toEqual([{ name: 's0', path: 's0', shared: true, autoCreate: false, owners: ['main'] }]);
      expect(s.outside).toEqual({
        p0: 'free/free',
        p1: 'free/free',
        s0: 'busy/free',
        a0: 'missing/missing',
        a1: 'missing/missing',
      });
      expect(s.files).toEqual(['p0', 'p1', 's0']);
      expect(s.fdDelta).toBe(1); // the main thread's shared lock on s0
    }
  });
});

describe('addon loaded only inside workers', () => {
  test.each(['exit', 'terminate'] as const)(
    'the last worker %ss holding a lock, an idle fd and a kernel wait: the table survives, nothing leaks',
    async (mode) => {
      const out = await runChild('workerOnly', mode);
      expect(out.mainLoadedLockspace).toBe(false);
      expect(out.exitCode).toBe(mode === 'terminate' ? 1 : 0);
      expect(out.statsBefore).toMatchObject({ leases: 2, waiters: 1, kernelWaits: 1, idleFds: 1 });
      // Its leases went with it, for every other process at once.
      expect(out.outsideAfterExit).toEqual({ p: 'free/free', h: 'free/free', auto: 'missing/missing' });
      // The next worker finds the same table: the idle fds ('p', and 'h' released at exit) are still
      // there; a reloaded addon would have an empty table (and would have leaked those fds).
      expect(tableOf(out.statsSecondWorker)).toMatchObject({ leases: 0, waiters: 0, kernelWaits: 0, idleFds: 2 });
      expect(out.closedIdle).toBe(2);
      expect(tableOf(out.statsEnd)).toMatchObject(ZERO);
      // The abandoned kernel wait never took the lock after the other process let go.
      expect(out.outsideEnd).toEqual({ p: 'free/free', h: 'free/free', k: 'free/free' });
      expect(out.files).toEqual(['h', 'k', 'p']);
      expect(out.fdDelta).toBe(0);
    },
  );
});

describe('SIGKILL', () => {
  test('a killed holder (main thread and workers, waits pending) frees every lock for others at once', async () => {
    const ls = LockSpace.open(tmp.dir);
    for (const n of ['kx', 'ks', 'kw']) fs.writeFileSync(path.join(tmp.dir, n), '');
    // The child's worker waits in the kernel for 'kw', held by a third process (if we held it while
    // waiting for the child's 'kx', the kernel would rightly see a deadlock between the two processes).
    const kw = await spawnPythonHolder(path.join(tmp.dir, 'kw'));
    const child = spawn(process.execPath, [path.join(FIXTURES, 'kill-holder.js'), tmp.dir], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
    child.stdout.setEncoding('utf8');
    const ready = new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (d: string) => d.includes('ready') && resolve());
      child.once('exit', (code) => reject(new Error(`kill-holder exited early (${code}): ${stderr}`)));
    });
    await ready;
    expect(await outsideProbe(path.join(tmp.dir, 'kx'))).toBe('busy');
    expect(await outsideProbe(path.join(tmp.dir, 'ks'), 'shared')).toBe('locked');
    expect(await outsideProbe(path.join(tmp.dir, 'ks'))).toBe('busy');
    expect(await outsideProbe(path.join(tmp.dir, 'ka'))).toBe('busy');

    // We queue for 'kx' in the kernel, then the holder dies.
    const waiting = track(ls.acquire('kx', { wait: true }));
    await waitFor(() => stats().kernelWaits === 1, 'our kernel wait');
    const exited = new Promise<NodeJS.Signals | null>((r) => child.once('exit', (_code, sig) => r(sig)));
    child.kill('SIGKILL');
    expect(await exited).toBe('SIGKILL');

    // Everything it held is free the moment it is gone; our waiter is granted.
    expect(await outsideProbe(path.join(tmp.dir, 'ks'))).toBe('locked');
    expect(await outsideProbe(path.join(tmp.dir, 'ka'))).toBe('locked'); // its autoCreate file stays: nobody ran the release
    const kx = await waiting.promise;
    expect(kx.released).toBe(false);
    expect(await outsideProbe(path.join(tmp.dir, 'kx'))).toBe('busy');
    const ks = ls.acquireSync('ks');
    const ka = ls.acquireSync('ka', { autoCreate: true });
    // Its kernel wait on 'kw' died with it: once the third process lets go, nobody holds 'kw'.
    expect(await outsideProbe(path.join(tmp.dir, 'kw'))).toBe('busy');
    await kw.release();
    expect(await outsideProbe(path.join(tmp.dir, 'kw'))).toBe('locked');
    for (const l of [kx, ks, ka]) l.releaseSync();
    expect(fs.readdirSync(tmp.dir).sort()).toEqual(['ks', 'kw', 'kx']);
    expect(stderr).toBe('');
  });
});
