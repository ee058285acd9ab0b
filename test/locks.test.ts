/* The Web Locks-shaped manager, `ls.locks`: request(name, [options], callback) holds the lock while
 * the callback runs (checked from another process: python fcntl.lockf), ifAvailable, signal, steal,
 * release when the callback throws, and query(). */
import * as fs from 'fs';
import * as path from 'path';
import { spawn } from 'child_process';
import { Lock, LockSpace, webLockFileName } from '../lib';
import { catchErr, DIST_INDEX, holderFromChild, outsideProbe, stats, useTmpDir, waitFor } from './helpers';

const tmp = useTmpDir();

test('request holds an exclusive lock while the callback runs, returns its result, and releases', async () => {
  const ls = LockSpace.open(tmp.dir);
  const file = path.join(tmp.dir, 'job');
  let seen: Lock | null = null;
  const result = await ls.locks.request('job', async (lock) => {
    seen = lock;
    expect(await outsideProbe(file, 'shared')).toBe('busy');
    return 42;
  });
  expect(result).toBe(42);
  expect(seen).toEqual({ name: 'job', mode: 'exclusive' });
  expect(fs.existsSync(file)).toBe(false); // the lock file comes and goes with the lock
});

test("mode: 'shared' requests hold together; an exclusive one waits for both", async () => {
  const ls = LockSpace.open(tmp.dir);
  const file = path.join(tmp.dir, 'db');
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const order: string[] = [];
  const s1 = ls.locks.request('db', { mode: 'shared' }, async (lock) => {
    order.push(`s1 ${lock!.mode}`);
    await gate;
  });
  const s2 = ls.locks.request('db', { mode: 'shared' }, async () => {
    order.push('s2');
    await gate;
  });
  await waitFor(() => order.length === 2, 'both shared held');
  expect(await outsideProbe(file, 'shared')).toBe('locked');
  expect(await outsideProbe(file, 'exclusive')).toBe('busy');
  const x = ls.locks.request('db', () => order.push('x'));
  await waitFor(() => stats().waiters === 1, 'exclusive queued');
  expect((await ls.locks.query()).pending).toEqual([{ name: 'db', mode: 'exclusive', clientId: expect.any(String) }]);
  release();
  await Promise.all([s1, s2, x]);
  expect(order).toEqual(['s1 shared', 's2', 'x']);
});

test('ifAvailable: the callback gets null while another process holds the lock', async () => {
  const ls = LockSpace.open(tmp.dir);
  const script = `
    const { LockSpace } = require(${JSON.stringify(DIST_INDEX)});
    LockSpace.open(process.argv[1]).locks.request('job', () => {
      console.log('locked ' + process.pid);
      return new Promise((resolve) => process.stdin.once('data', resolve));
    }).then(() => console.log('released'));
  `;
  const other = await holderFromChild(spawn(process.execPath, ['-e', script, tmp.dir], { stdio: ['pipe', 'pipe', 'pipe'] }), 'node locks holder');
  try {
    expect(await ls.locks.request('job', { ifAvailable: true }, (lock) => lock)).toBeNull();
    const held = await ls.locks.request('other', { ifAvailable: true }, (lock) => lock);
    expect(held).toEqual({ name: 'other', mode: 'exclusive' });
  } finally {
    await other.release();
  }
  expect(await ls.locks.request('job', { ifAvailable: true }, (lock) => lock?.name)).toBe('job');
});

test('signal: an abort while queued rejects with signal.reason and never calls the callback', async () => {
  const ls = LockSpace.open(tmp.dir);
  let release!: () => void;
  const holding = ls.locks.request('job', () => new Promise<void>((resolve) => (release = resolve)));
  await waitFor(() => stats().leases === 1, 'held');
  const ac = new AbortController();
  let called = false;
  const queued = ls.locks.request('job', { signal: ac.signal }, () => {
    called = true;
  });
  await waitFor(() => stats().waiters === 1, 'queued');
  ac.abort();
  const e = await catchErr(() => queued);
  // Web Locks rejects with the reason itself: abort() without one sets a DOMException AbortError.
  expect(e).toBe(ac.signal.reason);
  expect(e).toBeInstanceOf(DOMException);
  expect(e.name).toBe('AbortError');
  expect(called).toBe(false);
  expect((await ls.locks.query()).pending).toEqual([]);
  const custom = new AbortController();
  const withReason = ls.locks.request('job', { signal: custom.signal }, () => 1);
  await waitFor(() => stats().waiters === 1, 'queued again');
  custom.abort('gave up');
  expect(await catchErr(() => withReason)).toBe('gave up');
  release();
  await holding;
});

