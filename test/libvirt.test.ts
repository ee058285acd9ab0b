/* libvirt tests/virlockspacetest.c scenarios, restated against the lockspace API.
 * Every scenario runs twice: through the Promise API and through the *Sync API. */
import * as fs from 'fs';
import * as path from 'path';
import { LockSpace } from '../lib';
import { useTmpDir, outsideProbe, stats, catchErr, errnoOf } from './helpers';

type Opts = { shared?: boolean; autoCreate?: boolean; owner?: number | string };
interface Api {
  create(ls: LockSpace, name: string): Promise<void>;
  del(ls: LockSpace, name: string): Promise<void>;
  acquire(ls: LockSpace, name: string, opts: Opts): Promise<unknown>;
  release(ls: LockSpace, name: string, owner: number | string): Promise<void>;
}

const ASYNC: Api = {
  create: async (ls, n) => {
    await ls.create(n);
  },
  del: async (ls, n) => {
    await ls.delete(n);
  },
  acquire: async (ls, n, o) => ls.acquire(n, o),
  release: async (ls, n, owner) => {
    await ls.release(n, owner);
  },
};

const SYNC: Api = {
  create: async (ls, n) => {
    ls.createSync(n);
  },
  del: async (ls, n) => {
    ls.deleteSync(n);
  },
  acquire: async (ls, n, o) => ls.acquireSync(n, o),
  release: async (ls, n, owner) => {
    ls.releaseSync(n, owner);
  },
};

// libvirt passes geteuid() as the owner; a second owner stands in for its second shared acquire.
const OWNER = process.geteuid!();
const OWNER2 = OWNER + 1;

async function expectBusy(p: () => Promise<unknown>, file: string): Promise<void> {
  const e = await catchErr(p);
  expect(e.code).toBe('EBUSY');
  expect(e.errno).toBe(errnoOf('EBUSY'));
  expect(e.heldByThisProcess).toBe(true);
  expect(e.path).toBe(file);
}

