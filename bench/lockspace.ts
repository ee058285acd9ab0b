/**
 * The part of lockspace's API contract (notes/API.md) the bench uses, and its loader. lockspace is
 * loaded at run time from dist/lib so that the bench builds and measures its baselines before the
 * library exists.
 */
import * as fs from 'fs';
import * as path from 'path';

export interface Lease {
  readonly name: string;
  readonly released: boolean;
  release(): Promise<void>;
  releaseSync(): void;
}

export interface SyncAcquireOptions {
  shared?: boolean;
  autoCreate?: boolean;
  owner?: number | string;
}

export interface AcquireOptions extends SyncAcquireOptions {
  wait?: boolean;
  timeout?: number;
  signal?: AbortSignal;
}

export interface LockSpace {
  readonly directory: string | null;
  acquire(name: string, options?: AcquireOptions): Promise<Lease>;
  acquireSync(name: string, options?: SyncAcquireOptions): Lease;
  createSync(name: string): void;
}

export interface DebugStats {
  resources: number;
  leases: number;
  waiters: number;
  kernelWaits: number;
  idleFds: number;
  /** Not in the contract: bytes held by the native table, if lockspace ever counts them itself. */
  nativeBytes?: number;
  /** Not in the contract: malloc's bytes in use (mallinfo2().uordblks), process-wide. */
  heapBytes?: number;
}

export interface LockspaceModule {
  LockSpace: {
    open(directory: string | null, options?: { lockType?: 'posix' | 'ofd' }): LockSpace;
    closeIdleFds(): number;
  };
  _debug: { stats(): DebugStats };
}

const ROOT = path.join(__dirname, '..', '..');
const REQUIRED = [path.join(ROOT, 'build', 'Release', 'lockspace.node'), path.join(ROOT, 'dist', 'lib', 'index.js')];

/** The lockspace module, or the reason it cannot be loaded. */
export function loadLockspace(): LockspaceModule | string {
  const missing = REQUIRED.filter((file) => !fs.existsSync(file));
  if (missing.length > 0) return `lockspace not built (missing ${missing.map((f) => path.relative(ROOT, f)).join(', ')})`;
  try {
    // Test hooks live in the internal entry, beside the public one.
    const internal = require(path.join(ROOT, 'dist', 'lib', 'internal.js')) as Pick<LockspaceModule, '_debug'>;
    return { ...(require(REQUIRED[1]) as LockspaceModule), _debug: internal._debug };
  } catch (e) {
    return `lockspace failed to load: ${(e as Error).message.split('\n')[0]}`;
  }
}

/** For helper threads and processes, which only run when the parent already loaded lockspace. */
export function requireLockspace(): LockspaceModule {
  const mod = loadLockspace();
  if (typeof mod === 'string') throw new Error(mod);
  return mod;
}
