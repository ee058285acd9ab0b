/* Network file systems (NFS, CIFS, FUSE): asynchronous calls run their syscalls on libuv's threadpool,
 * including the first attempt of a waiting acquire and release(name, owner), and no idle descriptors
 * are kept. This machine has no NFS mount, so the file system is declared remote with
 * _debug.setForceRemote (process-wide: Jest runs this file in its own process); the locks are real. */
import { spawnSync } from 'child_process';
import { pbkdf2 } from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { Lease, LockSpace } from '../lib';
import { _debug } from '../lib/internal';
import {
  catchErr,
  countFds,
  DIST_INDEX,
  DIST_INTERNAL,
  expectTableEmpty,
  Holder,
  outsideProbe,
  spawnPythonHolder,
  stats,
  useTmpDir,
  waitFor,
} from './helpers';

const tmp = useTmpDir();

beforeAll(() => _debug.setForceRemote(true));
afterAll(() => _debug.setForceRemote(false));

/** Keeps every libuv threadpool thread busy for a while: work queued now runs after it. */
function occupyThreadpool(): Promise<unknown> {
  const size = Number(process.env.UV_THREADPOOL_SIZE) || 4;
  return Promise.all(
    Array.from({ length: size }, () => new Promise((resolve) => pbkdf2('x', 'y', 400_000, 32, 'sha512', resolve))),
  );
}

test('a released resource keeps no idle descriptor', async () => {
  const ls = LockSpace.open(tmp.dir);
  await ls.create('r');
  // The first child process opens libuv's SIGCHLD pipe for good: spawn one before counting.
  expect(await outsideProbe(path.join(tmp.dir, 'r'))).toBe('locked');
  const before = countFds();
  const l = await ls.acquire('r');
  expect(await outsideProbe(path.join(tmp.dir, 'r'))).toBe('busy');
  await l.release();
  expect(stats().idleFds).toBe(0);
  expect(await outsideProbe(path.join(tmp.dir, 'r'))).toBe('locked');
  // (the probe's pipes close asynchronously)
  await waitFor(() => countFds() === before, 'descriptors back to their number before the acquire');
});

test('acquire, EBUSY, create and delete go through the threadpool with the usual results', async () => {
  const ls = LockSpace.open(tmp.dir);
  await ls.create('r');
  expect((await catchErr(() => ls.create('r'))).code).toBe('EEXIST');
  const l = await ls.acquire('r', { owner: 'a' });
  const busy = await catchErr(() => ls.acquire('r', { owner: 'b' }));
  expect(busy.code).toBe('EBUSY');
  expect(busy.heldByThisProcess).toBe(true);
  expect((await catchErr(() => ls.delete('r'))).code).toBe('EBUSY');
  await l.release();
  await ls.delete('r');
  expect((await catchErr(() => ls.acquire('r'))).code).toBe('ENOENT');
});

test('release(name, owner) runs on the threadpool; ERR_LOCK_NOT_HELD for another owner', async () => {
  const ls = LockSpace.open(tmp.dir);
  const l = await ls.acquire('r', { owner: 'vm1', autoCreate: true });
  const e = await catchErr(() => ls.release('r', 'vm2'));
  expect(e.code).toBe('ERR_LOCK_NOT_HELD');
  expect(l.released).toBe(false);
  await ls.release('r', 'vm1');
  expect(l.released).toBe(true);
  // autoCreate on a network file system: the file stays, unlocked (another host may wait on its inode)
  expect(fs.existsSync(path.join(tmp.dir, 'r'))).toBe(true);
  expect(await outsideProbe(path.join(tmp.dir, 'r'))).toBe('locked');
});

test('releaseOwner runs on the threadpool', async () => {
  const ls = LockSpace.open(tmp.dir);
  const a = await ls.acquire('a', { owner: 'vm', autoCreate: true });
  const b = await ls.acquire('b', { owner: 'vm', autoCreate: true });
  expect(await ls.releaseOwner('vm')).toBe(2);
  expect(a.released && b.released).toBe(true);
  expect(fs.readdirSync(tmp.dir).sort()).toEqual(['a', 'b']); // autoCreate files stay on network file systems
  expect(await outsideProbe(path.join(tmp.dir, 'a'))).toBe('locked');
  expect(await ls.releaseOwner('vm')).toBe(0);
});

/** Runs fn while a python process holds resource 'r' of a fresh remote lockspace exclusively. */
async function whileHeldOutside(fn: (ls: LockSpace, file: string, holder: Holder) => Promise<void>): Promise<void> {
  const ls = LockSpace.open(tmp.dir);
  await ls.create('r');
  const file = path.join(tmp.dir, 'r');
  const holder = await spawnPythonHolder(file);
  try {
    await fn(ls, file, holder);
  } finally {
    await holder.kill();
  }
}

test('a wait on another process is granted when it lets go', () =>
  whileHeldOutside(async (ls, file, holder) => {
    const p = ls.acquire('r', { wait: true });
    await waitFor(() => stats().kernelWaits === 1, 'kernel wait');
    await holder.release();
    const l = await p;
    expect(await outsideProbe(file, 'shared')).toBe('busy');
    await l.release();
  }));

