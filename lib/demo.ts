/**
 * `npm run demo`: several worker threads of one process start and stop "virtual machines" that share
 * a few disk images, locking each disk through one lockspace the way libvirt's virtlockd does (the
 * lock file is named by the SHA-256 of the disk path). Every thread goes through the same
 * process-wide lock table, so no two writers ever hold a disk at once, readers share, and nobody's
 * close drops somebody else's lock. A shared counter per disk proves it as the demo runs.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';

import { LockSpace, resourceNameForPath } from './index';

const DISKS = ['/var/lib/images/web.qcow2', '/var/lib/images/db.qcow2', '/var/lib/images/cache.qcow2', '/var/lib/images/base-ro.qcow2'];
const WORKERS = 6;
const ROUNDS = 12;

interface Job {
  dir: string;
  id: number;
  counters: SharedArrayBuffer;
}

interface Report {
  id: number;
  started: number;
  waited: number;
  timedOut: number;
  busy: number;
  violations: number;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function vmHost(job: Job): Promise<Report> {
  const ls = LockSpace.open(job.dir);
  const counters = new Int32Array(job.counters);
  const report: Report = { id: job.id, started: 0, waited: 0, timedOut: 0, busy: 0, violations: 0 };
  for (let round = 0; round < ROUNDS; round++) {
    const disk = Math.floor(Math.random() * DISKS.length);
    const readOnly = DISKS[disk].includes('-ro');
    const name = resourceNameForPath(DISKS[disk], { canonicalize: false });
    const vm = `vm-${job.id}-${round}`;
    let lease;
    try {
      // Try at once first (a scheduler would pick another host); then wait a bounded time.
      lease = await ls.acquire(name, { shared: readOnly, autoCreate: true, owner: vm });
    } catch (err) {
      if ((err as { code?: string }).code !== 'EBUSY') throw err;
      report.busy++;
      try {
        lease = await ls.acquire(name, { shared: readOnly, autoCreate: true, owner: vm, wait: true, timeout: 150 });
        report.waited++;
      } catch (e) {
        if ((e as { code?: string }).code !== 'ETIMEDOUT') throw e;
        report.timedOut++;
        log(`worker ${job.id}: ${vm} gave up on ${DISKS[disk]} (timeout)`);
        continue;
      }
    }
    await using held = lease;
    // Writers set the counter to -1 and must find 0; readers add 1 and must not find -1.
    if (readOnly) {
      if (Atomics.add(counters, disk, 1) < 0) report.violations++;
    } else if (Atomics.compareExchange(counters, disk, 0, -1) !== 0) {
      report.violations++;
    }
    report.started++;
    log(`worker ${job.id}: ${vm} running on ${DISKS[disk]} (${held.shared ? 'shared' : 'exclusive'})`);
    await sleep(5 + Math.random() * 25);
    if (readOnly) Atomics.sub(counters, disk, 1);
    else Atomics.store(counters, disk, 0);
  }
  return report;
}

function log(line: string): void {
  if (process.env.LOCKSPACE_DEMO_QUIET !== '1') console.log(line);
}

function lslocksSnapshot(dir: string): string {
  try {
    const out = execFileSync('lslocks', ['--noheadings', '--output', 'PID,TYPE,MODE,PATH'], { encoding: 'utf8' });
    const mine = out.split('\n').filter((l) => l.includes(dir));
    return mine.length ? mine.join('\n') : '(no locks in the demo directory right now)';
  } catch {
    return '(lslocks not available)';
  }
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'lockspace-demo-'));
  const counters = new SharedArrayBuffer(4 * DISKS.length);
  console.log(`lockspace demo: ${WORKERS} worker threads, ${DISKS.length} disk images, lockspace ${dir}`);
  for (const d of DISKS) console.log(`  ${d} -> ${resourceNameForPath(d, { canonicalize: false })}`);
  const workers = Array.from({ length: WORKERS }, (_, id) => new Worker(__filename, { workerData: { dir, id, counters } }));
  const reports = workers.map((w) => new Promise<Report>((resolve, reject) => {
    w.once('message', resolve);
    w.once('error', reject);
  }));
  // The main thread takes a disk too, shows what another process sees, then lets the workers have it.
  const ls = LockSpace.open(dir);
  const mainLease = await ls.acquire(resourceNameForPath(DISKS[0], { canonicalize: false }), {
    autoCreate: true,
    owner: 'main-maintenance',
    wait: true,
  });
  console.log(`\nmain thread holds ${DISKS[0]}; what another process sees (lslocks; this demo is pid ${process.pid}):`);
  console.log(`${lslocksSnapshot(dir)}\n`);
  await sleep(100);
  await mainLease.release();
  const done = await Promise.all(reports);
  console.log('\nworker  started  waited  busy  timed-out  violations');
  for (const r of done) {
    console.log(`${String(r.id).padStart(6)}  ${String(r.started).padStart(7)}  ${String(r.waited).padStart(6)}  ${String(r.busy).padStart(4)}  ${String(r.timedOut).padStart(9)}  ${String(r.violations).padStart(10)}`);
  }
  const violations = done.reduce((n, r) => n + r.violations, 0);
  const left = ls.resources().length;
  console.log(`\nexclusivity violations: ${violations}; resources still held: ${left}`);
  rmSync(dir, { recursive: true, force: true });
  if (violations !== 0 || left !== 0) process.exitCode = 1;
}

if (isMainThread) {
  main().catch((err) => {
    console.error(err);
    process.exitCode = 1;
  });
} else {
  vmHost(workerData as Job).then((r) => parentPort!.postMessage(r));
}
