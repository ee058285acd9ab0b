/* The name is the identity: while a lease on a name is held, the lock is on the file that name reaches,
 * whatever happens to files and directories underneath. Every grant path (fresh open, idle-fd reuse,
 * shared join, FIFO hand-off, kernel-wait grant, alias) is exercised with the file renamed over or
 * unlinked in between, and the lockspace directory renamed, removed, recreated or replaced by a symlink.
 * Exclusion is always checked from another process (python fcntl.lockf). */
import * as fs from 'fs';
import * as path from 'path';
import { LockSpace } from '../lib';
import { catchErr, errnoOf, outsideProbe, spawnPythonHolder, stats, track, useTmpDir, waitFor } from './helpers';

/** Puts a new file in place of `file` (rename over it): the old inode lives on, unnamed. */
function renameOver(file: string): void {
  fs.writeFileSync(`${file}.new`, '');
  fs.renameSync(`${file}.new`, file);
}

describe('a held file replaced or unlinked underneath', () => {
  const tmp = useTmpDir();

  test('FIFO hand-off: a waiter queued before a rename-over gets the file the name reaches now', async () => {
    const ls = LockSpace.open(tmp.dir);
    const x = path.join(tmp.dir, 'x');
    ls.createSync('x');
    const first = ls.acquireSync('x');
    const waiter = track(ls.acquire('x', { wait: true }));
    await waitFor(() => stats().waiters === 1, 'the waiter to queue');
    renameOver(x);
    first.releaseSync();
    const lease = await waiter.promise;
    expect(await outsideProbe(x)).toBe('busy');
    lease.releaseSync();
    expect(await outsideProbe(x)).toBe('locked');
  });

  test('shared join: a new shared acquire after a rename-over locks the new file', async () => {
    const ls = LockSpace.open(tmp.dir);
    const x = path.join(tmp.dir, 'x');
    ls.createSync('x');
    const first = ls.acquireSync('x', { shared: true, owner: 'a' });
    renameOver(x);
    const second = ls.acquireSync('x', { shared: true, owner: 'b' });
    expect(await outsideProbe(x, 'exclusive')).toBe('busy');
    expect(await outsideProbe(x, 'shared')).toBe('locked');
    second.releaseSync();
    expect(await outsideProbe(x, 'exclusive')).toBe('locked');
    first.releaseSync();
  });

  test('shared join through the Promise API after a rename-over locks the new file', async () => {
    const ls = LockSpace.open(tmp.dir);
    const x = path.join(tmp.dir, 'x');
    ls.createSync('x');
    const first = await ls.acquire('x', { shared: true, owner: 'a' });
    renameOver(x);
    const second = await ls.acquire('x', { shared: true, owner: 'b', wait: true });
    expect(await outsideProbe(x, 'exclusive')).toBe('busy');
    await second.release();
    await first.release();
    expect(await outsideProbe(x, 'exclusive')).toBe('locked');
  });

  test('an exclusive holder of a renamed-over file does not make the new file busy', async () => {
    const ls = LockSpace.open(tmp.dir);
    const x = path.join(tmp.dir, 'x');
    ls.createSync('x');
    const first = ls.acquireSync('x', { owner: 'a' });
    renameOver(x);
    const second = ls.acquireSync('x', { owner: 'b' });
    expect(await outsideProbe(x)).toBe('busy');
    first.releaseSync();
    expect(await outsideProbe(x)).toBe('busy');
    second.releaseSync();
    expect(await outsideProbe(x)).toBe('locked');
  });

  test('autoCreate hand-off: after an unlink and a new file locked by another process, the waiter waits for it', async () => {
    const ls = LockSpace.open(tmp.dir);
    const x = path.join(tmp.dir, 'x');
    const first = ls.acquireSync('x', { autoCreate: true });
    const waiter = track(ls.acquire('x', { wait: true, autoCreate: true }));
    await waitFor(() => stats().waiters === 1, 'the waiter to queue');
    fs.unlinkSync(x);
    fs.writeFileSync(x, '');
    const other = await spawnPythonHolder(x);
    first.releaseSync();
    // The waiter now waits in the kernel for the new file, which the other process holds.
    await waitFor(() => stats().kernelWaits === 1, 'the waiter to wait for the other process');
    expect(waiter.settled).toBe(false);
    await other.release();
    const lease = await waiter.promise;
    expect(await outsideProbe(x)).toBe('busy');
    lease.releaseSync();
    expect(fs.existsSync(x)).toBe(false); // autoCreate: deleted with the last release
  });

  test('idle-fd reuse after a rename-over locks the new file', async () => {
    const ls = LockSpace.open(tmp.dir);
    const x = path.join(tmp.dir, 'x');
    ls.createSync('x');
    ls.acquireSync('x').releaseSync(); // leaves an idle fd on the first file
    renameOver(x);
    const lease = ls.acquireSync('x');
    expect(await outsideProbe(x)).toBe('busy');
    lease.releaseSync();
  });

  test('kernel-wait grant after the other process renames a new file over it locks the new file', async () => {
    const ls = LockSpace.open(tmp.dir);
    const x = path.join(tmp.dir, 'x');
    ls.createSync('x');
    const other = await spawnPythonHolder(x);
    const waiter = track(ls.acquire('x', { wait: true }));
    await waitFor(() => stats().kernelWaits === 1, 'the kernel wait');
    await other.releaseAfter('replace');
    const lease = await waiter.promise;
    expect(await outsideProbe(x)).toBe('busy');
    lease.releaseSync();
  });

  test('alias: a waiter that came through a hard link gets the file its name reaches after a rename-over', async () => {
    const ls = LockSpace.open(tmp.dir);
    const x = path.join(tmp.dir, 'x');
    const y = path.join(tmp.dir, 'y');
    ls.createSync('x');
    fs.linkSync(x, y);
    const first = ls.acquireSync('x');
    const waiter = track(ls.acquire('y', { wait: true }));
    await waitFor(() => stats().waiters === 1, 'the waiter to queue');
    renameOver(y);
    first.releaseSync();
    const lease = await waiter.promise;
    expect(lease.path).toBe(y);
    expect(await outsideProbe(y)).toBe('busy');
    expect(await outsideProbe(x)).toBe('locked');
    lease.releaseSync();
  });

  test('release by name and owner finds the lease on a renamed-over file', async () => {
    const ls = LockSpace.open(tmp.dir);
    const x = path.join(tmp.dir, 'x');
    ls.createSync('x');
    const first = ls.acquireSync('x', { owner: 'a' });
    renameOver(x);
    const second = ls.acquireSync('x', { owner: 'b' });
    ls.releaseSync('x', 'b');
    expect(second.released).toBe(true);
    expect(first.released).toBe(false);
    expect(await outsideProbe(x)).toBe('locked');
    ls.releaseSync('x', 'a');
    expect(first.released).toBe(true);
  });
});

