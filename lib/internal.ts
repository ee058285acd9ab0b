/*
 * lockspace/internal: hooks for lockspace's own tests, benchmarks and diagnostics. Not part of the
 * public API: no compatibility promise, and nothing here is needed to use lockspace.
 */
import { invalidArgValue } from './errors';
import { lockFileLimits } from './locks';
import { binding, NativeStats } from './native';

export type { NativeStats } from './native';

/** Introspection of the process-wide native table. */
export const _debug = {
  stats(): NativeStats {
    return binding.stats();
  },
  /** How many unlocked descriptors are kept for fast re-acquisition (default 1024; 0 disables). */
  setIdleFdLimit(limit: number): void {
    if (typeof limit !== 'number' || !Number.isInteger(limit) || limit < 0) {
      throw invalidArgValue('limit', limit, 'must be a non-negative integer');
    }
    binding.setIdleLimit(limit);
  },
  /** Treat every file system as a network one (syscalls of async calls on libuv's threadpool, no
   *  idle descriptors). Directory lockspaces opened afterwards, and every path-mode file, in every thread. */
  setForceRemote(on: boolean): void {
    if (typeof on !== 'boolean') throw invalidArgValue('on', on, 'must be a boolean');
    binding.setForceRemote(on);
  },
  /** ls.locks in this thread: how long an idle lock file stays (between 1 and 2 sweeps) and how many
   *  idle ones a manager keeps at most (beyond, the oldest are deleted at once; 0: at each release). */
  setLockFileLimits(limits: { sweepMs?: number; maxIdleFiles?: number }): void {
    const { sweepMs = lockFileLimits.sweepMs, maxIdleFiles = lockFileLimits.maxIdleFiles } = limits;
    if (!Number.isInteger(sweepMs) || sweepMs < 1) throw invalidArgValue('sweepMs', sweepMs, 'must be a positive integer');
    if (!Number.isInteger(maxIdleFiles) || maxIdleFiles < 0) {
      throw invalidArgValue('maxIdleFiles', maxIdleFiles, 'must be a non-negative integer');
    }
    Object.assign(lockFileLimits, { sweepMs, maxIdleFiles });
  },
};
