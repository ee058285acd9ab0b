/* What must hold on shared storage, across two hosts on Gluster's default client caching: autoCreate
 * never gives two holders, no ESTALE reaches the user, no misleading holder pid, the CLI and
 * inspect tell the real state, and a release is visible to the other host once it resolves. */
import * as path from 'path';
import { spawnSync } from 'child_process';
import { cluster, onHostSync, Peer, PeerError, probe } from './hosts';

let a: Peer;
let b: Peer;
let dir: string;
let sa: number;
let sb: number;
let n = 0;

beforeAll(async () => {
  [a, b] = await Promise.all([Peer.start('a'), Peer.start('b')]);
});
afterAll(async () => {
  await Promise.all([a?.stop(), b?.stop()]);
});
beforeEach(async () => {
  dir = path.join(cluster.MOUNT, `shared-${process.pid}-${++n}`);
  sa = await a.call('open', { dir });
  sb = await b.call('open', { dir });
});
afterEach(async () => {
  for (const p of [a, b]) {
    const s = await p.call('stats');
    expect({ leases: s.leases, waiters: s.waiters, kernelWaits: s.kernelWaits }).toEqual({ leases: 0, waiters: 0, kernelWaits: 0 });
  }
  onHostSync('a', `rm -rf '${dir}'`);
});

async function settled<T>(p: Promise<T>): Promise<{ value?: T; error?: PeerError }> {
  try {
    return { value: await p };
  } catch (error) {
    return { error: error as PeerError };
  }
}

const ROUNDS = 50;

test(`autoCreate hand-off: ${ROUNDS} rounds, never two holders`, async () => {
  let doubles = 0;
  let grantedToB = 0;
  let { lease: la } = await a.call('acquire', { space: sa, name: 'disk', options: { autoCreate: true } });
  for (let round = 0; round < ROUNDS; round++) {
    // b waits; a releases and at once acquires again, while b's client may still see an old name.
    const waiting = b.call('acquire', { space: sb, name: 'disk', options: { autoCreate: true, wait: true } });
    let bDone = false;
    void waiting.then(
      () => (bDone = true),
      () => (bDone = true),
    );
    await cluster.waitUntil(async () => (await b.call('stats')).kernelWaits === 1 || bDone, 'b to wait', 10_000, 5);
    const again = await a.call('handoff', { lease: la, space: sa, name: 'disk', options: { autoCreate: true } });
    await cluster.sleep(100); // b's wait, if granted, is granted now (it wakes within milliseconds)
    const aHolds = again.error === undefined;
    if (aHolds && bDone) doubles++;
    if (aHolds) {
      // a won the race: b still waits, and gets it when a releases.
      expect(probe('b', path.join(dir, 'disk'))).toBe('busy');
      await a.call('release', { lease: again.lease });
    } else {
      expect(again.error.code).toBe('EBUSY');
      grantedToB++;
    }
    const { lease: lb } = await waiting;
    expect(probe('a', path.join(dir, 'disk'))).toBe('busy');
    const back = await b.call('handoff', { lease: lb, space: sb, name: 'nothing', options: { autoCreate: true } });
    await b.call('release', { lease: back.lease });
    ({ lease: la } = await a.call('acquire', { space: sa, name: 'disk', options: { autoCreate: true } }));
  }
  await a.call('release', { lease: la });
  process.stdout.write(`multihost: hand-off rounds ${ROUNDS}: b granted first ${grantedToB}, double holders ${doubles}\n`);
  expect(doubles).toBe(0);
});

test(`autoCreate simultaneous first acquires: ${ROUNDS} rounds, exactly one holder each`, async () => {
  const outcomes: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const name = `first-${round}`;
    const [ra, rb] = await Promise.all([
      settled(a.call('acquire', { space: sa, name, options: { autoCreate: true } })),
      settled(b.call('acquire', { space: sb, name, options: { autoCreate: true } })),
    ]);
    for (const r of [ra, rb]) if (r.error) expect(r.error.code).toBe('EBUSY');
    outcomes.push([ra, rb].filter((r) => r.value).length);
    if (ra.value) await a.call('release', { lease: ra.value.lease });
    if (rb.value) await b.call('release', { lease: rb.value.lease });
  }
  expect(outcomes).toEqual(Array(ROUNDS).fill(1));
});

