/*
 * lockspace/internal: hooks for lockspace's own tests, benchmarks and diagnostics. Not part of the
 * public API: no compatibility promise, and nothing here is needed to use lockspace.
 */
import { invalidArgValue } from './errors';
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
};
