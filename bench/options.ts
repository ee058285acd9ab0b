/** Command line of `npm run bench -- [--quick] [--json]` and the effort each mode spends. */
import type { CancelOptions } from './cancel';

export interface BenchOptions {
  quick: boolean;
  json: boolean;
  /** Repetitions of every measure; the median is reported. */
  reps: number;
  /** Target wall time of one sample of a per-op case. */
  sampleMs: number;
  /** Wall time of one contention sample. */
  contentionMs: number;
  handoffRounds: number;
  crossProcessRounds: number;
  /** How long the other process holds the lock while we measure the waiter's CPU time. */
  idleWaitMs: number;
  idleWaitRounds: number;
  scaleLevels: number[];
  cancel: CancelOptions;
  /** Requests per worker thread in one run of the Web Locks hand-off. */
  webLocksRounds: number;
  /** `--only=web-locks`: only the Web Locks figure (its per-op pair and its hand-off). */
  only?: 'web-locks';
}

const USAGE = 'usage: npm run bench -- [--quick] [--json] [--only=web-locks]';

export function parseOptions(argv: readonly string[]): BenchOptions {
  for (const arg of argv) {
    if (arg !== '--quick' && arg !== '--json' && arg !== '--only=web-locks') throw new Error(`unknown argument ${arg}\n${USAGE}`);
  }
  const quick = argv.includes('--quick');
  return {
    quick,
    json: argv.includes('--json'),
    ...(argv.includes('--only=web-locks') && { only: 'web-locks' as const }),
    reps: quick ? 5 : 9,
    sampleMs: quick ? 40 : 200,
    contentionMs: quick ? 250 : 1000,
    handoffRounds: quick ? 1000 : 5000,
    crossProcessRounds: quick ? 200 : 1000,
    idleWaitMs: quick ? 200 : 500,
    idleWaitRounds: quick ? 2 : 5,
    scaleLevels: [10, 10_000, 50_000],
    webLocksRounds: quick ? 2000 : 10_000,
    cancel: { ownSignalWaits: [10_000, 40_000], sharedSignalWaits: 20_000, rounds: 3, budgetMs: quick ? 5000 : 30_000 },
  };
}