test('a file another host deleted or re-created: a fresh lookup, never ESTALE', async () => {
  const codes: string[] = [];
  for (let round = 0; round < 10; round++) {
    const { lease } = await a.call('acquire', { space: sa, name: 'disk', options: { autoCreate: true } });
    await a.call('release', { lease }); // host a's client now has the name cached
    await b.call('delete', { space: sb, name: 'disk' });
    if (round % 2 === 1) await b.call('create', { space: sb, name: 'disk' }); // re-created: a new inode
    const r = await settled(a.call('acquire', { space: sa, name: 'disk', options: { autoCreate: round % 2 === 0 } }));
    codes.push(r.error ? `${r.error.code} (round ${round}: ${r.error.message})` : 'ok');
    if (r.value) await a.call('release', { lease: r.value.lease });
  }
  expect(codes).toEqual(Array(10).fill('ok'));
});

test('the other host is named "another host or process", never by a pid of this host', async () => {
  const { lease } = await a.call('acquire', { space: sa, name: 'disk', options: { autoCreate: true } });
  const busy = await b.fails('acquire', { space: sb, name: 'disk' });
  expect(busy.code).toBe('EBUSY');
  expect(busy.holderPid).toBeUndefined();
  expect(busy.message).toContain('another host or process');
  const cli = path.join(__dirname, '../../dist/lib/cli.js');
  const [cmd, args] = cluster.onHost('b', [process.execPath, cli, 'run', dir, 'disk', '--', 'true']);
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  expect(r.status).toBe(75);
  expect(r.stderr).toContain('another host or process');
  expect(r.stderr).not.toMatch(/pid \d/);
  await a.call('release', { lease });
});

test('inspect and `lockspace status` find the real state on both hosts', async () => {
  await a.call('create', { space: sa, name: 'free' });
  const { lease } = await a.call('acquire', { space: sa, name: 'disk', options: { autoCreate: true, owner: 'vm1' } });
  const here = await a.call('inspect', { space: sa, name: 'disk' });
  expect(here).toMatchObject({ state: 'exclusive', owners: ['vm1'], waiters: 0 });
  expect(here.holders).toEqual([{ pid: a.pid, mode: 'exclusive', kind: 'posix' }]);
  const there = await b.call('inspect', { space: sb, name: 'disk' });
  expect(there).toMatchObject({ state: 'exclusive', owners: [], waiters: 0 });
  expect(there.holders).toEqual([{ pid: null, mode: 'exclusive', kind: 'posix' }]);
  expect(probe('b', path.join(dir, 'disk'))).toBe('busy'); // inspect dropped nothing
  const cli = path.join(__dirname, '../../dist/lib/cli.js');
  for (const host of ['a', 'b']) {
    const [cmd, args] = cluster.onHost(host, [process.execPath, cli, 'status', dir, '--json']);
    const r = spawnSync(cmd, args, { encoding: 'utf8' });
    expect(r.status).toBe(0);
    const states = Object.fromEntries(JSON.parse(r.stdout).resources.map((x: any) => [x.name, x.state]));
    expect(states).toEqual({ disk: 'exclusive', free: 'free' });
  }
  await a.call('release', { lease });
});

for (const lockType of ['posix', 'ofd']) {
  test(`${lockType}: a release is visible to the other host once it resolves (${ROUNDS} rounds)`, async () => {
    const la = await a.call('open', { dir, options: { lockType } });
    const lb = await b.call('open', { dir, options: { lockType } });
    await a.call('create', { space: la, name: 'disk' });
    let refused = 0;
    for (let round = 0; round < ROUNDS; round++) {
      const { lease } = await a.call('acquire', { space: la, name: 'disk' });
      await a.call('release', { lease });
      const r = await settled(b.call('acquire', { space: lb, name: 'disk' }));
      if (r.error) refused++;
      else await b.call('release', { lease: r.value!.lease });
    }
    expect(refused).toBe(0);
  });
}
