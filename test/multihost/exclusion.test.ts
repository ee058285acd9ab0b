/* Two hosts, one GlusterFS volume: the lock on a resource excludes across hosts, a wait on one host
 * is woken by the other host's release, given-up waits leave nothing granted, and delete refuses
 * while the other host holds. Every claim is checked from outside too (python3's fcntl.lockf). */
import * as fs from 'fs';
import * as path from 'path';
import { cluster, Peer, probe } from './hosts';

let a: Peer;
let b: Peer;
let dir: string;
let sa: number;
let sb: number;

beforeAll(async () => {
  [a, b] = await Promise.all([Peer.start('a'), Peer.start('b')]);
});
afterAll(async () => {
  await Promise.all([a?.stop(), b?.stop()]);
});

let n = 0;
beforeEach(async () => {
  dir = path.join(cluster.MOUNT, `exclusion-${process.pid}-${++n}`);
  sa = await a.call('open', { dir });
  sb = await b.call('open', { dir });
  await a.call('create', { space: sa, name: 'disk' });
});
afterEach(async () => {
  // Nothing of a test stays held or queued on either host.
  for (const p of [a, b]) {
    const s = await p.call('stats');
    expect({ leases: s.leases, waiters: s.waiters, kernelWaits: s.kernelWaits }).toEqual({ leases: 0, waiters: 0, kernelWaits: 0 });
  }
  fs.rmSync(dir, { recursive: true, force: true });
});

test('an exclusive lock on one host refuses the other host (lockspace and lockf), until released', async () => {
  const file = path.join(dir, 'disk');
  const { lease } = await a.call('acquire', { space: sa, name: 'disk' });
  const busy = await b.fails('acquire', { space: sb, name: 'disk' });
  expect(busy.code).toBe('EBUSY');
  expect(probe('b', file)).toBe('busy');
  expect(probe('b', file, 'shared')).toBe('busy');
  await a.call('release', { lease });
  expect(probe('b', file)).toBe('locked');
  const got = await b.call('acquire', { space: sb, name: 'disk' });
  expect(probe('a', file)).toBe('busy');
  await b.call('release', { lease: got.lease });
});

test('shared locks on both hosts coexist and refuse an exclusive one', async () => {
  const file = path.join(dir, 'disk');
  const la = await a.call('acquire', { space: sa, name: 'disk', options: { shared: true } });
  const lb = await b.call('acquire', { space: sb, name: 'disk', options: { shared: true } });
  expect(probe('a', file, 'shared')).toBe('locked');
  expect(probe('b', file)).toBe('busy');
  await a.call('release', { lease: la.lease });
  expect((await a.fails('acquire', { space: sa, name: 'disk' })).code).toBe('EBUSY');
  await b.call('release', { lease: lb.lease });
  expect(probe('a', file)).toBe('locked');
});

test("a waiting acquire is granted after the other host's release, not before", async () => {
  const file = path.join(dir, 'disk');
  const { lease } = await a.call('acquire', { space: sa, name: 'disk' });
  const waiting = b.call('acquire', { space: sb, name: 'disk', options: { wait: true } });
  let granted = false;
  void waiting.then(() => (granted = true));
  await cluster.sleep(500);
  expect(granted).toBe(false);
  const releasedAt: number = await a.call('release', { lease });
  const got = await waiting;
  expect(got.at).toBeGreaterThanOrEqual(releasedAt - 50); // clocks of one machine; order, not speed
  process.stdout.write(`multihost: wait woken ${got.at - releasedAt} ms after the other host's release\n`);
  expect(probe('a', file)).toBe('busy');
  await b.call('release', { lease: got.lease });
});

test('a wait that times out or is aborted leaves no grant behind', async () => {
  const file = path.join(dir, 'disk');
  const { lease } = await a.call('acquire', { space: sa, name: 'disk' });
  const timedOut = await b.fails('acquire', { space: sb, name: 'disk', options: { wait: true, timeout: 300 } });
  expect(timedOut.code).toBe('ETIMEDOUT');
  const aborted = await b.fails('acquire', { space: sb, name: 'disk', options: { wait: true }, abortAfter: 300 });
  expect(aborted.code).toBe('ABORT_ERR');
  await a.call('release', { lease });
  // Nothing was granted to host b afterwards: a third process on b can take the lock.
  await cluster.sleep(300);
  expect(probe('b', file)).toBe('locked');
  expect(probe('a', file)).toBe('locked');
  const s = await b.call('stats');
  expect(s.leases).toBe(0);
});

test('delete refuses while the other host holds the resource, and keeps the file', async () => {
  const file = path.join(dir, 'disk');
  const { lease } = await a.call('acquire', { space: sa, name: 'disk' });
  const refused = await b.fails('delete', { space: sb, name: 'disk' });
  expect(refused.code).toBe('EBUSY');
  expect(probe('b', file)).toBe('busy'); // the file is still there, still locked by host a
  await a.call('release', { lease });
  await b.call('delete', { space: sb, name: 'disk' });
  expect(probe('b', file)).toBe('error ENOENT');
});
