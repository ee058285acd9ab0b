/* Each failing system call reports its own errno, in the sync and async API alike: a code read from a
 * stale or lost errno (EUNKNOWN, errno 0, or a success) is the worst kind of wrong answer. The EACCES
 * cases run in a child process as an unprivileged user: `nobody` when the tests run as root (root
 * passes permission checks), else the test's own user. */
import * as fs from 'fs';
import * as path from 'path';
import { spawnSync } from 'child_process';
import { LockSpace } from '../lib';
import { useTmpDir, catchErr, errnoOf, DIST_INDEX } from './helpers';

const tmp = useTmpDir();

function expectError(e: any, code: string, syscall: string, file: string) {
  expect({ code: e.code, errno: e.errno, syscall: e.syscall, path: e.path }).toEqual({
    code,
    errno: errnoOf(code),
    syscall,
    path: file,
  });
}

/** Both forms of one operation: the sync call and the Promise. */
async function bothFail(sync: () => unknown, promised: () => Promise<unknown>, code: string, syscall: string, file: string) {
  expectError(await catchErr(sync), code, syscall, file);
  expectError(await catchErr(promised), code, syscall, file);
}

test('a missing file: ENOENT from open (acquire) and stat (inspect)', async () => {
  const ls = LockSpace.open(tmp.dir);
  const file = path.join(tmp.dir, 'missing');
  await bothFail(() => ls.acquireSync('missing'), () => ls.acquire('missing'), 'ENOENT', 'open', file);
  await bothFail(() => ls.acquireSync('missing', { shared: true }), () => ls.acquire('missing', { shared: true }), 'ENOENT', 'open', file);
  await bothFail(() => ls.inspectSync('missing'), () => ls.inspect('missing'), 'ENOENT', 'stat', file);
  expect(fs.readdirSync(tmp.dir)).toEqual([]);
});

test('an existing file: create gives EEXIST and leaves the file as it was', async () => {
  const ls = LockSpace.open(tmp.dir);
  const file = path.join(tmp.dir, 'disk.img');
  fs.writeFileSync(file, 'data');
  await bothFail(() => ls.createSync('disk.img'), () => ls.create('disk.img'), 'EEXIST', 'open', file);
  expect(fs.readFileSync(file, 'utf8')).toBe('data');
});

test('a regular file where a directory should be: ENOTDIR', async () => {
  const ls = LockSpace.open(null);
  fs.writeFileSync(path.join(tmp.dir, 'plain'), '');
  const file = path.join(tmp.dir, 'plain', 'disk.img');
  await bothFail(() => ls.acquireSync(file), () => ls.acquire(file), 'ENOTDIR', 'open', file);
  await bothFail(() => ls.acquireSync(file, { autoCreate: true }), () => ls.acquire(file, { autoCreate: true }), 'ENOTDIR', 'open', file);
  await bothFail(() => ls.inspectSync(file), () => ls.inspect(file), 'ENOTDIR', 'stat', file);
});

test('a symlink loop in the path: ELOOP, and nothing created', async () => {
  const ls = LockSpace.open(null);
  fs.symlinkSync('loop', path.join(tmp.dir, 'loop'));
  const file = path.join(tmp.dir, 'loop', 'disk.img');
  await bothFail(() => ls.acquireSync(file), () => ls.acquire(file), 'ELOOP', 'open', file);
  await bothFail(() => ls.acquireSync(file, { autoCreate: true }), () => ls.acquire(file, { autoCreate: true }), 'ELOOP', 'open', file);
  await bothFail(() => ls.inspectSync(file), () => ls.inspect(file), 'ELOOP', 'stat', file);
  expect(fs.readdirSync(tmp.dir)).toEqual(['loop']);
});

test('a lease whose file was unlinked: verify reports ENOENT as the cause', async () => {
  const ls = LockSpace.open(tmp.dir);
  const lease = ls.acquireSync('disk.img', { autoCreate: true });
  fs.unlinkSync(path.join(tmp.dir, 'disk.img'));
  const e = await catchErr(() => lease.verify());
  expect(e.code).toBe('ERR_LOCK_LOST');
  expect(e.cause.code).toBe('ENOENT');
  lease.releaseSync();
});

