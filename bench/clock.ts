/** Monotonic clock helpers. process.hrtime is CLOCK_MONOTONIC: comparable across threads and processes. */

export function nowNs(): bigint {
  return process.hrtime.bigint();
}

export function elapsedNs(start: bigint): number {
  return Number(process.hrtime.bigint() - start);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Blocks the calling thread (fine in a worker that has nothing else to do). */
export function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** ns per op of `iterations` synchronous calls of `op`. */
export function timeSync(iterations: number, op: () => void): number {
  const start = nowNs();
  for (let i = 0; i < iterations; i++) op();
  return elapsedNs(start) / iterations;
}

/** ns per op of `iterations` sequential awaited calls of `op`. */
export async function timeAsync(iterations: number, op: () => Promise<unknown>): Promise<number> {
  const start = nowNs();
  for (let i = 0; i < iterations; i++) await op();
  return elapsedNs(start) / iterations;
}
