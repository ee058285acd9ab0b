/* The Web Locks-shaped manager, `ls.locks`: request(name, [options], callback) holds the lock while
 * the callback runs (checked from another process: python fcntl.lockf), ifAvailable, signal, steal,
 * release when the callback throws, query() (every thread's held and pending requests), and the lock
 * files: kept between requests, deleted once idle, never while another process could be granted
 * them on their name (a second node process contends while files are deleted). */
import * as fs from 'fs';
import * as path from 'path';
import { spawn, spawnSync } from 'child_process';
import { Worker } from 'worker_threads';
import { Lock, LockSpace, webLockFileName } from '../lib';
import { _debug } from '../lib/internal';
import { catchErr, DIST_INDEX, DIST_INTERNAL, holderFromChild, mkTmpDir, outsideProbe, rmTmpDir, spawnPythonHolder, stats, useTmpDir, waitFor } from './helpers';

const DEFAULT_LIMITS = { sweepMs: 1000, maxIdleFiles: 256 };
let workers: Worker[] = [];
const tmp = useTmpDir({
  beforeCleanup: async () => {
    await Promise.all(workers.map((w) => w.terminate()));
    workers = [];
  },
});
afterEach(() => _debug.setLockFileLimits(DEFAULT_LIMITS));

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
  expect(await outsideProbe(file)).toBe('locked');
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
  expect(await outsideProbe(path.join(tmp.dir, 'job'))).toBe('locked');
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
    }
    expect(fs.readdirSync(tmp.dir).sort()).toEqual(['app/db', 'https://example.com/a/b?c=d#e', ''].map(webLockFileName).sort());
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

/** A worker thread that takes the locks `held` (posting 'holding' once it has them all), then, told
 *  'request', makes `requests` (posting 'requested'), each held once granted; told 'release', lets go
 *  of all it holds. */
function startRequester(held: string[]): Worker {
  const code = `
    const { workerData, parentPort } = require('worker_threads');
    const { LockSpace } = require(${JSON.stringify(DIST_INDEX)});
    const ls = LockSpace.open(workerData.dir, { deadlockTimeout: Infinity });
    let release;
    const released = new Promise((resolve) => (release = resolve));
    parentPort.on('message', (m) => {
      if (m === 'release') return release();
      for (const r of m.requests) ls.locks.request(r.name, { mode: r.mode }, () => released).catch(() => {});
      parentPort.postMessage('requested');
    });
    (async () => {
      for (const name of workerData.held) {
        await new Promise((granted) => ls.locks.request(name, () => (granted(), released)));
      }
      parentPort.postMessage('holding');
    })();
  `;
  const w = new Worker(code, { eval: true, workerData: { dir: tmp.dir, held } });
  workers.push(w);
  return w;
}

function nextMessage(w: Worker): Promise<unknown> {
  return new Promise((resolve) => w.once('message', resolve));
}

async function makeRequests(w: Worker, requests: { name: string; mode?: 'shared' | 'exclusive' }[]): Promise<void> {
  const made = nextMessage(w);
  w.postMessage({ requests });
  await made;
}

const byName = (a: { name: string }, b: { name: string }) => a.name.localeCompare(b.name);