describe('the lockspace directory changing underneath', () => {
  const tmp = useTmpDir();

  test('renamed away and made anew: a handle opened before and a new handle lock files in the new directory', async () => {
    const d = path.join(tmp.dir, 'locks');
    const before = LockSpace.open(d);
    before.createSync('x');
    before.acquireSync('x').releaseSync(); // an idle fd in the old directory
    fs.renameSync(d, `${d}.old`);
    fs.mkdirSync(d);
    const after = LockSpace.open(d);
    expect(after.directory).toBe(d);
    for (const ls of [before, after]) {
      const lease = ls.acquireSync('x', { autoCreate: true });
      expect(lease.path).toBe(path.join(d, 'x'));
      expect(fs.existsSync(path.join(d, 'x'))).toBe(true);
      expect(await outsideProbe(path.join(d, 'x'))).toBe('busy');
      expect(await outsideProbe(path.join(`${d}.old`, 'x'))).toBe('locked');
      lease.releaseSync();
    }
  });

  test('removed and made anew: acquire with an idle fd left from before works in the new directory', async () => {
    const d = path.join(tmp.dir, 'locks');
    const ls = LockSpace.open(d);
    ls.createSync('x');
    ls.acquireSync('x').releaseSync();
    fs.rmSync(d, { recursive: true });
    fs.mkdirSync(d);
    const lease = await LockSpace.open(d).acquire('x', { autoCreate: true });
    expect(await outsideProbe(path.join(d, 'x'))).toBe('busy');
    await lease.release();
    expect(fs.existsSync(path.join(d, 'x'))).toBe(false);
  });

  test('removed for good: a clear ENOENT that names the directory, and nothing left behind', async () => {
    const d = path.join(tmp.dir, 'locks');
    const ls = LockSpace.open(d);
    fs.rmSync(d, { recursive: true });
    for (const attempt of [() => ls.acquireSync('x', { autoCreate: true }), () => ls.acquire('x', { autoCreate: true })]) {
      const e = await catchErr(attempt);
      expect(e.code).toBe('ENOENT');
      expect(e.errno).toBe(errnoOf('ENOENT'));
      expect(e.path).toBe(path.join(d, 'x'));
      expect(e.message).toContain('lockspace directory');
    }
    expect(fs.existsSync(d)).toBe(false);
    expect(stats().resources).toBe(0);
  });

  test('replaced by a symlink: acquires lock the file behind the symlink, as another process would open it', async () => {
    const d = path.join(tmp.dir, 'locks');
    const elsewhere = path.join(tmp.dir, 'elsewhere');
    fs.mkdirSync(elsewhere);
    const ls = LockSpace.open(d);
    ls.acquireSync('x', { autoCreate: true }).releaseSync();
    fs.rmSync(d, { recursive: true });
    fs.symlinkSync(elsewhere, d);
    const lease = ls.acquireSync('x', { autoCreate: true });
    expect(await outsideProbe(path.join(elsewhere, 'x'))).toBe('busy');
    lease.releaseSync();
    expect(fs.existsSync(path.join(elsewhere, 'x'))).toBe(false);
  });
});
