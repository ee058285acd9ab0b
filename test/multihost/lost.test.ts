/* Lost locks surfaced to the holder: host a holds a lock; a fault takes it away (its FUSE client
 * dies, the brick dies or restarts, a partition lets host b in, host b unlinks the file), and a's
 * lease.signal aborts with ERR_LOCK_LOST / lease.verify() rejects with it, within 15 s: the check
 * interval (1 s here) plus the client's own timeout (10 s here), with room to spare. */
import { spawn } from 'child_process';
import * as path from 'path';
import { CLI } from '../cli-helpers';
import { cluster, onHostSync, Peer, probe } from './hosts';

const BOUND_MS = 15_000;
let a: Peer;
let b: Peer;
let dir: string;
let sa: number;
let sb: number;
let n = 0;
const restart = new Set<string>(); // hosts a test broke: started afresh after it

beforeEach(async () => {
  [a, b] = await Promise.all([Peer.start('a'), Peer.start('b')]);
  dir = path.join(cluster.MOUNT, `lost-${process.pid}-${++n}`);
  sa = await a.call('open', { dir, options: { checkInterval: 1000 } });
  sb = await b.call('open', { dir, options: { checkInterval: 1000 } });
  await a.call('create', { space: sa, name: 'disk' });
});

afterEach(async () => {
  await Promise.all([a.stop(), b.stop()]);
  for (const host of ['a', 'b']) cluster.healLink(host);
  if (!cluster.brickPid()) await cluster.startBrick();
  for (const host of ['a', 'b']) {
    if (restart.has(host)) await cluster.restartHost(host);
    else await cluster.waitMount(host);
  }
  restart.clear();
  onHostSync('b', `rm -rf '${dir}'`);
});

function expectLost(error: { code?: string; path?: string; cause?: { code?: string } }, causes: string[]): void {
  expect(error.code).toBe('ERR_LOCK_LOST');
  expect(error.path).toBe(path.join(dir, 'disk'));
  expect(causes).toContain(error.cause?.code);
}

test("host a's FUSE client is killed: a's lease.signal aborts", async () => {
  const { lease } = await a.call('acquire', { space: sa, name: 'disk' });
  restart.add('a');
  const killedAt = Date.now();
  cluster.killFuseClient('a');
  const lost = await a.lostEvent(lease, BOUND_MS);
  expectLost(lost.error, ['ENOTCONN', 'EIO', 'EBADFD']);
  process.stdout.write(`multihost: FUSE client killed -> signal aborted after ${lost.at - killedAt} ms\n`);
  await a.call('release', { lease }); // resolves: nothing left to release
  expect(probe('b', path.join(dir, 'disk'))).toBe('locked');
});

test("the brick is killed: a's lease.signal aborts; release resolves", async () => {
  const { lease } = await a.call('acquire', { space: sa, name: 'disk' });
  const killedAt = Date.now();
  await cluster.killBrick();
  const lost = await a.lostEvent(lease, BOUND_MS);
  expectLost(lost.error, ['ENOTCONN', 'EBADFD', 'EIO']);
  process.stdout.write(`multihost: brick killed -> signal aborted after ${lost.at - killedAt} ms\n`);
  await cluster.startBrick();
  await a.call('release', { lease });
});

test("the brick restarts and b acquires: a's verify() rejects with ERR_LOCK_LOST", async () => {
  const quiet = await a.call('open', { dir, options: { checkInterval: 0 } }); // verify alone finds out
  const { lease } = await a.call('acquire', { space: quiet, name: 'disk' });
  await cluster.killBrick();
  await cluster.startBrick();
  await cluster.waitMount('b');
  const got = await cluster.waitUntil(
    () => b.call('acquire', { space: sb, name: 'disk' }).catch(() => null),
    'host b to acquire after the brick restart',
    30_000,
    200,
  );
  const err = await a.fails('verify', { lease });
  expectLost(err, ['EBADFD', 'EAGAIN', 'ENOTCONN', 'EIO']);
  expect(await a.call('lost', { lease })).toMatchObject({ code: 'ERR_LOCK_LOST' }); // the signal too
  await a.call('release', { lease });
  await b.call('release', { lease: got.lease });
});

