/**
 * Loading lockspace at run time from dist/lib, so that the bench builds and measures its baselines
 * before the library exists. Its types are the library's own (type imports compile to nothing).
 */
import * as fs from 'fs';
import * as path from 'path';
import type * as Lockspace from '../lib/index';
import type { _debug } from '../lib/internal';

export type { AcquireOptions, Lease, LockSpace } from '../lib/index';
export type { NativeStats } from '../lib/internal';

/** The public module plus the introspection hooks of its internal entry. */
export type LockspaceModule = typeof Lockspace & { _debug: typeof _debug };

const ROOT = path.join(__dirname, '..', '..');
const REQUIRED = [path.join(ROOT, 'build', 'Release', 'lockspace.node'), path.join(ROOT, 'dist', 'lib', 'index.js')];

/** The lockspace module, or the reason it cannot be loaded. */
export function loadLockspace(): LockspaceModule | string {
  const missing = REQUIRED.filter((file) => !fs.existsSync(file));
  if (missing.length > 0) return `lockspace not built (missing ${missing.map((f) => path.relative(ROOT, f)).join(', ')})`;
  try {
    const internal = require(path.join(ROOT, 'dist', 'lib', 'internal.js')) as { _debug: typeof _debug };
    return { ...(require(REQUIRED[1]) as typeof Lockspace), _debug: internal._debug };
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
