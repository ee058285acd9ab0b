/* Holder records on shared storage: a host's record is read by the other host (status --json and
 * inspect), with the holder's host name, pid and label; exclusive grants alternating between the
 * hosts count one generation on, strictly increasing; a record whose holder is gone is never shown. */
import * as path from 'path';
import { spawn, spawnSync } from 'child_process';
import { cluster, onHostSync, Peer } from './hosts';

let a: Peer;
let b: Peer;
let dir: string;
let sa: number;
let sb: number;
let n = 0;

const CLI = path.join(__dirname, '../../dist/lib/cli.js');

beforeAll(async () => {
  [a, b] = await Promise.all([Peer.start('a'), Peer.start('b')]);
});
afterAll(async () => {
  await Promise.all([a?.stop(), b?.stop()]);
});
beforeEach(async () => {
  dir = path.join(cluster.MOUNT, `records-${process.pid}-${++n}`);
  sa = await a.call('open', { dir, options: { records: true } });
  sb = await b.call('open', { dir, options: { records: true } });
  await a.call('create', { space: sa, name: 'disk' });
});
afterEach(async () => {
  for (const p of [a, b]) {
    const s = await p.call('stats');
    expect({ leases: s.leases, waiters: s.waiters, kernelWaits: s.kernelWaits }).toEqual({ leases: 0, waiters: 0, kernelWaits: 0 });
  }
  onHostSync('a', `rm -rf '${dir}'`);
});

function statusOn(host: string): any {
  const [cmd, args] = cluster.onHost(host, [process.execPath, CLI, 'status', dir, '--json']);
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 60_000 });
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  return JSON.parse(r.stdout).resources.find((x: { name: string }) => x.name === 'disk');
}

test("host a holds with label vm-42: host b's status --json and inspect show a's host name, pid and label", async () => {
  const { lease, generation } = await a.call('acquire', { space: sa, name: 'disk', options: { label: 'vm-42' } });
  const hostA = onHostSync('a', 'hostname').trim();
  expect(hostA).not.toBe(onHostSync('b', 'hostname').trim());
  const there = statusOn('b');
  expect(there.state).toBe('exclusive');
  expect(there.holders).toMatchObject([{ pid: null, mode: 'exclusive' }]); // the kernel's view: no pid from another host
  expect(there.records).toMatchObject([{ host: hostA, pid: a.pid, label: 'vm-42', generation, mode: 'exclusive' }]);
  const inspected = await b.call('inspect', { space: sb, name: 'disk' });
  expect(inspected.records).toMatchObject([{ host: hostA, pid: a.pid, label: 'vm-42', generation, mode: 'exclusive' }]);
  await a.call('release', { lease });
  // Released: the record stays in the file but is not shown on either host.
  for (const host of ['a', 'b']) expect(statusOn(host)).toMatchObject({ state: 'free', records: [] });
});

test('shared holders on both hosts: one record each; a killed holder is not shown', async () => {
  const ra = await a.call('acquire', { space: sa, name: 'disk', options: { shared: true, label: 'on-a' } });
  await b.call('acquire', { space: sb, name: 'disk', options: { shared: true, label: 'on-b' } });
  const labels = (r: any) => r.records.map((x: { label: string }) => x.label).sort();
  expect(labels(statusOn('a'))).toEqual(['on-a', 'on-b']);
  expect(labels(statusOn('b'))).toEqual(['on-a', 'on-b']);
  await a.call('release', { lease: ra.lease });
  // b's holder dies with SIGKILL: its lock (and its record's live byte) goes with it.
  onHostSync('b', `kill -KILL ${b.pid}`);
  await b.stop();
  await cluster.waitUntil(() => statusOn('a').state === 'free', 'the killed holder’s lock to go', 30_000, 100);
  expect(statusOn('a').records).toEqual([]);
  b = await Peer.start('b');
  sb = await b.call('open', { dir, options: { records: true } });
});

// 2 x 5,000 grants, the count the proof names: 77-89 s on the 2-core development VM (each grant
// with its record is ~10 round trips to the server: open, lock, name check, count read and write, slot
// claim, record write, flush; then unlock and close).
const ALTERNATIONS = 5000;

test(`exclusive grants alternating between the hosts: strictly increasing generations (${2 * ALTERNATIONS} grants)`, async () => {
  const gens: bigint[] = [];
  for (let i = 0; i < ALTERNATIONS; i++) {
    gens.push(BigInt(await a.call('cycle', { space: sa, name: 'disk' })));
    gens.push(BigInt(await b.call('cycle', { space: sb, name: 'disk' })));
  }
  for (let i = 1; i < gens.length; i++) {
    if (gens[i] !== gens[i - 1] + 1n) throw new Error(`grant ${i} (host ${'ab'[i % 2]}): generation ${gens[i]} after ${gens[i - 1]}`);
  }
  expect(gens).toHaveLength(2 * ALTERNATIONS);
  process.stdout.write(`multihost: ${gens.length} alternating exclusive grants, generations ${gens[0]}..${gens[gens.length - 1]}\n`);
}, 300_000);

test('ifGeneration across hosts: ERR_GENERATION_CHANGED after the other host held it', async () => {
  const { lease, generation } = await a.call('acquire', { space: sa, name: 'disk' });
  await a.call('release', { lease });
  await b.call('release', { lease: (await b.call('acquire', { space: sb, name: 'disk' })).lease });
  const err = await a.fails('acquire', { space: sa, name: 'disk', options: { ifGeneration: generation } });
  expect(err.code).toBe('ERR_GENERATION_CHANGED');
});

test('SIGKILL of a writer at random moments of its grant loop, 100 times: no generation repeats, no stale holder shown', async () => {
  const plain = await b.call('open', { dir }); // b's checks lock without writing records
  const fixture = path.join(__dirname, '../fixtures/record-loop.js');
  const seen: bigint[] = [];
  for (let round = 0; round < 100; round++) {
    const [cmd, args] = cluster.onHost('a', [process.execPath, fixture, JSON.stringify({ directory: dir, name: 'disk', mode: 'spin', label: `r${round}` })]);
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
    const exited = new Promise((resolve) => child.on('exit', resolve));
    const gens = () => [...out.matchAll(/^g (\d+)$/gm)].map((m) => BigInt(m[1]));
    await cluster.waitUntil(() => gens().length >= 2, 'the loop to run', 30_000, 2);
    await cluster.sleep(Math.random() * 20);
    onHostSync('a', `kill -KILL ${/ready (\d+)/.exec(out)![1]}`);
    await exited;
    seen.push(...gens());
    // Host b: nobody holds it, no record shown; held by b without a record: still none shown.
    expect(await b.call('inspect', { space: sb, name: 'disk' })).toMatchObject({ state: 'free', records: [] });
    const { lease } = await b.call('acquire', { space: plain, name: 'disk' });
    expect(await b.call('inspect', { space: sb, name: 'disk' })).toMatchObject({ state: 'exclusive', records: [] });
    if (round % 25 === 0) expect(statusOn('b')).toMatchObject({ state: 'exclusive', records: [] });
    await b.call('release', { lease });
  }
  for (let i = 1; i < seen.length; i++) {
    if (seen[i] <= seen[i - 1]) throw new Error(`generation ${seen[i]} after ${seen[i - 1]}`);
  }
  process.stdout.write(`multihost: 100 SIGKILLs, ${seen.length} generations seen, strictly increasing\n`);
});
