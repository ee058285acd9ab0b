import { createHash } from 'node:crypto';

import { AbortError, isLockspaceError, LockspaceError } from './errors';
import { BoundSet, Lease, LeaseSet, LockSpace } from './lockspace';
import { webLockFileName } from './locks';
import { canonicalFile } from './paths';
import { checkPath, readOptions } from './validate';

export { AbortError, isLockspaceError, LockspaceError };
export type { LockspaceErrorCode } from './errors';
export { BoundSet, Lease, LeaseSet, LockSpace, webLockFileName };
export type {
  BoundTo,
  FencedMessage,
  HoldForBooleanWaitOptions,
  HoldForCommonOptions,
  HoldForNowOptions,
  HoldForOptions,
  HoldForWaitOptions,
  LostAction,
} from './bound';
export type { LockRequest } from './lease-set';
export type {
  AcquireAllOptions,
  AcquireAllSyncOptions,
  AcquireBooleanWaitOptions,
  AcquireNowOptions,
  AcquireOptions,
  AcquireSyncOptions,
  AcquireWaitOptions,
  LockSpaceOptions,
  LockType,
  ResourceInfo,
} from './options';
export type { Owner } from './validate';
export type { InspectInfo, LockHolder } from './inspect';
export type { HolderRecord } from './records';
export type { Lock, LockGrantedCallback, LockInfo, LockManager, LockManagerSnapshot, LockMode, LockOptions } from './locks';
export type { AcquireMessage, LostMessage, ReleaseMessage } from './diagnostics';

export interface ResourceNameOptions {
  /** Resolve the path as the kernel does first (symlinks, `.`, `..`; default true). Pass false to
   *  match virtlockd, which hashes the disk path exactly as configured. */
  canonicalize?: boolean | undefined;
}

/**
 * The resource name for a disk image (or any file): the lowercase SHA-256 hex of the path's bytes,
 * as libvirt's virtlockd names the files of its `file_lockspace_dir` (with `canonicalize: false`;
 * by default the path is first resolved to the file it reaches, so every spelling of one file gives
 * one name). A LockspaceError (e.g. ENOENT) when the path's directory does not exist.
 */
export function resourceNameForPath(path: string, options?: ResourceNameOptions): string {
  const p = checkPath('path', path)!;
  const opts = readOptions<ResourceNameOptions>(options, { canonicalize: 'boolean' }, 'resourceNameForPath');
  const subject = opts.canonicalize === false ? p : canonicalFile(p);
  return createHash('sha256').update(subject).digest('hex');
}

/** The default export is the module itself (`require('lockspace').default === require('lockspace')`),
 *  so `import lockspace from 'lockspace'` gives the same object in CommonJS (also without
 *  esModuleInterop) and in ES modules. */
const lockspace: {
  readonly AbortError: typeof AbortError;
  readonly BoundSet: typeof BoundSet;
  readonly isLockspaceError: typeof isLockspaceError;
  readonly Lease: typeof Lease;
  readonly LeaseSet: typeof LeaseSet;
  readonly LockSpace: typeof LockSpace;
  readonly LockspaceError: typeof LockspaceError;
  readonly resourceNameForPath: typeof resourceNameForPath;
  readonly webLockFileName: typeof webLockFileName;
} = module.exports;
export default lockspace;
// Not listed among the module's own names (Object.keys), as in the ES module's named exports.
Object.defineProperty(module.exports, 'default', { enumerable: false });
