import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as nodePath from 'node:path';

import { invalidArgType, invalidArgValue } from './errors';
import { binding, NativeStats } from './native';
import { checkOptions } from './validate';

export { AbortError, LockspaceError } from './errors';
export { Lease, LockSpace } from './lockspace';
export type { AcquireOptions, AcquireSyncOptions, InspectInfo, LockHolder, LockSpaceOptions, LockType, Owner, ResourceInfo } from './lockspace';

export interface ResourceNameOptions {
  /** Resolve symlinks, `.` and `..` first (default true). Pass false to match virtlockd, which hashes
   *  the disk path exactly as configured. */
  canonicalize?: boolean;
}

/**
 * The resource name for a disk image (or any file): the lowercase SHA-256 hex of the path's bytes,
 * as libvirt's virtlockd names the files of its `file_lockspace_dir`.
 */
export function resourceNameForPath(path: string, options?: ResourceNameOptions): string {
  if (typeof path !== 'string') throw invalidArgType('path', 'of type string', path);
  if (path === '' || path.includes('\0')) throw invalidArgValue('path', path, 'must be a non-empty path without NUL bytes');
  const opts = checkOptions<ResourceNameOptions>(options, { canonicalize: 'boolean' }, 'resourceNameForPath');
  const subject = opts.canonicalize === false ? path : canonicalPath(path);
  return createHash('sha256').update(subject).digest('hex');
}

function canonicalPath(path: string): string {
  const absolute = nodePath.resolve(path);
  try {
    return fs.realpathSync.native(absolute);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    // A file not created yet: canonicalize its directory.
    return nodePath.join(fs.realpathSync.native(nodePath.dirname(absolute)), nodePath.basename(absolute));
  }
}

/** Introspection of the process-wide native table, for tests and diagnostics. */
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
  /** Tests: treat every file system as a network one (syscalls of async calls on libuv's threadpool,
   *  no idle descriptors). Affects LockSpace objects opened afterwards, in every thread. */
  setForceRemote(on: boolean): void {
    if (typeof on !== 'boolean') throw invalidArgValue('on', on, 'must be a boolean');
    binding.setForceRemote(on);
  },
};
