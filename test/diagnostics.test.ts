import * as fs from 'fs';
/* Node's observability conventions: diagnostics_channel (tracingChannel 'lockspace:acquire',
 * channels 'lockspace:release' and 'lockspace:lost') and NODE_DEBUG=lockspace for the releases a
 * worker's exit makes. */
import * as dc from 'diagnostics_channel';
import * as path from 'path';
import { spawnSync } from 'child_process';
import { isLockspaceError, Lease, LockSpace } from '../lib';
import { publishLost } from '../lib/diagnostics';
import { catchErr, catchErrSync, DIST_INDEX, stats, useTmpDir, waitFor } from './helpers';

const tmp = useTmpDir();

type Event = [string, any];

/** Subscribes to the acquire tracing channel for the duration of fn; returns the events seen. */
async function traced(fn: () => Promise<void> | void): Promise<Event[]> {
  const events: Event[] = [];
  const handlers = Object.fromEntries(
    (['start', 'end', 'asyncStart', 'asyncEnd', 'error'] as const).map((k) => [k, (m: unknown) => events.push([k, { ...(m as object) }])]),
  ) as unknown as dc.TracingChannelSubscribers<object>;
  const channel = dc.tracingChannel('lockspace:acquire');
  channel.subscribe(handlers);
  try {
    await fn();
  } finally {
    channel.unsubscribe(handlers);
  }
  return events;
}

function subscribed<T>(name: string, fn: () => Promise<T> | T): Promise<unknown[]> {
  const seen: unknown[] = [];
  const onMessage = (m: unknown): void => {
    seen.push(m);
  };
  dc.subscribe(name, onMessage);
  return Promise.resolve()
    .then(fn)
    .finally(() => dc.unsubscribe(name, onMessage))
    .then(() => seen);
}

describe("tracingChannel('lockspace:acquire')", () => {
  test('acquireSync: start and end with the message and the lease; error with the LockspaceError', async () => {
    const ls = LockSpace.open(tmp.dir);
    let lease: Lease | undefined;
    let busy: unknown;
    const events = await traced(() => {
      lease = ls.acquireSync('r', { autoCreate: true, owner: 'a', shared: false });
      busy = catchErrSync(() => ls.acquireSync('r', { owner: 'b' }));
    });
    const message = { name: 'r', path: path.join(tmp.dir, 'r'), shared: false, owner: 'a', wait: false };
    expect(events.map(([k]) => k)).toEqual(['start', 'end', 'start', 'error', 'end']);
    expect(events[0][1]).toEqual(message);
    expect(events[1][1]).toEqual({ ...message, result: lease });
    expect(events[3][1]).toMatchObject({ owner: 'b', error: busy });
    expect(isLockspaceError(events[3][1].error, 'EBUSY')).toBe(true);
    lease!.releaseSync();
  });

  test('acquire: start, end, asyncStart, asyncEnd for a granted wait; error for a timed-out one', async () => {
    const ls = LockSpace.open(tmp.dir);
    const holder = ls.acquireSync('r', { autoCreate: true, owner: 'holder' });
    let lease: Lease | undefined;
    const events = await traced(async () => {
      const p = ls.acquire('r', { wait: true, shared: true, owner: 7 });
      await waitFor(() => stats().waiters === 1, 'queued');
      holder.releaseSync();
      lease = await p;
      await catchErr(() => ls.acquire('q', { wait: true, timeout: 1, owner: 8 }));
    });
    expect(events.slice(0, 4).map(([k]) => k)).toEqual(['start', 'end', 'asyncStart', 'asyncEnd']);
    expect(events[0][1]).toEqual({ name: 'r', path: path.join(tmp.dir, 'r'), shared: true, owner: 7, wait: true });
    expect(events[3][1].result).toBe(lease);
    // 'q' does not exist: the acquire fails with ENOENT, published as an error.
    const failed = events.slice(4);
    expect(failed.map(([k]) => k)).toEqual(['start', 'end', 'error', 'asyncStart', 'asyncEnd']);
    expect(isLockspaceError(failed[2][1].error, 'ENOENT')).toBe(true);
    lease!.releaseSync();
  });

  test('bad arguments are not traced (they are TypeErrors, not acquisitions)', async () => {
    const ls = LockSpace.open(tmp.dir);
    const events = await traced(async () => {
      await catchErr(() => ls.acquire('', {}));
      catchErrSync(() => ls.acquireSync('r', { wait: true } as never));
    });
    expect(events).toEqual([]);
  });
});

