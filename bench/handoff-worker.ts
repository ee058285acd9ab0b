/**
 * Worker of figure 6 (in-process hand-off). The holder takes the lock, waits until the waiter is queued,
 * stamps the time and releases; the waiter measures from that stamp to its acquisition.
 */
import { parentPort, workerData } from 'worker_threads';
import { nowNs, sleepSync } from './clock';
import { signal, waitFor } from './atomics';
import { requireLockspace } from './lockspace';
import { DONE, HELD, QUEUED, type HandoffWorkerData } from './handoff-protocol';

const QUEUE_WAIT_LIMIT_NS = 20_000_000n;

const { role, dir, name, rounds, control: controlSab, releasedAt: releasedAtSab, latencies: latenciesSab } =
  workerData as HandoffWorkerData;
const control = new Int32Array(controlSab);
const releasedAt = new BigInt64Array(releasedAtSab);
const latencies = new Float64Array(latenciesSab);
const { LockSpace, _debug } = requireLockspace();
const ls = LockSpace.open(dir);

/** Until the waiter's acquire is queued in the native table (bounded, in case stats lag). */
function untilQueued(): void {
  const start = nowNs();
  while (_debug.stats().waiters < 1 && nowNs() - start < QUEUE_WAIT_LIMIT_NS) sleepSync(0.01);
}

function holder(): void {
  for (let round = 1; round <= rounds; round++) {
    const lease = ls.acquireSync(name);
    signal(control, HELD, round);
    waitFor(control, QUEUED, round);
    untilQueued();
    Atomics.store(releasedAt, 0, nowNs());
    lease.releaseSync();
    waitFor(control, DONE, round);
  }
}

async function waiter(): Promise<void> {
  for (let round = 1; round <= rounds; round++) {
    waitFor(control, HELD, round);
    const pending = ls.acquire(name, { wait: true });
    signal(control, QUEUED, round);
    const lease = await pending;
    latencies[round - 1] = Number(nowNs() - Atomics.load(releasedAt, 0));
    lease.releaseSync();
    signal(control, DONE, round);
  }
}

(role === 'holder' ? Promise.resolve(holder()) : waiter()).then(() => parentPort!.postMessage('done'));