describe('query lists every thread', () => {
  test("other threads' waiting requests are pending, each once, and none is also held", async () => {
    const ls = LockSpace.open(tmp.dir);
    let release!: () => void;
    const holding = ls.locks.request('a', () => new Promise<void>((resolve) => (release = resolve)));
    await waitFor(() => release !== undefined, 'a held');
    const w1 = startRequester(['b']);
    const w2 = startRequester([]);
    await Promise.all([nextMessage(w1), nextMessage(w2)]);
    await makeRequests(w1, [{ name: 'a' }]);
    await makeRequests(w2, [{ name: 'a', mode: 'shared' }, { name: 'b' }]);
    await waitFor(() => stats().waiters === 3, "w1's a, w2's a and b queued");
    const snapshot = await ls.locks.query();
    const [c0, c1, c2] = [0, w1.threadId, w2.threadId].map((t) => `${process.pid}/${t}`);
    expect([...snapshot.held].sort(byName)).toEqual([
      { name: 'a', mode: 'exclusive', clientId: c0 },
      { name: 'b', mode: 'exclusive', clientId: c1 },
    ]);
    // In the order they were made.
    expect(snapshot.pending).toEqual([
      { name: 'a', mode: 'exclusive', clientId: c1 },
      { name: 'a', mode: 'shared', clientId: c2 },
      { name: 'b', mode: 'exclusive', clientId: c2 },
    ]);
    release();
    await holding;
    await waitFor(() => stats().waiters === 2, "w1's a granted (and held: w2's requests still wait)");
    const after = await ls.locks.query();
    expect([...after.held].sort(byName)).toEqual([
      { name: 'a', mode: 'exclusive', clientId: c1 },
      { name: 'b', mode: 'exclusive', clientId: c1 },
    ]);
    expect(after.pending).toEqual([
      { name: 'a', mode: 'shared', clientId: c2 },
      { name: 'b', mode: 'exclusive', clientId: c2 },
    ]);
  });

  test('a deadlock between two threads shows in query: each holds what the other waits for', async () => {
    const ls = LockSpace.open(tmp.dir);
    const w1 = startRequester(['x']);
    const w2 = startRequester(['y']);
    await Promise.all([nextMessage(w1), nextMessage(w2)]);
    await makeRequests(w1, [{ name: 'y' }]);
    await makeRequests(w2, [{ name: 'x' }]);
    await waitFor(() => stats().waiters === 2, 'both queued');
    const { held, pending } = await ls.locks.query();
    const [c1, c2] = [w1.threadId, w2.threadId].map((t) => `${process.pid}/${t}`);
    expect([...held].sort(byName)).toEqual([
      { name: 'x', mode: 'exclusive', clientId: c1 },
      { name: 'y', mode: 'exclusive', clientId: c2 },
    ]);
    expect(pending).toEqual([
      { name: 'y', mode: 'exclusive', clientId: c1 },
      { name: 'x', mode: 'exclusive', clientId: c2 },
    ]);
  });

  test('requests of another lockspace and plain waits are not listed', async () => {
    const ls = LockSpace.open(tmp.dir);
    const other = LockSpace.open(path.join(tmp.dir, 'sub'));
    const plain = ls.acquireSync('plain', { autoCreate: true });
    const waiting = ls.acquire('plain', { wait: true });
    let release!: () => void;
    const holding = other.locks.request('a', () => new Promise<void>((resolve) => (release = resolve)));
    await waitFor(() => release !== undefined, 'a held');
    const queued = other.locks.request('a', () => undefined);
    await waitFor(() => stats().waiters === 2, 'both queued');
    expect(await ls.locks.query()).toEqual({ held: [], pending: [] });
    expect((await other.locks.query()).pending).toEqual([{ name: 'a', mode: 'exclusive', clientId: `${process.pid}/0` }]);
    release();
    plain.releaseSync();
    await Promise.all([holding, queued, waiting.then((l) => l.release())]);
  });
});