test('signal: an already aborted signal rejects with its reason before anything is locked', async () => {
  const ls = LockSpace.open(tmp.dir);
  const reason = new Error('too late');
  expect(await catchErr(() => ls.locks.request('job', { signal: AbortSignal.abort(reason) }, () => 1))).toBe(reason);
  expect(fs.readdirSync(tmp.dir)).toEqual([]);
});

test('signal: an abort right after request() returns wins over a free lock: the callback never runs', async () => {
  const ls = LockSpace.open(tmp.dir);
  const ac = new AbortController();
  let called = false;
  const p = ls.locks.request('job', { signal: ac.signal }, () => {
    called = true;
  });
  ac.abort();
  expect(await catchErr(() => p)).toBe(ac.signal.reason);
  expect(called).toBe(false);
  // The lock it may have taken is given back: another process can lock the name.
  expect(stats().leases).toBe(0);
  expect(fs.readdirSync(tmp.dir)).toEqual([]);
  fs.writeFileSync(path.join(tmp.dir, 'job'), '');
  expect(await outsideProbe(path.join(tmp.dir, 'job'))).toBe('locked');
});

async function notSupported(p: () => unknown): Promise<void> {
  const e = await catchErr(p);
  expect(e).toBeInstanceOf(DOMException);
  expect(e.name).toBe('NotSupportedError');
}

test('NotSupportedError, as in Web Locks: steal, ifAvailable with signal, names starting with "-"', async () => {
  const ls = LockSpace.open(tmp.dir);
  const ac = new AbortController();
  let called = false;
  const cb = (): void => {
    called = true;
  };
  // A lock held by another thread or process cannot be taken from it: steal is refused in every form.
  await notSupported(() => ls.locks.request('job', { steal: true as false }, cb));
  await notSupported(() => ls.locks.request('job', { steal: true as false, ifAvailable: true }, cb));
  await notSupported(() => ls.locks.request('job', { steal: true as false, mode: 'shared' }, cb));
  await notSupported(() => ls.locks.request('job', { steal: true as false, signal: ac.signal }, cb));
  await notSupported(() => ls.locks.request('job', { ifAvailable: true, signal: ac.signal }, cb));
  await notSupported(() => ls.locks.request('-job', cb));
  await notSupported(() => ls.locks.request('-', { ifAvailable: true }, cb));
  expect(called).toBe(false);
  expect(fs.readdirSync(tmp.dir)).toEqual([]);
});

test('bad options and a missing callback are TypeErrors', async () => {
  const ls = LockSpace.open(tmp.dir);
  expect((await catchErr(() => ls.locks.request('job', { mode: 'read' as 'shared' }, () => 1))).code).toBe('ERR_INVALID_ARG_VALUE');
  expect((await catchErr(() => (ls.locks.request as (n: string) => Promise<void>)('job'))).code).toBe('ERR_INVALID_ARG_TYPE');
  expect(fs.readdirSync(tmp.dir)).toEqual([]);
});

test('query never lists a granted request as pending', async () => {
  const ls = LockSpace.open(tmp.dir);
  let release: (() => void) | undefined;
  const holding = ls.locks.request('job', () => new Promise<void>((resolve) => (release = resolve)));
  // Asked at once: the free lock is already granted, its callback not yet called.
  const snapshot = await ls.locks.query();
  expect(snapshot.held).toEqual([{ name: 'job', mode: 'exclusive', clientId: `${process.pid}/0` }]);
  expect(snapshot.pending).toEqual([]);
  expect(await outsideProbe(path.join(tmp.dir, 'job'), 'shared')).toBe('busy');
  await waitFor(() => release !== undefined, 'callback called');
  release!();
  await holding;
});

test('the lock is released when the callback throws or its promise rejects', async () => {
  const ls = LockSpace.open(tmp.dir);
  const boom = new Error('boom');
  expect(
    await catchErr(() =>
      ls.locks.request('job', () => {
        throw boom;
      }),
    ),
  ).toBe(boom);
  expect(stats().leases).toBe(0);
  expect(await catchErr(() => ls.locks.request('job', async () => Promise.reject(boom)))).toBe(boom);
  expect(stats().leases).toBe(0);
  expect(fs.readdirSync(tmp.dir)).toEqual([]);
});

