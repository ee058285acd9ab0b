/* Holder records (LockSpace.open(dir, { records: true })): who holds a lock, written into the lock file
 * under the lock, and read by inspect and `lockspace status` in other processes. Every claim is
 * checked from another process: a node holder or loop (test/fixtures), the CLI in a child, python. */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { spawn, ChildProcess } from 'child_process';
import { LockSpace } from '../lib';
import { catchErr, catchErrSync, FIXTURES, Holder, spawnNodeHolder, spawnPythonHolder, useTmpDir } from './helpers';
import { cli, cliAsync, statusJson } from './cli-helpers';

const tmp = useTmpDir();
const holders: Holder[] = [];
const children: ChildProcess[] = [];
afterEach(async () => {
  await Promise.all(holders.splice(0).map((h) => h.kill()));
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

async function nodeHolder(name: string, opts: Parameters<typeof spawnNodeHolder>[2]): Promise<Holder> {
  const h = await spawnNodeHolder(tmp.dir, name, opts);
  holders.push(h);
  return h;
}

function create(name: string): string {
  const p = path.join(tmp.dir, name);
  fs.writeFileSync(p, '');
  return p;
}

const machineId = (() => {
  try {
    return fs.readFileSync('/etc/machine-id', 'utf8').trim();
  } catch {
    return '';
  }
})();

/** Starts test/fixtures/record-loop.js; `lines` collects its stdout lines. */
function recordLoop(cfg: Record<string, unknown>) {
  const child = spawn(process.execPath, [path.join(FIXTURES, 'record-loop.js'), JSON.stringify({ directory: tmp.dir, ...cfg })], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  const lines: string[] = [];
  let partial = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    const parts = (partial + d).split('\n');
    partial = parts.pop()!;
    lines.push(...parts);
  });
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  return { child, lines, exited, stderr: () => stderr };
}

/** The generations a record-loop printed ('g <generation> ...'), in order. */
const generations = (lines: string[]): bigint[] => lines.filter((l) => l.startsWith('g ')).map((l) => BigInt(l.split(' ')[1]));

function expectStrictlyIncreasing(gens: bigint[]): void {
  for (let i = 1; i < gens.length; i++) {
    if (gens[i] <= gens[i - 1]) throw new Error(`generation ${gens[i]} after ${gens[i - 1]} (at ${i} of ${gens.length})`);
  }
}

describe('a record is visible from other processes', () => {
  test("another process's status --json shows the holder's host, pid and label; inspect too", async () => {
    create('disk');
    const h = await nodeHolder('disk', { records: true, label: 'vm-42' });
    const { resources } = statusJson([tmp.dir]);
    expect(resources).toHaveLength(1);
    expect(resources[0].state).toBe('exclusive');
    expect(resources[0].records).toEqual([
      {
        host: os.hostname(),
        machineId,
        pid: h.pid,
        label: 'vm-42',
        since: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
        generation: expect.stringMatching(/^\d+$/),
        mode: 'exclusive',
      },
    ]);
    // The table lists it below the locks.
    const table = cli(['status', tmp.dir]);
    expect(table.stdout).toMatch(/Holder records:\nRESOURCE +MODE +HOST +PID +LABEL +GENERATION +SINCE\ndisk +exclusive/);
    expect(table.stdout).toContain(`${h.pid}  vm-42`);

    const info = await LockSpace.open(tmp.dir).inspect('disk');
    expect(info.records).toHaveLength(1);
    expect(info.records[0]).toMatchObject({ host: os.hostname(), pid: h.pid, label: 'vm-42', mode: 'exclusive' });
    expect(info.records[0].generation).toBe(info.generation);
    expect(typeof info.generation).toBe('bigint');
  });

  test('this process holding: another process shows its record, and its own inspect does too', async () => {
    create('disk');
    const ls = LockSpace.open(tmp.dir, { records: true });
    const lease = await ls.acquire('disk', { label: 'web' });
    try {
      expect(typeof lease.generation).toBe('bigint');
      const [r] = statusJson([tmp.dir]).resources;
      expect(r.records).toMatchObject([{ pid: process.pid, label: 'web', generation: String(lease.generation), mode: 'exclusive' }]);
      expect((await ls.inspect('disk')).records).toMatchObject([{ pid: process.pid, label: 'web', generation: lease.generation }]);
    } finally {
      await lease.release();
    }
    // Released: no holder, no record shown (the record stays in the file, its live byte is free).
    expect(fs.readFileSync(path.join(tmp.dir, 'disk')).includes('LSR1')).toBe(true);
    const [r] = statusJson([tmp.dir]).resources;
    expect(r).toMatchObject({ state: 'free', records: [] });
    expect((await ls.inspect('disk')).records).toEqual([]);
  });

  test('shared holders in two processes: one record each, neither overwriting the other', async () => {
    create('iso');
    const a = await nodeHolder('iso', { records: true, shared: true, label: 'vm-a' });
    const b = await nodeHolder('iso', { records: true, shared: true, label: 'vm-b' });
    const [r] = statusJson([tmp.dir]).resources;
    expect(r.state).toBe('shared');
    const seen = r.records.map((x: { pid: number; label: string; mode: string }) => [x.pid, x.label, x.mode]).sort();
    expect(seen).toEqual([
      [a.pid, 'vm-a', 'shared'],
      [b.pid, 'vm-b', 'shared'],
    ].sort());
    await a.release();
    expect(statusJson([tmp.dir]).resources[0].records).toMatchObject([{ pid: b.pid, label: 'vm-b' }]);
  });

  test('an OFD lockspace: the record is seen the same way (its live byte is an OFD lock, pid -1)', async () => {
    create('disk');
    const h = await nodeHolder('disk', { records: true, lockType: 'ofd', label: 'ofd-vm' });
    const [r] = statusJson([tmp.dir]).resources;
    expect(r).toMatchObject({ state: 'exclusive', holders: [{ pid: null, type: 'OFDLCK' }] });
    expect(r.records).toMatchObject([{ pid: h.pid, label: 'ofd-vm', mode: 'exclusive' }]);
    await h.kill('SIGKILL');
    expect(statusJson([tmp.dir]).resources[0]).toMatchObject({ state: 'free', records: [] });
  });

  test('lockspace run --label holds with a record that status shows', async () => {
    create('job');
    const run = cliAsync(['run', '--label=nightly', tmp.dir, 'job', '--', 'sh', '-c', 'echo started; exec sleep 30']);
    children.push(run.child);
    // 'started': the command runs, so the lock (and its record, written before acquire resolves) is there.
    while (!run.out().includes('started')) await new Promise((r) => setTimeout(r, 20));
    const [r] = statusJson([tmp.dir]).resources;
    expect(r.records).toMatchObject([{ pid: run.child.pid, label: 'nightly', mode: 'exclusive' }]);
    run.child.kill('SIGTERM');
    await run.done;
  });
});

describe('stale records are never shown as holders', () => {
  test('a holder killed with SIGKILL: its record is not shown, also while another process holds the lock', async () => {
    const file = create('disk');
    const h = await nodeHolder('disk', { records: true, label: 'dead' });
    expect(statusJson([tmp.dir]).resources[0].records).toHaveLength(1);
    await h.kill('SIGKILL');
    expect(fs.readFileSync(file).includes('dead')).toBe(true); // the record is still in the file
    expect(statusJson([tmp.dir]).resources[0]).toMatchObject({ state: 'free', records: [] });
    // Held again, by a process that writes no record: the dead one's is not taken for it.
    const py = await spawnPythonHolder(file);
    holders.push(py);
    const [r] = statusJson([tmp.dir]).resources;
    expect(r.state).toBe('exclusive');
    expect(r.holders).toMatchObject([{ pid: py.pid }]);
    expect(r.records).toEqual([]);
    expect((await LockSpace.open(tmp.dir).inspect('disk')).records).toEqual([]);
  });

  test('a lockspace without records writes nothing, and label / ifGeneration need records', async () => {
    const file = create('disk');
    const ls = LockSpace.open(tmp.dir);
    expect(ls.records).toBe(false);
    const lease = await ls.acquire('disk');
    expect(lease.generation).toBeNull();
    await lease.release();
    expect(fs.statSync(file).size).toBe(0);
    expect(catchErrSync(() => ls.acquireSync('disk', { label: 'x' }))).toMatchObject({ code: 'ERR_INVALID_ARG_VALUE' });
    expect(await catchErr(() => ls.acquire('disk', { ifGeneration: 1n }))).toMatchObject({ code: 'ERR_INVALID_ARG_VALUE' });
    const rec = LockSpace.open(tmp.dir, { records: true });
    expect(catchErrSync(() => rec.acquireSync('disk', { label: 'x'.repeat(257) }))).toMatchObject({ code: 'ERR_INVALID_ARG_VALUE' });
    expect(catchErrSync(() => rec.acquireSync('disk', { ifGeneration: 1 as unknown as bigint }))).toMatchObject({
      code: 'ERR_INVALID_ARG_TYPE',
    });
    expect(fs.statSync(file).size).toBe(0);
  });
});

describe('generations', () => {
  test('each exclusive grant counts on from the last; shared grants report the last exclusive one', async () => {
    create('disk');
    const ls = LockSpace.open(tmp.dir, { records: true });
    const first = ls.acquireSync('disk');
    const g1 = first.generation!;
    first.releaseSync();
    // Another process's exclusive grant: one more.
    const other = await nodeHolder('disk', { records: true });
    await other.release();
    const shared = ls.acquireSync('disk', { shared: true });
    expect(shared.generation).toBe(g1 + 1n);
    shared.releaseSync();
    const next = await ls.acquire('disk');
    expect(next.generation).toBe(g1 + 2n);
    await next.release();
  });

  test('a hand-off in this process (a waiting owner granted at the release) counts on too', async () => {
    create('disk');
    const ls = LockSpace.open(tmp.dir, { records: true });
    const first = await ls.acquire('disk', { owner: 'vm-1', label: 'one' });
    const waiting = ls.acquire('disk', { owner: 'vm-2', label: 'two', wait: true });
    await first.release();
    const second = await waiting;
    expect(second.generation).toBe(first.generation! + 1n);
    expect(statusJson([tmp.dir]).resources[0].records).toMatchObject([{ pid: process.pid, label: 'two', generation: String(second.generation) }]);
    await second.release();
  });

  test('ifGeneration: granted while nobody took it exclusively meanwhile, ERR_GENERATION_CHANGED after another holder', async () => {
    const file = create('disk');
    const ls = LockSpace.open(tmp.dir, { records: true });
    const mine = await ls.acquire('disk', { label: 'vm-1' });
    const g = mine.generation!;
    await mine.release();
    // Shared holders in between change nothing.
    const reader = await nodeHolder('disk', { records: true, shared: true });
    await reader.release();
    const resumed = await ls.acquire('disk', { ifGeneration: g });
    expect(resumed.generation).toBe(g + 1n);
    await resumed.release();
    // Another process's exclusive grant came and went.
    const other = await nodeHolder('disk', { records: true });
    await other.release();
    const err = await catchErr(() => ls.acquire('disk', { ifGeneration: g + 1n }));
    expect(err).toMatchObject({ code: 'ERR_GENERATION_CHANGED', syscall: 'acquire', path: file, generation: g + 2n });
    expect(catchErrSync(() => ls.acquireSync('disk', { ifGeneration: g + 1n }))).toMatchObject({ code: 'ERR_GENERATION_CHANGED' });
    // Nothing is left held by the refused acquires: another process takes the lock.
    const check = await nodeHolder('disk', {});
    await check.release();
  });

  test('lease sets: each member is recorded with the label; a set takes no ifGeneration', async () => {
    create('a');
    create('b');
    const ls = LockSpace.open(tmp.dir, { records: true });
    const set = await ls.acquireAll(['a', { name: 'b', shared: true }], { label: 'vm-7' });
    try {
      const byName = Object.fromEntries(statusJson([tmp.dir]).resources.map((r: { name: string }) => [r.name, r]));
      expect(byName.a.records).toMatchObject([{ pid: process.pid, label: 'vm-7', mode: 'exclusive' }]);
      expect(byName.b.records).toMatchObject([{ pid: process.pid, label: 'vm-7', mode: 'shared' }]);
      expect(typeof set.leases[0].generation).toBe('bigint');
    } finally {
      await set.release();
    }
    const opts = { ifGeneration: 1n } as unknown as Parameters<LockSpace['acquireAll']>[1];
    expect(await catchErr(() => ls.acquireAll(['a'], opts))).toMatchObject({ code: 'ERR_INVALID_ARG_VALUE' });
  });

  test('strictly increasing over 400 alternating exclusive grants between two processes', async () => {
    create('disk');
    const count = 200;
    const loops = [0, 1].map((me) => recordLoop({ name: 'disk', mode: 'alternate', me, count }));
    const ends = await Promise.all(loops.map((l) => l.exited));
    expect(ends).toEqual([
      { code: 0, signal: null },
      { code: 0, signal: null },
    ]);
    // Each line: 'g <generation> <turn>'; put both processes' grants in turn order.
    const grants = loops
      .flatMap((l, me) => l.lines.filter((x) => x.startsWith('g ')).map((x) => ({ me, gen: BigInt(x.split(' ')[1]), turn: Number(x.split(' ')[2]) })))
      .sort((x, y) => x.turn - y.turn);
    expect(grants.map((g) => g.turn)).toEqual(Array.from({ length: 2 * count }, (_, i) => i));
    expect(grants.every((g) => g.me === g.turn % 2)).toBe(true); // they alternate
    expectStrictlyIncreasing(grants.map((g) => g.gen));
  });
});

describe('crash safety: SIGKILL while writing records', () => {
  test('100 kills at random moments of a grant loop: no generation repeats or goes back, no stale holder shown', async () => {
    const file = create('disk');
    const plain = LockSpace.open(tmp.dir);
    const seen: bigint[] = [];
    for (let round = 0; round < 100; round++) {
      const loop = recordLoop({ name: 'disk', mode: 'spin', label: `round-${round}` });
      // Running its loop (a few grants in), then killed after a random pause: anywhere in a grant.
      while (generations(loop.lines).length < 3 && loop.child.exitCode === null) await new Promise((r) => setTimeout(r, 2));
      await new Promise((r) => setTimeout(r, Math.random() * 10));
      loop.child.kill('SIGKILL');
      const end = await loop.exited;
      expect({ end, stderr: loop.stderr() }).toEqual({ end: { code: null, signal: 'SIGKILL' }, stderr: '' });
      seen.push(...generations(loop.lines));
      // Nobody holds it: no record shown. Held by a process that writes none: still none shown.
      expect(plain.inspectSync('disk')).toMatchObject({ state: 'free', records: [] });
      const lease = plain.acquireSync('disk');
      try {
        expect(plain.inspectSync('disk')).toMatchObject({ state: 'exclusive', records: [] });
        if (round % 20 === 0) expect(statusJson([tmp.dir]).resources[0]).toMatchObject({ state: 'exclusive', records: [] });
      } finally {
        lease.releaseSync();
      }
    }
    expect(fs.readFileSync(file).includes('LSR1')).toBe(true); // records were left behind, and not shown
    expect(seen.length).toBeGreaterThanOrEqual(300);
    expectStrictlyIncreasing(seen);
  });
});
