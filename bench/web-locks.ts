/**
 * Figure 9, Web Locks: `ls.locks.request` against Node's own `navigator.locks.request` (Node >= 24.5),
 * which excludes only within one process. Per-op: one uncontended request cycle (request, callback,
 * release) in one thread. Hand-off: two worker threads request one name, each awaiting its request
 * before making the next, so the lock passes from one thread to the other at nearly every grant.
 */
import { once } from 'events';
import * as path from 'path';
import { Worker } from 'worker_threads';
import { timeAsync } from './clock';
import type { Case } from './measure';
import type { LockspaceModule } from './lockspace';
import { median, summarize, type Summary } from './stats';
import { GO, navigatorLocks, READY, type WebLocksImpl, type WebLocksRun, type WebLocksWorkerData } from './web-locks-protocol';

/** Why the Web Locks figure cannot be measured here, or undefined when it can. */
export function webLocksSkipReason(): string | undefined {
  if (navigatorLocks()) return undefined;
  return `Web Locks (figure 9) skipped: Node ${process.version} has no navigator.locks (Node >= 24.5 has)`;
}

const nothing = async (): Promise<void> => undefined;

export function webLocksCases(lockspace: LockspaceModule, dir: string): Case[] {
  const navigator = navigatorLocks();
  if (!navigator) return [];
  const locks = lockspace.LockSpace.open(dir).locks;
  return [
    {
      id: 'node:navigator-locks',
      label: 'navigator.locks.request (one process only)',
      group: 'peer',
      run: (n) => timeAsync(n, () => navigator.request('cycle', nothing)),
    },
    {
      id: 'lockspace:web-locks',
      label: 'lockspace ls.locks.request',
      group: 'lockspace',
      run: (n) => timeAsync(n, () => locks.request('cycle', nothing)),
    },
  ];
}

export interface WebLocksHandoffResult {
  rounds: number;
  /** ns per request (both threads' requests counted), per implementation. */
  lockspace: Summary;
  navigator: Summary;
  /** Median of the per-repetition ratios lockspace / navigator. */
  ratio: number;
}

/** One run of both workers: ns per request. */
async function handoffRun(workers: Worker[], control: Int32Array, impl: WebLocksImpl, rounds: number, run: number): Promise<number> {
  Atomics.store(control, READY, 0);
  const done = workers.map((w) => once(w, 'message') as Promise<[number]>);
  for (const w of workers) w.postMessage({ impl, name: `handoff-${impl}`, rounds, run } satisfies WebLocksRun);
  while (Atomics.load(control, READY) < workers.length) await new Promise((resolve) => setImmediate(resolve));
  Atomics.store(control, GO, run);
  Atomics.notify(control, GO);
  const elapsed = await Promise.all(done);
  return Math.max(...elapsed.map(([ns]) => ns)) / (rounds * workers.length);
}

export async function runWebLocksHandoff(dir: string, rounds: number, reps: number): Promise<WebLocksHandoffResult> {
  const control = new Int32Array(new SharedArrayBuffer(8));
  const data: WebLocksWorkerData = { dir, control: control.buffer as SharedArrayBuffer };
  const script = path.join(__dirname, 'web-locks-worker.js');
  const workers = [0, 1].map(() => new Worker(script, { workerData: data }));
  const samples: Record<WebLocksImpl, number[]> = { lockspace: [], navigator: [] };
  try {
    let run = 0;
    // A warm-up run of each, then the repetitions, the two implementations back to back.
    for (let rep = 0; rep <= reps; rep++) {
      for (const impl of ['navigator', 'lockspace'] as const) {
        const ns = await handoffRun(workers, control, impl, rounds, ++run);
        if (rep > 0) samples[impl].push(ns);
      }
    }
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
  return {
    rounds,
    lockspace: summarize(samples.lockspace),
    navigator: summarize(samples.navigator),
    ratio: median(samples.lockspace.map((ns, i) => ns / samples.navigator[i])),
  };
}