describe("channel('lockspace:release') and channel('lockspace:lost')", () => {
  test('every release is published: by lease, by name and owner, and by owner', async () => {
    const ls = LockSpace.open(tmp.dir);
    const seen = await subscribed('lockspace:release', async () => {
      ls.acquireSync('a', { autoCreate: true, owner: 'x' }).releaseSync();
      await (await ls.acquire('b', { autoCreate: true, owner: 'x' })).release();
      ls.acquireSync('c', { autoCreate: true, owner: 'y' });
      ls.releaseSync('c', 'y');
      ls.acquireSync('d', { autoCreate: true, owner: 'z' });
      ls.acquireSync('e', { autoCreate: true, owner: 'z' });
      expect(await ls.releaseOwner('z')).toBe(2);
    });
    const p = (n: string): string => path.join(tmp.dir, n);
    expect(seen).toEqual([
      { name: 'a', path: p('a'), owner: 'x', via: 'lease' },
      { name: 'b', path: p('b'), owner: 'x', via: 'lease' },
      { name: 'c', path: p('c'), owner: 'y', via: 'name' },
      expect.objectContaining({ owner: 'z', via: 'owner' }),
      expect.objectContaining({ owner: 'z', via: 'owner' }),
    ]);
    expect((seen.slice(3) as { name: string }[]).map((m) => m.name).sort()).toEqual(['d', 'e']);
  });

  test('a second release of a lease publishes nothing', async () => {
    const ls = LockSpace.open(tmp.dir);
    const lease = ls.acquireSync('a', { autoCreate: true });
    ls.releaseSync('a');
    const seen = await subscribed('lockspace:release', () => lease.releaseSync());
    expect(seen).toEqual([]);
  });

  test('publishLost delivers a lost lease to lockspace:lost subscribers, and builds nothing without them', async () => {
    const reason = new Error('lock gone');
    let built = 0;
    const message = () => {
      built++;
      return { name: 'r', path: '/d/r', shared: false, owner: 1, reason };
    };
    publishLost(message);
    expect(built).toBe(0);
    const seen = await subscribed('lockspace:lost', () => publishLost(message));
    expect(seen).toEqual([{ name: 'r', path: '/d/r', shared: false, owner: 1, reason }]);
  });
});

describe('NODE_DEBUG=lockspace', () => {
  test("logs the releases a worker's exit makes", () => {
    const script = `
      const { Worker } = require('worker_threads');
      const w = new Worker(\`
        const { LockSpace } = require(${JSON.stringify(DIST_INDEX)});
        const ls = LockSpace.open(${JSON.stringify(tmp.dir)});
        ls.acquireSync('kept', { autoCreate: true, owner: 'w' });
        ls.acquireSync('let-go', { autoCreate: true }).releaseSync();
      \`, { eval: true });
      w.on('exit', (code) => console.log('worker exit', code));
    `;
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', env: { ...process.env, NODE_DEBUG: 'lockspace' } });
    expect(r.stdout).toBe('worker exit 0\n');
    expect(r.stderr).toMatch(/^LOCKSPACE \d+: release .*\/kept owner="w" \(worker exit\)$/m);
    expect(r.stderr).toMatch(/^LOCKSPACE \d+: release .*\/let-go owner=\d+$/m);
    expect(r.stderr).not.toMatch(/let-go.*worker exit/);
  });

  test('logs the releases of a worker stopped with terminate() too, where no JavaScript runs', () => {
    const script = `
      const { Worker } = require('worker_threads');
      const w = new Worker(\`
        const { parentPort } = require('worker_threads');
        const { LockSpace } = require(${JSON.stringify(DIST_INDEX)});
        const ls = LockSpace.open(${JSON.stringify(tmp.dir)});
        ls.acquireSync('held', { autoCreate: true, owner: 7 });
        ls.acquireSync('shared', { autoCreate: true, shared: true, owner: 'x"y' });
        parentPort.postMessage('holding');
        setInterval(() => {}, 1000);
      \`, { eval: true });
      w.on('message', () => w.terminate());
      w.on('exit', (code) => console.log('worker exit', code));
    `;
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', env: { ...process.env, NODE_DEBUG: 'lockspace' } });
    expect(r.stdout).toBe('worker exit 1\n');
    expect(r.stderr).toMatch(/^LOCKSPACE \d+: release .*\/held owner=7 \(worker exit\)$/m);
    expect(r.stderr).toMatch(/^LOCKSPACE \d+: release .*\/shared owner="x\\"y" \(worker exit\)$/m);
    expect(fs.readdirSync(tmp.dir)).toEqual([]); // released for real: autoCreate deleted both
  });
});