test("a partition lets host b in: a's lease.signal aborts", async () => {
  const { lease } = await a.call('acquire', { space: sa, name: 'disk' });
  const waiting = b.call('acquire', { space: sb, name: 'disk', options: { wait: true } });
  restart.add('a');
  cluster.cutLink('a');
  const got = await waiting; // the server gives a up after its timeouts
  const lost = await a.lostEvent(lease, BOUND_MS + Math.max(0, Date.now() - got.at));
  expect(lost.at - got.at).toBeLessThanOrEqual(BOUND_MS);
  expectLost(lost.error, ['ENOTCONN', 'EAGAIN', 'EIO', 'EBADFD', 'ETIMEDOUT']);
  process.stdout.write(`multihost: partition -> b granted, a's signal aborted ${lost.at - got.at} ms after that\n`);
  cluster.healLink('a');
  await a.call('release', { lease });
  await b.call('release', { lease: got.lease });
});

test("host b unlinks a's file: a's verify() rejects once a's name cache has expired", async () => {
  const quiet = await a.call('open', { dir, options: { checkInterval: 0 } });
  const { lease } = await a.call('acquire', { space: quiet, name: 'disk' });
  await a.call('verify', { lease });
  onHostSync('b', `rm '${path.join(dir, 'disk')}'`);
  await cluster.sleep(1500); // Gluster's default entry timeout is 1 s
  const err = await a.fails('verify', { lease });
  expectLost(err, ['ENOENT']);
  await a.call('release', { lease });
});

test('host a crashes while holding: host b is granted the lock', async () => {
  const { lease } = await a.call('acquire', { space: sa, name: 'disk' });
  expect(lease).toBeGreaterThan(0);
  const waiting = b.call('acquire', { space: sb, name: 'disk', options: { wait: true } });
  restart.add('a');
  await cluster.crashHost('a');
  const got = await waiting;
  expect(await b.call('verify', { lease: got.lease })).toBe(true);
  await b.call('release', { lease: got.lease });
});

/** The pids of the test's workload (`sleep 1000`) on host a. */
function workload(): string {
  return onHostSync('a', `pgrep -x -f 'sleep 1000' || true`).trim();
}

test.each([
  ['(default)', 'SIGKILL', [], ['--', 'sleep', '1000'], 128 + 9],
  ['--on-lost=term', 'SIGTERM', ['--on-lost=term'], ['--', 'sleep', '1000'], 128 + 15],
  ['-c with a child of its own', 'SIGKILL', [], ['-c', 'sleep 1000 & wait'], 128 + 9],
] as const)("`lockspace run` %s on host a: the brick is killed, the lock is lost, so COMMAND and what it started get %s", async (_, signal, options, command, status) => {
  const file = path.join(dir, 'disk');
  const [cmd, args] = cluster.onHost('a', [process.execPath, CLI, 'run', ...options, dir, 'disk', ...command]);
  const run = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  run.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const ended = new Promise<number | null>((resolve) => run.once('exit', (code) => resolve(code)));
  try {
    // COMMAND runs once run holds the lock (host b's probe must not race run's one try for it).
    await cluster.waitUntil(() => workload() !== '' || run.exitCode !== null, 'the workload started');
    expect([run.exitCode, stderr]).toEqual([null, '']);
    expect(probe('b', file)).toBe('busy');
    const killedAt = Date.now();
    await cluster.killBrick();
    const code = await Promise.race([ended, cluster.sleep(BOUND_MS).then(() => 'still running')]);
    expect(code).toBe(status);
    expect(stderr).toContain("'s lock is lost (ERR_LOCK_LOST");
    expect(stderr).toContain(signal);
    // Nothing of the workload outlives the fence (a wrapper's child included).
    expect(workload()).toBe('');
    process.stdout.write(`multihost: brick killed -> run's COMMAND ended (${signal}) after ${Date.now() - killedAt} ms\n`);
  } finally {
    // nsenter forks: `run` and its COMMAND are its children inside host a.
    if (run.exitCode === null) onHostSync('a', `pkill -KILL -f 'cli.js run' ; true`);
    onHostSync('a', `pkill -KILL -x -f 'sleep 1000' ; true`);
    run.stderr!.destroy();
  }
});