describe.each([
  ['promise API', ASYNC],
  ['sync API', SYNC],
])('virlockspacetest (%s)', (_label, api) => {
  const tmp = useTmpDir();
  let LOCKSPACE_DIR: string;
  let FOO: string;

  beforeEach(() => {
    LOCKSPACE_DIR = path.join(tmp.dir, 'virlockspacedata');
    FOO = path.join(LOCKSPACE_DIR, 'foo');
  });


  test('Lockspace creation', () => {
    expect(fs.existsSync(LOCKSPACE_DIR)).toBe(false);
    const ls = LockSpace.open(LOCKSPACE_DIR);
    expect(fs.statSync(LOCKSPACE_DIR).isDirectory()).toBe(true);
    expect(ls.directory).toBe(LOCKSPACE_DIR);
    expect(ls.resources()).toEqual([]);
  });

  test('Lockspace res lifecycle', async () => {
    const ls = LockSpace.open(LOCKSPACE_DIR);
    expect(fs.statSync(LOCKSPACE_DIR).isDirectory()).toBe(true);

    await api.create(ls, 'foo');
    expect(fs.existsSync(FOO)).toBe(true);
    expect(fs.statSync(FOO).isFile()).toBe(true);

    await api.del(ls, 'foo');
    expect(fs.existsSync(FOO)).toBe(false);
  });

  test('Lockspace res lock excl', async () => {
    const ls = LockSpace.open(LOCKSPACE_DIR);
    await api.create(ls, 'foo');

    await api.acquire(ls, 'foo', { owner: OWNER });
    expect(fs.existsSync(FOO)).toBe(true);
    expect(await outsideProbe(FOO)).toBe('busy');

    // A second exclusive acquire (even by the same owner) must fail ...
    await expectBusy(() => api.acquire(ls, 'foo', { owner: OWNER }), FOO);
    // ... as must deleting a held resource.
    await expectBusy(() => api.del(ls, 'foo'), FOO);
    expect(fs.existsSync(FOO)).toBe(true);
    // The failed attempts did not drop the lock.
    expect(await outsideProbe(FOO)).toBe('busy');

    await api.release(ls, 'foo', OWNER);
    expect(await outsideProbe(FOO)).toBe('locked');

    await api.del(ls, 'foo');
    expect(fs.existsSync(FOO)).toBe(false);
  });

  test('Lockspace res lock shr', async () => {
    const ls = LockSpace.open(LOCKSPACE_DIR);
    await api.create(ls, 'foo');

    await api.acquire(ls, 'foo', { owner: OWNER, shared: true });
    await expectBusy(() => api.acquire(ls, 'foo', { owner: OWNER }), FOO);
    await api.acquire(ls, 'foo', { owner: OWNER2, shared: true });

    await expectBusy(() => api.del(ls, 'foo'), FOO);
    expect(await outsideProbe(FOO, 'shared')).toBe('locked');
    expect(await outsideProbe(FOO, 'exclusive')).toBe('busy');

    await api.release(ls, 'foo', OWNER);
    await expectBusy(() => api.del(ls, 'foo'), FOO);
    expect(await outsideProbe(FOO, 'exclusive')).toBe('busy');

    await api.release(ls, 'foo', OWNER2);
    expect(await outsideProbe(FOO, 'exclusive')).toBe('locked');
    await api.del(ls, 'foo');
    expect(fs.existsSync(FOO)).toBe(false);
  });

  test('Lockspace res lock shr (same owner twice, exactly as libvirt)', async () => {
    const ls = LockSpace.open(LOCKSPACE_DIR);
    await api.create(ls, 'foo');

    await api.acquire(ls, 'foo', { owner: OWNER, shared: true });
    await expectBusy(() => api.acquire(ls, 'foo', { owner: OWNER }), FOO);
    await api.acquire(ls, 'foo', { owner: OWNER, shared: true });
    expect(ls.resources()[0].owners).toEqual([OWNER, OWNER]);

    await expectBusy(() => api.del(ls, 'foo'), FOO);
    await api.release(ls, 'foo', OWNER);
    await expectBusy(() => api.del(ls, 'foo'), FOO);
    expect(await outsideProbe(FOO, 'exclusive')).toBe('busy');
    await api.release(ls, 'foo', OWNER);
    await api.del(ls, 'foo');
    expect(fs.existsSync(FOO)).toBe(false);
  });

  test('Lockspace res lock excl auto', async () => {
    const ls = LockSpace.open(LOCKSPACE_DIR);
    await api.create(ls, 'foo');

    await api.acquire(ls, 'foo', { owner: OWNER, autoCreate: true });
    expect(fs.existsSync(FOO)).toBe(true);
    expect(await outsideProbe(FOO)).toBe('busy');

    await api.release(ls, 'foo', OWNER);
    expect(fs.existsSync(FOO)).toBe(false);
  });

  test('Lockspace res lock excl auto (file did not exist)', async () => {
    const ls = LockSpace.open(LOCKSPACE_DIR);
    await api.acquire(ls, 'foo', { owner: OWNER, autoCreate: true });
    expect(fs.statSync(FOO).isFile()).toBe(true);
    await api.release(ls, 'foo', OWNER);
    expect(fs.existsSync(FOO)).toBe(false);
    expect(fs.readdirSync(LOCKSPACE_DIR)).toEqual([]);
  });

  test('Lockspace res lock shr auto', async () => {
    const ls = LockSpace.open(LOCKSPACE_DIR);
    await api.create(ls, 'foo');

    await api.acquire(ls, 'foo', { owner: OWNER, shared: true, autoCreate: true });
    expect(fs.existsSync(FOO)).toBe(true);

    await expectBusy(() => api.acquire(ls, 'foo', { owner: OWNER, autoCreate: true }), FOO);
    expect(fs.existsSync(FOO)).toBe(true);

    await api.acquire(ls, 'foo', { owner: OWNER2, shared: true, autoCreate: true });
    expect(fs.existsSync(FOO)).toBe(true);

    await api.release(ls, 'foo', OWNER);
    expect(fs.existsSync(FOO)).toBe(true);
    expect(await outsideProbe(FOO, 'exclusive')).toBe('busy');

    await api.release(ls, 'foo', OWNER2);
    expect(fs.existsSync(FOO)).toBe(false);
  });

  test('Lockspace res full path', async () => {
    const ls = LockSpace.open(null);
    expect(ls.directory).toBeNull();
    fs.mkdirSync(LOCKSPACE_DIR, { mode: 0o700 });

    await api.create(ls, FOO);
    await api.acquire(ls, FOO, { owner: OWNER });
    expect(fs.existsSync(FOO)).toBe(true);
    expect(await outsideProbe(FOO)).toBe('busy');

    await expectBusy(() => api.acquire(ls, FOO, { owner: OWNER }), FOO);
    await expectBusy(() => api.del(ls, FOO), FOO);
    expect(fs.existsSync(FOO)).toBe(true);

    await api.release(ls, FOO, OWNER);
    await api.del(ls, FOO);
    expect(fs.existsSync(FOO)).toBe(false);
  });
});