test('query lists what is held through this lockspace, with mode and clientId', async () => {
  const ls = LockSpace.open(tmp.dir);
  const plain = ls.acquireSync('not-a-web-lock', { autoCreate: true });
  const snapshot = await ls.locks.request('a', () => ls.locks.request('b', { mode: 'shared' }, () => ls.locks.query()));
  const held = [...snapshot.held].sort((x, y) => x.name.localeCompare(y.name));
  expect(held).toEqual([
    { name: 'a', mode: 'exclusive', clientId: `${process.pid}/0` },
    { name: 'b', mode: 'shared', clientId: `${process.pid}/0` },
  ]);
  expect(snapshot.pending).toEqual([]);
  expect(await ls.locks.query()).toEqual({ held: [], pending: [] });
  plain.releaseSync();
});

test('path mode: the file must exist and is never deleted', async () => {
  const ls = LockSpace.open(null);
  const file = path.join(tmp.dir, 'disk.img');
  expect((await catchErr(() => ls.locks.request(file, () => 1))).code).toBe('ENOENT');
  fs.writeFileSync(file, '');
  expect(await ls.locks.request(file, async () => outsideProbe(file))).toBe('busy');
  expect(fs.existsSync(file)).toBe(true);
});

describe('Web Locks names map to file names', () => {
  test("'app/db', a URL and '' each lock the file their mapped name names, and query gives their own names back", async () => {
    const ls = LockSpace.open(tmp.dir);
    for (const name of ['app/db', 'https://example.com/a/b?c=d#e', '']) {
      const file = path.join(tmp.dir, webLockFileName(name));
      const seen = await ls.locks.request(name, async (lock) => {
        expect(await outsideProbe(file, 'shared')).toBe('busy');
        // ls.acquire reaches the same lock through the mapped name.
        expect(() => ls.acquireSync(webLockFileName(name))).toThrow(expect.objectContaining({ code: 'EBUSY' }));
        return { lock, held: (await ls.locks.query()).held };
      });
      expect(seen).toEqual({ lock: { name, mode: 'exclusive' }, held: [{ name, mode: 'exclusive', clientId: `${process.pid}/0` }] });
      expect(fs.readdirSync(tmp.dir)).toEqual([]);
    }
  });

  test('a very long name gets a hashed file name, and query still gives the name back', async () => {
    const ls = LockSpace.open(tmp.dir);
    const name = '😀'.repeat(1000);
    const file = path.join(tmp.dir, webLockFileName(name));
    const held = await ls.locks.request(name, async () => {
      expect(await outsideProbe(file, 'shared')).toBe('busy');
      return (await ls.locks.query()).held.map((h) => h.name);
    });
    expect(held).toEqual([name]);
  });

  test('names that are safe file names map to themselves', () => {
    for (const name of ['job', 'ledger.db', 'a%2Fb', '%', 'x'.repeat(255), 'é'.repeat(127), '.hidden', '...']) {
      expect(webLockFileName(name)).toBe(name);
    }
  });

  test('different names never map to the same file name, and each is a valid file name', () => {
    const names = ['app/db', 'https://example.com/a/b?c=d#e', '', '.', '..', '%', '%25', '%2F', 'a%2Fb', 'a/b', 'a\0b', 'é',
      'x'.repeat(255), 'x'.repeat(256), `${'x'.repeat(254)}/`, '/'.repeat(100), 'é'.repeat(127), 'é'.repeat(128), '😀'.repeat(1000), '😀'.repeat(1001)];
    const files = names.map(webLockFileName);
    expect(new Set(files).size).toBe(names.length);
    for (const f of files) {
      expect(f).not.toMatch(/[/\0]/);
      expect(['', '.', '..']).not.toContain(f);
      expect(Buffer.byteLength(f)).toBeLessThanOrEqual(255);
    }
  });

  test('lone surrogates and names starting with "-" are NotSupportedError', async () => {
    const ls = LockSpace.open(tmp.dir);
    for (const name of ['a\ud800', '\udc00', '-x']) {
      await notSupported(() => webLockFileName(name));
      await notSupported(() => ls.locks.request(name, () => 1));
    }
    expect(fs.readdirSync(tmp.dir)).toEqual([]);
  });
});
