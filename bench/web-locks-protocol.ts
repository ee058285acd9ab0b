/** What the Web Locks hand-off measure (web-locks.ts) shares with its worker threads. */

/** Which manager a run uses: lockspace's `ls.locks` or Node's own `navigator.locks`. */
export type WebLocksImpl = 'lockspace' | 'navigator';

export interface WebLocksWorkerData {
  dir: string;
  /** Int32Array over it: [0] workers ready for the run, [1] the run number both may start. */
  control: SharedArrayBuffer;
}

/** One run: `rounds` requests of `name`, each awaited before the next. */
export interface WebLocksRun {
  impl: WebLocksImpl;
  name: string;
  rounds: number;
  run: number;
}

export const READY = 0;
export const GO = 1;

/** The minimal shape of a Web Locks manager both implementations have. */
export interface WebLockManager {
  request(name: string, callback: () => unknown): Promise<unknown>;
}

/** Node's `navigator.locks` (Node >= 24.5), or undefined. */
export function navigatorLocks(): WebLockManager | undefined {
  return (globalThis as { navigator?: { locks?: WebLockManager } }).navigator?.locks;
}
