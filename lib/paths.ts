/*
 * Turning a path into the file it names, the way the kernel does: `a/link/../disk` is the `disk`
 * beside link's target, not `a/disk`. So nothing here removes `..` as text (node:path's resolve and
 * normalize do); relative paths are only prefixed with the current directory.
 */
import * as fs from 'node:fs';

import { LockspaceError } from './errors';

/** `path` made absolute by prefixing the current directory, with no other change. */
export function absoluteAsKernel(path: string): string {
  if (path.startsWith('/')) return path;
  const cwd = process.cwd();
  return cwd.endsWith('/') ? cwd + path : `${cwd}/${path}`;
}

/** Linux's limit on symlinks followed in one lookup. */
const MAX_SYMLINKS = 40;

/**
 * The canonical path of the file `path` reaches: realpath(3) of the whole path, or, when only the
 * last component is missing (a file not created yet), realpath of its directory joined with that
 * name. A dangling symlink as the last component is followed to where the kernel would create the
 * file. Fails with a LockspaceError (ENOENT when the directory does not exist).
 */
export function canonicalFile(path: string): string {
  let current = absoluteAsKernel(path);
  for (let links = 0; ; links++) {
    try {
      return fs.realpathSync.native(current);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw fromFsError(err, path);
    }
    const slash = current.replace(/\/+$/, '').lastIndexOf('/');
    const dir = slash <= 0 ? '/' : current.slice(0, slash);
    const base = current.slice(slash + 1);
    let realDir: string;
    try {
      realDir = fs.realpathSync.native(dir);
    } catch (err) {
      throw fromFsError(err, path);
    }
    const joined = realDir === '/' ? `/${base}` : `${realDir}/${base}`;
    let target: string;
    try {
      target = fs.readlinkSync(joined);
    } catch {
      return joined; // missing, not a symlink: the file the kernel would create
    }
    if (links >= MAX_SYMLINKS) throw fromFsError(Object.assign(new Error('too many symlinks'), { code: 'ELOOP' }), path);
    current = target.startsWith('/') ? target : `${realDir === '/' ? '' : realDir}/${target}`;
  }
}

/** A Node fs error as a LockspaceError with the same code, errno, syscall and path. */
export function fromFsError(err: unknown, path: string): LockspaceError {
  const e = err as NodeJS.ErrnoException;
  const code = typeof e.code === 'string' ? e.code : 'EIO';
  const errno = typeof e.errno === 'number' ? e.errno : undefined;
  const syscall = typeof e.syscall === 'string' ? e.syscall : 'realpath';
  const description = (e.message ?? '').replace(/^[A-Z0-9_]+: /, '').replace(/,.*$/, '') || 'error';
  return new LockspaceError(`${code}: ${description}, ${syscall} '${path}'`, { code, errno, syscall, path });
}

/** Where `path`'s directory part ends: `'/'` for a file at the root. */
function splitDir(path: string): [string, string] {
  const slash = path.lastIndexOf('/');
  return [slash <= 0 ? '/' : path.slice(0, slash), path.slice(slash + 1)];
}

const joinDir = (dir: string, base: string): string => (dir === '/' ? `/${base}` : `${dir}/${base}`);

/**
 * An absolute path with its directory resolved as the kernel resolves it (realpath) and its last
 * component as given: a resource's final symlink is never followed. When the directory cannot be
 * resolved the path is returned as given (the lock call then reports why).
 */
export function withCanonicalDir(path: string): string {
  const [dir, base] = splitDir(path);
  try {
    return joinDir(fs.realpathSync.native(dir), base);
  } catch {
    return path;
  }
}

/** withCanonicalDir on libuv's threadpool (a network file system may take seconds to answer). */
export async function withCanonicalDirAsync(path: string): Promise<string> {
  const [dir, base] = splitDir(path);
  try {
    return joinDir(await fs.promises.realpath(dir), base);
  } catch {
    return path;
  }
}

/** The file `path` reaches without following a final symlink, as `dev:ino` (exact: bigint), or
 *  undefined when nothing is there (or it cannot be looked at). */
export function fileIdentity(path: string): string | undefined {
  try {
    const st = fs.lstatSync(path, { bigint: true, throwIfNoEntry: false });
    return st && `${st.dev}:${st.ino}`;
  } catch {
    return undefined;
  }
}

/** fileIdentity on libuv's threadpool. */
export async function fileIdentityAsync(path: string): Promise<string | undefined> {
  try {
    const st = await fs.promises.lstat(path, { bigint: true });
    return `${st.dev}:${st.ino}`;
  } catch {
    return undefined;
  }
}
