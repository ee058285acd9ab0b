/* Paths resolve the way the kernel resolves them, in every library entry point that takes one:
 * `a/link/../x` is the `x` beside link's target, never `a/x`. Each result is checked against the
 * file the kernel reaches (python opens the spelled path and locks it from another process). */
import * as fs from 'fs';
import * as path from 'path';
import { LockSpace, resourceNameForPath } from '../lib';
import { outsideProbe, sha256hex, useTmpDir } from './helpers';

const tmp = useTmpDir();

/** tmp/a/link -> tmp/b/c, so tmp/a/link/.. is tmp/b for the kernel (and tmp/a as text). */
function layout(): { a: string; b: string } {
  const a = path.join(tmp.dir, 'a');
  const b = path.join(tmp.dir, 'b');
  fs.mkdirSync(a);
  fs.mkdirSync(path.join(b, 'c'), { recursive: true });
  fs.symlinkSync('../b/c', path.join(a, 'link'));
  return { a, b };
}

function inDir<T>(dir: string, fn: () => T): T {
  const before = process.cwd();
  process.chdir(dir);
  try {
    return fn();
  } finally {
    process.chdir(before);
  }
}

test('resourceNameForPath: link/.. is the parent of the target, for existing and missing files', () => {
  const { a, b } = layout();
  fs.writeFileSync(path.join(a, 'disk'), '');
  fs.writeFileSync(path.join(b, 'disk'), '');
  expect(resourceNameForPath(`${a}/link/../disk`)).toBe(sha256hex(path.join(b, 'disk')));
  expect(resourceNameForPath(`${a}/link/../new`)).toBe(sha256hex(path.join(b, 'new')));
  expect(resourceNameForPath(`${a}/link/./../c/../disk`)).toBe(sha256hex(path.join(b, 'disk')));
  expect(inDir(a, () => resourceNameForPath('link/../disk'))).toBe(sha256hex(path.join(b, 'disk')));
  // As virtlockd does, without canonicalizing: the bytes as given.
  expect(resourceNameForPath(`${a}/link/../disk`, { canonicalize: false })).toBe(sha256hex(`${a}/link/../disk`));
});

test('resourceNameForPath follows a dangling symlink to where the kernel would create the file', () => {
  const { a, b } = layout();
  fs.symlinkSync('../b/target', path.join(a, 'dangling'));
  expect(resourceNameForPath(path.join(a, 'dangling'))).toBe(sha256hex(path.join(b, 'target')));
  fs.symlinkSync('loop2', path.join(a, 'loop1'));
  fs.symlinkSync('loop1', path.join(a, 'loop2'));
  expect(() => resourceNameForPath(path.join(a, 'loop1'))).toThrow(expect.objectContaining({ code: 'ELOOP', name: 'LockspaceError' }));
});

test('LockSpace.open(a/link/../locks) locks files in the directory the kernel reaches', async () => {
  const { a, b } = layout();
  fs.mkdirSync(path.join(b, 'locks'));
  fs.mkdirSync(path.join(a, 'locks'));
  const ls = LockSpace.open(`${a}/link/../locks`);
  expect(ls.directory).toBe(path.join(b, 'locks'));
  const lease = ls.acquireSync('r', { autoCreate: true });
  expect(lease.path).toBe(path.join(b, 'locks', 'r'));
  expect(await outsideProbe(`${a}/link/../locks/r`)).toBe('busy');
  expect(fs.readdirSync(path.join(a, 'locks'))).toEqual([]);
  lease.releaseSync();
  // Relative, and created when missing: under the target's parent too.
  const rel = inDir(a, () => LockSpace.open('link/../fresh'));
  expect(rel.directory).toBe(path.join(b, 'fresh'));
  expect(fs.existsSync(path.join(a, 'fresh'))).toBe(false);
});

test('path mode locks the file the kernel opens for a/link/../disk', async () => {
  const { a, b } = layout();
  fs.writeFileSync(path.join(a, 'disk'), '');
  fs.writeFileSync(path.join(b, 'disk'), '');
  const ls = LockSpace.open(null);
  const lease = ls.acquireSync(`${a}/link/../disk`);
  expect(await outsideProbe(path.join(b, 'disk'))).toBe('busy');
  expect(await outsideProbe(path.join(a, 'disk'))).toBe('locked');
  lease.releaseSync();
});
