/** What the hand-off measure (handoff.ts) shares with its worker threads and its child process. */

/** Indexes of the in-process round counters. */
export const HELD = 0;
export const QUEUED = 1;
export const DONE = 2;

export interface HandoffWorkerData {
  role: 'holder' | 'waiter';
  dir: string;
  name: string;
  rounds: number;
  control: SharedArrayBuffer;
  releasedAt: SharedArrayBuffer;
  latencies: SharedArrayBuffer;
}

export interface ChildParams {
  dir: string;
  name: string;
}
export type ChildCommand = { cmd: 'hold' } | { cmd: 'release'; afterMs?: number };
export type ChildReply = { ready: true } | { held: true } | { releasedAt: string };
