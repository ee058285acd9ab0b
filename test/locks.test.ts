/* The Web Locks-shaped manager, `ls.locks`: request(name, [options], callback) holds the lock while
 * the callback runs (checked from another process: python fcntl.lockf), ifAvailable, signal, steal,
 * release when the callback throws, and query(). */
import * as fs from 'fs';
import * as path from 'path';
import { spawn } from 'child_process';
import { Lock, LockSpace } from '../lib';
import { catchErr, DIST_INDEX, holderFromChild, outsideProbe, stats, useTmpDir, waitFor } from './helpers';

const tmp = useTmpDir();

test('request holds an exclusive lock while the callback runs, returns its result, and releases', async () => {
  const ls = LockSpace.open(tmp.dir);
  const file = path.join(tmp.dir, 'job');
  let seen: Lock | null = null;
  const result = await ls.locks.request('job', async (lock) => {
    seen = lock;
    expect(await outsideProbe(file, 'shared')).toBe('busy');
    return 42;
  });
  expect(result).toBe(42);
  expect(seen).toEqual({ name: 'job', mode: 'exclusive' });
  expect(fs.existsSync(file)).toBe(false); // the lock file comes and goes with the lock
});

test("mode: 'shared' requests hold together; an exclusive one waits for both", async () => {
  const ls = LockSpace.open(tmp.dir);
  const file = path.join(tmp.dir, 'db');
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const order: string[] = [];
  const s1 = ls.locks.request('db', { mode: 'shared' }, async (lock) => {
    order.push(`s1 ${lock!.mode}`);
    await gate;
  });
  const s2 = ls.locks.request('db', { mode: 'shared' }, async () => {
    order.push('s2');
    await gate;
  });
  await waitFor(() => order.length === 2, 'both shared held');
  expect(await outsideProbe(file, 'shared')).toBe('locked');
  expect(await outsideProbe(file, 'exclusive')).toBe('busy');
  const x = ls.locks.request('db', () => order.push('x'));
  await waitFor(() => stats().waiters === 1, 'exclusive queued');
  expect((await ls.locks.query()).pending).toEqual([{ name: 'db', mode: 'exclusive', clientId: expect.any(String) }]);
  release();
  await Promise.all([s1, s2, x]);
  expect(order).toEqual(['s1 shared', 's2', 'x']);
});

test('ifAvailable: the callback gets null while another process holds the lock', async () => {
  const ls = LockSpace.open(tmp.dir);
  const script = `
    const { LockSpace } = require(${JSON.stringify(DIST_INDEX)});
    LockSpace.open(process.argv[1]).locks.request('job', () => {
      console.log('locked ' + process.pid);
      return new Promise((resolve) => process.stdin.once('data', resolve));
    }).then(() => console.log('released'));
  `;
  const other = await holderFromChild(spawn(process.execPath, ['-e', script, tmp.dir], { stdio: ['pipe', 'pipe', 'pipe'] }), 'node locks holder');
  try {
    expect(await ls.locks.request('job', { ifAvailable: true }, (lock) => lock)).toBeNull();
    const held = await ls.locks.request('other', { ifAvailable: true }, (lock) => lock);
    expect(held).toEqual({ name: 'other', mode: 'exclusive' });
  } finally {
    await other.release();
  }
  expect(await ls.locks.request('job', { ifAvailable: true }, (lock) => lock?.name)).toBe('job');
});

test('signal: an abort while queued rejects with an AbortError and never calls the callback', async () => {
  const ls = LockSpace.open(tmp.dir);
  let release!: () => void;
  const holding = ls.locks.request('job', () => new Promise<void>((resolve) => (release = resolve)));
  await waitFor(() => stats().leases === 1, 'held');
  const ac = new AbortController();
  let called = false;
  const queued = ls.locks.request('job', { signal: ac.signal }, () => {
    called = true;
  });
  await waitFor(() => stats().waiters === 1, 'queued');
  ac.abort();
  const e = await catchErr(() => queued);
  expect(e.name).toBe('AbortError');
  expect(called).toBe(false);
  expect((await ls.locks.query()).pending).toEqual([]);
  release();
  await holding;
});

test('steal is rejected clearly; so are bad options and a missing callback', async () => {
  const ls = LockSpace.open(tmp.dir);
  const e = await catchErr(() => ls.locks.request('job', { steal: true as false }, () => 1));
  expect(e.code).toBe('ERR_INVALID_ARG_VALUE');
  expect(e.message).toContain('is not supported');
  expect((await catchErr(() => ls.locks.request('job', { mode: 'read' as 'shared' }, () => 1))).code).toBe('ERR_INVALID_ARG_VALUE');
  const ac = new AbortController();
  expect((await catchErr(() => ls.locks.request('job', { ifAvailable: true, signal: ac.signal }, () => 1))).code).toBe(
    'ERR_INVALID_ARG_VALUE',
  );
  expect((await catchErr(() => (ls.locks.request as (n: string) => Promise<void>)('job'))).code).toBe('ERR_INVALID_ARG_TYPE');
  expect(fs.readdirSync(tmp.dir)).toEqual([]);
});

test('the lock is released when the callback throws or its promise rejects', async () => {
  const ls = LockSpace.open(tmp.dir);
  const boom = new Error('boom');
  expect(
    await catchErr(() =>
      ls.locks.request('job', () => {
        throw boom;
      }),
    ),
  ).toBe(boom);
  expect(stats().leases).toBe(0);
  expect(await catchErr(() => ls.locks.request('job', async () => Promise.reject(boom)))).toBe(boom);
  expect(stats().leases).toBe(0);
  expect(fs.readdirSync(tmp.dir)).toEqual([]);
});

test('query lists what is held through this lockspace, with mode and clientId', async () => {
  const ls = LockSpace.open(tmp.dir);
  const plain = ls.acquireSync('not-a-web-lock', { autoCreate: true });
  const snapshot = await ls.locks.request('a', () => ls.locks.request('b', { mode: 'shared' }, () => ls.locks.query()));
  const held = [...snapshot.held].sort((x, y) => x.name.localeCompare(y.name));
  expect(held).toEqual([
    { name: 'a', mode: 'exclusive', clientId: `${process.pid}/0` },
    { name: 'b', mode: 'shared', clientId: `${process.pid}/0` },
  ]);
  expect(snapshot.pending).toEqual([]);
  expect(await ls.locks.query()).toEqual({ held: [], pending: [] });
  plain.releaseSync();
});

test('path mode: the file must exist and is never deleted', async () => {
  const ls = LockSpace.open(null);
  const file = path.join(tmp.dir, 'disk.img');
  expect((await catchErr(() => ls.locks.request(file, () => 1))).code).toBe('ENOENT');
  fs.writeFileSync(file, '');
  expect(await ls.locks.request(file, async () => outsideProbe(file))).toBe('busy');
  expect(fs.existsSync(file)).toBe(true);
});