/* ------------------------------------------------------------------ EACCES, as an unprivileged user */

const asRoot = process.getuid!() === 0;
const NOBODY = 65534;

// Runs each operation (sync and Promise) in a child as the unprivileged user; prints one JSON line each.
// As root, the child drops to nobody once the package is loaded: the checkout may lie where nobody
// cannot read.
const CHILD = `
const { LockSpace } = require(process.argv[1]);
const [ops, dropTo] = [JSON.parse(process.argv[2]), Number(process.argv[3])];
if (dropTo) {
  process.setgroups([]);
  process.setgid(dropTo);
  process.setuid(dropTo);
}
(async () => {
  for (const [method, directory, name] of ops) {
    const ls = LockSpace.open(directory);
    let out;
    try { await ls[method](name); out = { ok: true }; }
    catch (e) { out = { code: e.code, errno: e.errno, syscall: e.syscall, path: e.path }; }
    console.log(JSON.stringify(out));
  }
})();
`;

function runUnprivileged(ops: [string, string, string][]): any[] {
  const dropTo = asRoot ? NOBODY : 0;
  const r = spawnSync(process.execPath, ['-e', CHILD, DIST_INDEX, JSON.stringify(ops), String(dropTo)], { encoding: 'utf8' });
  expect({ status: r.status, signal: r.signal, stderr: r.stderr }).toEqual({ status: 0, signal: null, stderr: '' });
  return r.stdout.trim().split('\n').map((l) => JSON.parse(l));
}

test('no permission: EACCES from stat, open, mknod and unlink, and nothing created or deleted', () => {
  // The test's directory is reachable; `private` is not (0700, or 0000 for a non-root owner); `shut`
  // can be read but not written; `shut/disk.img` can be read but not written.
  fs.chmodSync(tmp.dir, 0o755);
  const priv = path.join(tmp.dir, 'private');
  const shut = path.join(tmp.dir, 'shut');
  fs.mkdirSync(priv);
  fs.writeFileSync(path.join(priv, 'disk.img'), '');
  fs.chmodSync(priv, asRoot ? 0o700 : 0o000);
  fs.mkdirSync(shut);
  fs.writeFileSync(path.join(shut, 'disk.img'), 'data');
  fs.chmodSync(path.join(shut, 'disk.img'), 0o444);
  fs.chmodSync(shut, 0o555);
  try {
    const cases: [string, string, string, string, string][] = [
      // method, directory, name, code, syscall
      ['acquireSync', priv, 'disk.img', 'EACCES', 'open'],
      ['acquire', priv, 'disk.img', 'EACCES', 'open'],
      ['inspectSync', priv, 'disk.img', 'EACCES', 'stat'],
      ['inspect', priv, 'disk.img', 'EACCES', 'stat'],
      ['acquireSync', shut, 'disk.img', 'EACCES', 'open'],
      ['acquire', shut, 'disk.img', 'EACCES', 'open'],
      ['createSync', shut, 'new.img', 'EACCES', 'open'],
      ['create', shut, 'new.img', 'EACCES', 'open'],
      ['deleteSync', shut, 'disk.img', 'EACCES', 'open'],
      ['delete', shut, 'disk.img', 'EACCES', 'open'],
    ];
    const got = runUnprivileged(cases.map(([method, dir, name]) => [method, dir, name]));
    expect(got).toEqual(
      cases.map(([, dir, name, code, syscall]) => ({ code, errno: errnoOf(code), syscall, path: path.join(dir, name) })),
    );
  } finally {
    fs.chmodSync(priv, 0o700);
    fs.chmodSync(shut, 0o755);
  }
  expect(fs.readdirSync(shut)).toEqual(['disk.img']);
  expect(fs.readFileSync(path.join(shut, 'disk.img'), 'utf8')).toBe('data');
});