test('a wait times out on another process; nothing is left behind', () =>
  whileHeldOutside(async (ls) => {
    const e = await catchErr(() => ls.acquire('r', { wait: true, timeout: 50 }));
    expect(e.code).toBe('ETIMEDOUT');
    await expectTableEmpty(tmp.dir);
  }));

test('in-process hand-off to a remote wait', async () => {
  const ls = LockSpace.open(tmp.dir);
  const first = await ls.acquire('r', { owner: 'a', autoCreate: true });
  const second = ls.acquire('r', { owner: 'b', wait: true, shared: true });
  await waitFor(() => stats().waiters === 1, 'queued');
  await first.release();
  const l = await second;
  expect(l.shared).toBe(true);
  expect(await outsideProbe(path.join(tmp.dir, 'r'), 'exclusive')).toBe('busy');
  await l.release();
});

test('an abort before the threadpool has run the first attempt withdraws it: nothing held, nothing queued', async () => {
  const ls = LockSpace.open(tmp.dir);
  await ls.create('r');
  const busy = occupyThreadpool();
  const ac = new AbortController();
  const p = ls.acquire('r', { wait: true, signal: ac.signal });
  ac.abort();
  const e = await catchErr(() => p);
  expect(e.code).toBe('ABORT_ERR');
  await busy;
  // The threadpool has run it by now and must have dropped it.
  await waitFor(async () => (await outsideProbe(path.join(tmp.dir, 'r'))) === 'locked', 'file free');
  await expectTableEmpty(tmp.dir);
});

test('a timeout that fires before the first attempt ran withdraws it as well', async () => {
  const ls = LockSpace.open(tmp.dir);
  await ls.create('r');
  const busy = occupyThreadpool();
  const e = await catchErr(() => ls.acquire('r', { wait: true, timeout: 0 }));
  expect(e.code).toBe('ETIMEDOUT');
  await busy;
  await expectTableEmpty(tmp.dir);
  const l: Lease = await ls.acquire('r', { wait: true });
  await l.release();
});

test('a process with remote waits exits on its own once they are settled', () => {
  const script = `
    const { LockSpace } = require(${JSON.stringify(DIST_INDEX)});
    const { _debug } = require(${JSON.stringify(DIST_INTERNAL)});
    _debug.setForceRemote(true);
    (async () => {
      const ls = LockSpace.open(${JSON.stringify(tmp.dir)});
      const a = await ls.acquire('r', { owner: 'a', autoCreate: true });
      const waiting = ls.acquire('r', { owner: 'b', wait: true });
      setTimeout(() => a.release(), 50);
      (await waiting).releaseSync(); // the autoCreate file stays on a network file system
      const ac = new AbortController();
      // Aborted before the threadpool ran it, or granted just before: either way, settled.
      const aborted = ls.acquire('r', { wait: true, signal: ac.signal }).then((l) => (l.releaseSync(), 'granted'), (e) => e.code);
      ac.abort();
      console.log('done', await aborted);
    })();
  `;
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 20000 });
  expect(r.error).toBeUndefined();
  expect(r.status).toBe(0);
  expect(r.stdout.trim()).toMatch(/^done (ABORT_ERR|granted)$/);
});

test("path mode: a lease releases on the threadpool when its file is remote, whatever the directory handle says", async () => {
  // The path-mode handle is opened while nothing is remote; the file then is (as on an NFS mount
  // under a local root).
  _debug.setForceRemote(false);
  const ls = LockSpace.open(null);
  _debug.setForceRemote(true);
  const file = path.join(tmp.dir, 'disk.img');
  fs.writeFileSync(file, '');
  const lease = await ls.acquire(file);
  expect(await outsideProbe(file)).toBe('busy');
  const busy = occupyThreadpool();
  const releasing = lease.release();
  // Queued behind the busy threadpool, not run on this thread: still held.
  expect(stats().leases).toBe(1);
  await releasing;
  expect(stats().leases).toBe(0);
  await busy;
  expect(await outsideProbe(file)).toBe('locked');
});

test('holder records: written through the threadpool, counted on, seen by inspect and another process', async () => {
  const ls = LockSpace.open(tmp.dir, { records: true });
  await ls.create('r');
  const first = await ls.acquire('r', { label: 'remote-1' });
  const info = await ls.inspect('r');
  expect(info.records).toMatchObject([{ pid: process.pid, label: 'remote-1', mode: 'exclusive', generation: first.generation }]);
  const r = spawnSync(process.execPath, [path.join(__dirname, '../dist/lib/cli.js'), 'status', tmp.dir, '--json'], { encoding: 'utf8' });
  expect(JSON.parse(r.stdout).resources[0].records).toMatchObject([{ pid: process.pid, label: 'remote-1' }]);
  await first.release();
  const second = await ls.acquire('r', { wait: true, ifGeneration: first.generation! });
  expect(second.generation).toBe(first.generation! + 1n);
  await second.release();
  expect(await catchErr(() => ls.acquire('r', { ifGeneration: first.generation! }))).toMatchObject({ code: 'ERR_GENERATION_CHANGED' });
  expect(await outsideProbe(path.join(tmp.dir, 'r'))).toBe('locked'); // the refused grant holds nothing
  expect(fs.statSync(path.join(tmp.dir, 'r')).size).toBe(1 << 20); // sized past Gluster's quick-read
});