describe('lock files', () => {
  test('a file stays between requests, and goes once no request used it through a sweep', async () => {
    _debug.setLockFileLimits({ sweepMs: 50 });
    const ls = LockSpace.open(tmp.dir);
    const file = path.join(tmp.dir, 'job');
    await ls.locks.request('job', () => undefined);
    expect(fs.existsSync(file)).toBe(true);
    await waitFor(() => !fs.existsSync(file), 'the idle file deleted');
    // A name in use is never swept, however long its request lasts.
    let release!: () => void;
    const holding = ls.locks.request('job', () => new Promise<void>((resolve) => (release = resolve)));
    await waitFor(() => release !== undefined, 'held');
    const swept = ls.locks.request('other', () => undefined);
    await swept;
    await waitFor(() => !fs.existsSync(path.join(tmp.dir, 'other')), 'the other idle file deleted');
    expect(await outsideProbe(file)).toBe('busy');
    release();
    await holding;
  });

  test('beyond maxIdleFiles idle files the oldest are deleted at once; a file in use never', async () => {
    _debug.setLockFileLimits({ maxIdleFiles: 5 });
    const ls = LockSpace.open(tmp.dir);
    await ls.locks.request('kept', async () => {
      for (let i = 0; i < 20; i++) {
        await ls.locks.request(`n${i}`, () => undefined);
        expect(fs.readdirSync(tmp.dir).length).toBeLessThanOrEqual(5 + 1);
      }
      expect(fs.readdirSync(tmp.dir).sort()).toEqual(['kept', 'n15', 'n16', 'n17', 'n18', 'n19']);
      expect(await outsideProbe(path.join(tmp.dir, 'kept'))).toBe('busy');
    });
  });

  test('a file another process holds when it is due is left to it', async () => {
    _debug.setLockFileLimits({ maxIdleFiles: 1, sweepMs: 600_000 });
    const ls = LockSpace.open(tmp.dir);
    const file = (name: string) => path.join(tmp.dir, name);
    await ls.locks.request('job', () => undefined);
    const holder = await spawnPythonHolder(file('job'));
    try {
      await ls.locks.request('second', () => undefined); // two idle: 'job' is due, and busy
      expect(fs.readdirSync(tmp.dir).sort()).toEqual(['job', 'second']);
    } finally {
      await holder.release();
    }
    await ls.locks.request('third', () => undefined); // 'job' was given up: 'second' goes
    expect(fs.readdirSync(tmp.dir).sort()).toEqual(['job', 'third']);
  });

  test('a file deleted or replaced by another process is made again and locked', async () => {
    const ls = LockSpace.open(tmp.dir);
    const file = path.join(tmp.dir, 'job');
    await ls.locks.request('job', () => undefined); // its fd stays open, unlocked, in the table
    fs.unlinkSync(file);
    expect(await ls.locks.request('job', () => outsideProbe(file))).toBe('busy');
    fs.writeFileSync(`${file}.new`, '');
    fs.renameSync(`${file}.new`, file);
    expect(await ls.locks.request('job', () => outsideProbe(file))).toBe('busy');
  });

  test('on a network file system a missing file is made by the request, and no file is ever deleted', async () => {
    _debug.setForceRemote(true);
    try {
      _debug.setLockFileLimits({ maxIdleFiles: 0 });
      const ls = LockSpace.open(tmp.dir);
      const file = path.join(tmp.dir, '-app%2Fdb');
      expect(await ls.locks.request('app/db', () => outsideProbe(file))).toBe('busy');
      expect(await ls.locks.request('app/db', { mode: 'shared' }, () => outsideProbe(file, 'shared'))).toBe('locked');
      expect(fs.readdirSync(tmp.dir)).toEqual(['-app%2Fdb']);
      fs.unlinkSync(file); // another host deleted it: made again
      expect(await ls.locks.request('app/db', () => outsideProbe(file))).toBe('busy');
      expect(fs.readdirSync(tmp.dir)).toEqual(['-app%2Fdb']);
    } finally {
      _debug.setForceRemote(false);
    }
  });

  test('a process deletes its idle files when it exits, and so does a worker thread', async () => {
    const script = `
      const { LockSpace } = require(${JSON.stringify(DIST_INDEX)});
      const ls = LockSpace.open(process.argv[1]);
      (async () => {
        await ls.locks.request('a', () => undefined);
        await ls.locks.request('app/db', { mode: 'shared' }, () => undefined);
        await ls.locks.request('c', { ifAvailable: true }, () => undefined);
        console.log(JSON.stringify(require('fs').readdirSync(process.argv[1]).sort()));
        if (process.argv[2] === 'exit') process.exit(3);
      })();
    `;
    const r = spawnSync(process.execPath, ['-e', script, tmp.dir], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual(['-app%2Fdb', 'a', 'c']); // kept while the process ran
    expect(fs.readdirSync(tmp.dir)).toEqual([]);

    const exited = spawnSync(process.execPath, ['-e', script, tmp.dir, 'exit'], { encoding: 'utf8' });
    expect(exited.status).toBe(3);
    expect(JSON.parse(exited.stdout)).toEqual(['-app%2Fdb', 'a', 'c']);
    expect(fs.readdirSync(tmp.dir)).toEqual([]);

    const w = new Worker(`const { LockSpace } = require(${JSON.stringify(DIST_INDEX)});
      LockSpace.open(require('worker_threads').workerData).locks.request('w', () => undefined);`, { eval: true, workerData: tmp.dir });
    await new Promise((resolve) => w.once('exit', resolve));
    expect(fs.readdirSync(tmp.dir)).toEqual([]);
  });
});

describe('exclusion across processes while lock files are deleted', () => {
  // Every participant deletes a lock file at each release (maxIdleFiles: 0), so deletions interleave
  // with the other processes' requests on the same names. Each critical section creates a marker file
  // with O_EXCL (it fails if another holder's marker is there) and removes it at the end.
  const CONTENDER = `
    const fs = require('fs');
    const path = require('path');
    const { LockSpace, webLockFileName } = require(${JSON.stringify(DIST_INDEX)});
    require(${JSON.stringify(DIST_INTERNAL)})._debug.setLockFileLimits({ maxIdleFiles: 0 });
    module.exports = async function contend(dir, marks, rounds) {
      const ls = LockSpace.open(dir);
      const names = ['a', 'b/c', 'd'];
      const out = { overlaps: 0, missingWhileHeld: 0, absentBefore: 0 };
      for (let i = 0; i < rounds; i++) {
        const name = names[i % names.length];
        const file = path.join(dir, webLockFileName(name));
        if (!fs.existsSync(file)) out.absentBefore++;
        await ls.locks.request(name, async () => {
          if (!fs.existsSync(file)) out.missingWhileHeld++;
          const mark = path.join(marks, webLockFileName(name));
          try {
            fs.writeFileSync(mark, '', { flag: 'wx' });
          } catch {
            out.overlaps++;
            return;
          }
          await new Promise((resolve) => setImmediate(resolve));
          fs.unlinkSync(mark);
        });
      }
      return out;
    };
    if (require.main === module) module.exports(process.argv[2], process.argv[3], Number(process.argv[4])).then((out) => console.log(JSON.stringify(out)));
  `;

  test('two other node processes and this one request the same names: no two hold one at once', async () => {
    const marks = mkTmpDir();
    const script = path.join(marks, '..', `contend-${process.pid}.js`);
    fs.writeFileSync(script, CONTENDER);
    try {
      const ROUNDS = 1500;
      const children = [0, 1].map(
        () =>
          new Promise<string>((resolve, reject) => {
            const child = spawn(process.execPath, [script, tmp.dir, marks, String(ROUNDS)], { stdio: ['ignore', 'pipe', 'inherit'] });
            let out = '';
            child.stdout.setEncoding('utf8').on('data', (d) => (out += d));
            child.on('error', reject);
            child.on('close', (status) => (status === 0 ? resolve(out) : reject(new Error(`contender exited ${status}`))));
          }),
      );
      const contend = require(script) as (dir: string, marks: string, rounds: number) => Promise<Record<string, number>>;
      const ours = await contend(tmp.dir, marks, ROUNDS);
      const theirs = (await Promise.all(children)).map((out) => JSON.parse(out) as Record<string, number>);
      for (const r of [ours, ...theirs]) {
        expect(r.overlaps).toBe(0);
        expect(r.missingWhileHeld).toBe(0);
      }
      // The files really came and went during the run.
      expect(ours.absentBefore + theirs[0].absentBefore + theirs[1].absentBefore).toBeGreaterThan(0);
      expect(fs.readdirSync(marks)).toEqual([]);
      expect(fs.readdirSync(tmp.dir)).toEqual([]);
    } finally {
      _debug.setLockFileLimits(DEFAULT_LIMITS);
      fs.rmSync(script, { force: true });
      rmTmpDir(marks);
    }
  }, 60_000);
});
