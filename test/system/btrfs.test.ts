/* `lockspace status` on btrfs, where stat and /proc/locks name devices differently and inode numbers
 * repeat between subvolumes. Needs root, btrfs-progs and a loop device: run by `npm run test:system`
 * (installed for and run by .ci/run), not by `npm test`. Locks are taken by python fcntl.lockf. */
import * as fs from 'fs';
import * as path from 'path';
import { execFileSync } from 'child_process';
import { Holder, mkTmpDir, rmTmpDir, spawnPythonHolder } from '../helpers';
import { statusJson } from '../cli-helpers';

const holders: Holder[] = [];
afterEach(async () => {
  await Promise.all(holders.splice(0).map((h) => h.kill()));
});

async function hold(p: string): Promise<Holder> {
  const h = await spawnPythonHolder(p);
  holders.push(h);
  return h;
}

describe('btrfs', () => {
  let image: string;
  let mnt: string;
  let mounted = false;
  beforeAll(() => {
    const base = mkTmpDir('lockspace-btrfs-');
    image = path.join(base, 'fs.img');
    mnt = path.join(base, 'mnt');
    fs.mkdirSync(mnt);
    fs.writeFileSync(image, '');
    fs.truncateSync(image, 128 * 1024 * 1024);
    execFileSync('mkfs.btrfs', ['-q', image], { stdio: 'pipe' });
    execFileSync('mount', ['-o', 'loop', image, mnt], { stdio: 'pipe' });
    mounted = true;
    execFileSync('btrfs', ['subvolume', 'create', path.join(mnt, 'sub')], { stdio: 'pipe' });
  });
  afterAll(() => {
    // Whatever failed above, the image goes: it is 128 MiB in the temp directory.
    try {
      if (mounted) execFileSync('umount', [mnt], { stdio: 'pipe' });
    } finally {
      rmTmpDir(path.dirname(image));
    }
  });

  test('status finds locks at the top level and in a subvolume, and tells same-inode files apart', async () => {
    // The first file of each subvolume gets inode 257: /proc/locks shows both as <superblock dev>:257.
    const top = path.join(mnt, 'top');
    const sub = path.join(mnt, 'sub', 'first');
    fs.writeFileSync(top, '');
    fs.writeFileSync(sub, '');
    fs.writeFileSync(path.join(mnt, 'sub', 'second'), '');
    expect(fs.statSync(top).ino).toBe(fs.statSync(sub).ino);
    expect(fs.statSync(top).dev).not.toBe(fs.statSync(sub).dev);

    const h = await hold(top);
    const atTop = statusJson([mnt]);
    expect(atTop.source).toBe('lock-query');
    expect(atTop.resources).toEqual([
      { name: 'top', path: top, state: 'exclusive', holders: [{ pid: h.pid, command: expect.stringMatching(/^python/), type: 'POSIX', mode: 'exclusive' }], waiters: [], records: [] },
    ]);
    // sub/first has the same inode number under the same superblock device, but is free.
    const inSub = statusJson([path.join(mnt, 'sub')]);
    expect(inSub.resources.map((r: any) => [r.name, r.state])).toEqual([
      ['first', 'free'],
      ['second', 'free'],
    ]);

    const h2 = await hold(sub);
    const inSub2 = statusJson([path.join(mnt, 'sub')]);
    expect(inSub2.resources[0]).toMatchObject({ name: 'first', state: 'exclusive' });
    // /proc/locks shows two exclusive holders of <dev>:257 (top's and this one); the probe tells which.
    expect(inSub2.resources[0].holders.map((x: any) => x.pid)).toEqual([h2.pid]);
    expect(inSub2.resources[1]).toMatchObject({ name: 'second', state: 'free' });
    await h.release();
    // top is free now; sub/first's lock (same inode number) must not make it look held.
    expect(statusJson([mnt]).resources).toEqual([{ name: 'top', path: top, state: 'free', holders: [], waiters: [], records: [] }]);
  });
});
