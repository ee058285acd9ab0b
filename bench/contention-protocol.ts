/** What the contention measure (contention.ts) shares with its worker threads. */

export interface ContentionWorkerData {
  dir: string;
  resources: number;
  exclusiveShare: number;
  criticalSpins: number;
  counters: SharedArrayBuffer;
}

export interface RunCommand {
  /** process.hrtime.bigint() at which every worker starts, as a string. */
  startAt: string;
  durationMs: number;
}

export interface RunReport {
  ops: number;
  violations: number;
  /** Acquires or releases that threw (they should not: every acquire waits). */
  errors: number;
  firstError?: string;
  endAt: string;
}
