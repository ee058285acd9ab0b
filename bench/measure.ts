/**
 * Per-operation cases, measured in interleaved rounds: every case takes one sample per round, so slow
 * drifts of a noisy shared machine hit all cases alike and ratios within the run stay meaningful.
 */
import { Summary, summarize } from './stats';

export type Group = 'C floor' | 'Node fs' | 'peer' | 'lockspace';

export interface Case {
  id: string;
  label: string;
  group: Group;
  /** Runs `iterations` operations and returns nanoseconds per operation. */
  run(iterations: number): number | Promise<number>;
  teardown?(): void | Promise<void>;
}

export interface CaseResult {
  id: string;
  label: string;
  group: Group;
  iterations: number;
  nsPerOp: Summary;
}

const MAX_ITERATIONS = 5_000_000;

/** Iterations that make one sample last about `sampleMs`. */
async function calibrate(c: Case, sampleMs: number): Promise<number> {
  let iterations = 8;
  for (;;) {
    const ns = await c.run(iterations);
    const totalMs = (ns * iterations) / 1e6;
    if (totalMs >= sampleMs / 8 || iterations >= MAX_ITERATIONS) {
      return Math.max(1, Math.min(MAX_ITERATIONS, Math.round((sampleMs * 1e6) / ns)));
    }
    iterations *= 8;
  }
}

export async function runCases(
  cases: readonly Case[],
  reps: number,
  sampleMs: number,
  progress: (message: string) => void,
): Promise<CaseResult[]> {
  const iterations = new Map<Case, number>();
  for (const c of cases) {
    progress(`calibrating ${c.label}`);
    const n = await calibrate(c, sampleMs);
    await c.run(n); // warm-up at full size
    iterations.set(c, n);
  }
  const samples = new Map<Case, number[]>(cases.map((c) => [c, []]));
  for (let round = 1; round <= reps; round++) {
    progress(`round ${round}/${reps}`);
    for (const c of cases) samples.get(c)!.push(await c.run(iterations.get(c)!));
  }
  for (const c of cases) await c.teardown?.();
  return cases.map((c) => ({
    id: c.id,
    label: c.label,
    group: c.group,
    iterations: iterations.get(c)!,
    nsPerOp: summarize(samples.get(c)!),
  }));
}
