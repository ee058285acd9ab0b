/* Bound sets across hosts: host a binds three disks to a VM (holdFor), and
 * - its manager is SIGKILLed: host b cannot take them for 30 s; the VM is killed: b acquires at once;
 * - its link is cut: the holder's checks stop answering and it fences (SIGKILLs) the VM before the
 *   server gives the lock to host b (ping-timeout 10 s here; the holder fences after 4 s without a
 *   completed check), 10 rounds. */
import * as path from 'path';
import { ChildProcess, spawn } from 'child_process';
import { cluster, onHostSync, Peer, probe } from './hosts';

const FIXTURE = path.join(__dirname, '../fixtures/bind-manager.js');
const NAMES = ['disk1', 'disk2', 'disk3'];
/** The holder's check interval and fencing delay: well below the volume's ping-timeout (10 s). */
const HOLD_OPTIONS = { checkInterval: 1000, fenceAfter: 4000 };

let b: Peer;
let sb: number;
let dir: string;
let n = 0;
let manager: ChildProcess | undefined;

beforeEach(async () => {
  b = await Peer.start('b');
  dir = path.join(cluster.MOUNT, `bound-${process.pid}-${++n}`);
  sb = await b.call('open', { dir });
  for (const name of NAMES) await b.call('create', { space: sb, name });
});

afterEach(async () => {
  manager?.kill('SIGKILL');
  await b.stop();
  cluster.healLink('a');
  await cluster.restartHost('a'); // ends every process of host a: holders, VMs, managers
  await cluster.waitMount('b');
  onHostSync('b', `rm -rf '${dir}'`);
});

interface Bound {
  manager: number;
  vm: number;
  holder: number;
}

/** Starts the manager fixture on host a; resolves once the set is bound. Its later lines: `lines`. */
function bindOnA(lines: string[]): Promise<Bound> {
  const [cmd, args] = cluster.onHost('a', [process.execPath, FIXTURE, JSON.stringify({ directory: dir, names: NAMES, options: HOLD_OPTIONS })]);
  const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'inherit'] });
  manager = child;
  return new Promise((resolve, reject) => {
    let buffer = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      buffer += d;
      for (let nl = buffer.indexOf('\n'); nl >= 0; nl = buffer.indexOf('\n')) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        lines.push(line);
        if (line.startsWith('bound ')) resolve(JSON.parse(line.slice(6)) as Bound);
        if (line.startsWith('failed')) reject(new Error(`bind on host a: ${line}`));
      }
    });
  });
}

const files = () => NAMES.map((name) => path.join(dir, name));

test("host a's manager is SIGKILLed: b cannot take the VM's disks for 30 s; the VM is killed: b acquires within 2 s", async () => {
  const bound = await bindOnA([]);
  onHostSync('a', `kill -9 ${bound.manager}`);
  const until = Date.now() + 30_000;
  while (Date.now() < until) {
    for (const f of files()) expect(probe('b', f)).toBe('busy');
    const err = await b.fails('acquire', { space: sb, name: NAMES[0] });
    expect(err.code).toBe('EBUSY');
    await cluster.sleep(1000);
  }
  const killedAt = Date.now();
  onHostSync('a', `kill -9 ${bound.vm}`);
  const got = await Promise.all(NAMES.map((name) => b.call('acquire', { space: sb, name, options: { wait: true, timeout: 10_000 } })));
  const after = Math.max(...got.map((g: { at: number }) => g.at)) - killedAt;
  process.stdout.write(`multihost: bound VM killed on a -> b acquired all three after ${after} ms\n`);
  expect(after).toBeLessThanOrEqual(2000);
}, 120_000);

test("a partition: host a's holder fences its VM before host b is granted the disks, 10 of 10 rounds", async () => {
  const report: string[] = [];
  for (let round = 1; round <= 10; round++) {
    const lines: string[] = [];
    await bindOnA(lines);
    const waiting = b.call('acquire', { space: sb, name: NAMES[1], options: { wait: true, timeout: 60_000 } });
    const cutAt = Date.now();
    cluster.cutLink('a');
    const got = (await waiting) as { lease: number; at: number };
    await cluster.waitUntil(() => lines.some((l) => l.startsWith('vm-exit ')), 'the VM on host a to end', 30_000, 50);
    const exit = JSON.parse(lines.find((l) => l.startsWith('vm-exit '))!.slice(8)) as { at: number; signal: string };
    expect(exit.signal).toBe('SIGKILL');
    expect(exit.at).toBeLessThan(got.at);
    report.push(`round ${round}: fenced ${exit.at - cutAt} ms after the cut, b granted ${got.at - cutAt} ms after (${got.at - exit.at} ms later)`);
    await b.call('release', { lease: got.lease });
    manager?.kill('SIGKILL');
    cluster.healLink('a');
    await cluster.restartHost('a');
  }
  process.stdout.write(`multihost: partition, bound set fenced first:\n  ${report.join('\n  ')}\n`);
}, 480_000);
