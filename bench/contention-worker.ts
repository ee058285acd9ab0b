/**
 * Worker of figure 5: random exclusive/shared acquires on a set of resources. Every critical section
 * checks exclusion on a shared counter per resource: a writer moves it 0 -> -1 -> 0, readers count up
 * and down from 0; anything else is a violation.
 */
import { parentPort, workerData } from 'worker_threads';
import { nowNs, sleepSync } from './clock';
import { requireLockspace } from './lockspace';
import type { ContentionWorkerData, RunCommand, RunReport } from './contention-protocol';

const WRITER = -1;
/** A lease lost to an error must not stall the run: waits give up after this. */
const ACQUIRE_TIMEOUT_MS = 5000;
const { dir, resources, exclusiveShare, criticalSpins, counters: sab } = workerData as ContentionWorkerData;
const counters = new Int32Array(sab);
const ls = requireLockspace().LockSpace.open(dir);
const names = Array.from({ length: resources }, (_, i) => `c${i}`);

/** Keeps the resource occupied for a moment, so overlapping holders would be seen. */
function dwell(r: number): void {
  for (let i = 0; i < criticalSpins; i++) Atomics.load(counters, r);
}

function exclusiveSection(r: number): number {
  if (Atomics.compareExchange(counters, r, 0, WRITER) !== 0) return 1;
  dwell(r);
  return Atomics.compareExchange(counters, r, WRITER, 0) === WRITER ? 0 : 1;
}

function sharedSection(r: number): number {
  let readers = Atomics.load(counters, r);
  for (;;) {
    if (readers < 0) return 1;
    const seen = Atomics.compareExchange(counters, r, readers, readers + 1);
    if (seen === readers) break;
    readers = seen;
  }
  dwell(r);
  return Atomics.sub(counters, r, 1) >= 1 ? 0 : 1;
}

async function cycle(): Promise<number> {
  const r = Math.floor(Math.random() * resources);
  const shared = Math.random() >= exclusiveShare;
  const lease = await ls.acquire(names[r], { shared, wait: true, timeout: ACQUIRE_TIMEOUT_MS });
  const violations = shared ? sharedSection(r) : exclusiveSection(r);
  await lease.release();
  return violations;
}

async function run({ startAt, durationMs }: RunCommand): Promise<RunReport> {
  const start = BigInt(startAt);
  sleepSync(Math.max(0, Number(start - nowNs()) / 1e6));
  const deadline = start + BigInt(Math.round(durationMs * 1e6));
  const report: RunReport = { ops: 0, violations: 0, errors: 0, endAt: '' };
  while (nowNs() < deadline) {
    try {
      report.violations += await cycle();
      report.ops++;
    } catch (e) {
      report.errors++;
      report.firstError ??= String(e);
    }
  }
  report.endAt = String(nowNs());
  return report;
}

parentPort!.on('message', (command: RunCommand) => {
  run(command).then((report) => parentPort!.postMessage(report));
});
parentPort!.postMessage('ready');
