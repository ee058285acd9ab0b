/**
 * Figure 5, contention: N worker threads hammer a set of resources with a random exclusive/shared mix;
 * total throughput is compared with the same loop in one worker, in interleaved samples.
 */
import { once } from 'events';
import * as path from 'path';
import { Worker } from 'worker_threads';
import { nowNs } from './clock';
import type { ContentionWorkerData, RunCommand, RunReport } from './contention-protocol';
import type { LockspaceModule } from './lockspace';
import { Summary, summarize } from './stats';

export interface ContentionResult {
  threads: number;
  resources: number;
  exclusiveShare: number;
  /** ops/s of all threads together. */
  manyThreads: Summary;
  oneThread: Summary;
  ratio: number;
  violations: number;
  errors: number;
  firstError?: string;
}

const THREADS = 8;
const RESOURCES = 64;
const START_DELAY_MS = 20;

async function startWorkers(count: number, data: ContentionWorkerData): Promise<Worker[]> {
  const script = path.join(__dirname, 'contention-worker.js');
  return Promise.all(
    Array.from({ length: count }, async () => {
      const worker = new Worker(script, { workerData: data });
      const [message] = await once(worker, 'message');
      if (message !== 'ready') throw new Error(`contention worker: ${String(message)}`);
      return worker;
    }),
  );
}

interface Sample {
  opsPerSec: number;
  violations: number;
  errors: number;
  firstError?: string;
}

/** One sample: all workers start together; total ops/s over the wall time, violations and errors. */
async function sample(workers: Worker[], durationMs: number): Promise<Sample> {
  const startAt = nowNs() + BigInt(START_DELAY_MS * 1e6);
  const reports = await Promise.all(
    workers.map(async (worker) => {
      worker.postMessage({ startAt: String(startAt), durationMs } satisfies RunCommand);
      const [report] = await once(worker, 'message');
      return report as RunReport;
    }),
  );
  const end = reports.reduce((max, r) => (BigInt(r.endAt) > max ? BigInt(r.endAt) : max), startAt);
  const total = (key: 'ops' | 'violations' | 'errors') => reports.reduce((sum, r) => sum + r[key], 0);
  return {
    opsPerSec: total('ops') / (Number(end - startAt) / 1e9),
    violations: total('violations'),
    errors: total('errors'),
    firstError: reports.find((r) => r.firstError)?.firstError,
  };
}

/** Interleaved samples of the many-thread and the one-thread pools. */
async function sampleBoth(many: Worker[], one: Worker[], reps: number, durationMs: number) {
  const manySamples: number[] = [];
  const oneSamples: number[] = [];
  const all: Sample[] = [];
  for (let rep = 0; rep < reps; rep++) {
    for (const [workers, samples] of [[many, manySamples], [one, oneSamples]] as const) {
      const s = await sample(workers, durationMs);
      samples.push(s.opsPerSec);
      all.push(s);
    }
  }
  return {
    manyThreads: summarize(manySamples),
    oneThread: summarize(oneSamples),
    violations: all.reduce((sum, s) => sum + s.violations, 0),
    errors: all.reduce((sum, s) => sum + s.errors, 0),
    firstError: all.find((s) => s.firstError)?.firstError,
  };
}

export async function runContention(
  lockspace: LockspaceModule,
  dir: string,
  reps: number,
  durationMs: number,
): Promise<ContentionResult> {
  const ls = lockspace.LockSpace.open(dir);
  for (let i = 0; i < RESOURCES; i++) ls.createSync(`c${i}`);
  const data: ContentionWorkerData = {
    dir,
    resources: RESOURCES,
    exclusiveShare: 0.5,
    criticalSpins: 64,
    counters: new SharedArrayBuffer(4 * RESOURCES),
  };
  const many = await startWorkers(THREADS, data);
  const one = await startWorkers(1, data);
  try {
    const s = await sampleBoth(many, one, reps, durationMs);
    return {
      threads: THREADS,
      resources: RESOURCES,
      exclusiveShare: data.exclusiveShare,
      ...s,
      ratio: s.manyThreads.median / s.oneThread.median,
    };
  } finally {
    await Promise.all([...many, ...one].map((w) => w.terminate()));
  }
}
