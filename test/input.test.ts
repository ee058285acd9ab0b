/* Hostile and odd arguments to the library: each gets a clear error and leaves nothing behind (no
 * file created, nothing held), and what is accepted behaves as documented. Checked from outside
 * (python fcntl.lockf) where it is about a lock. */
import * as fs from 'fs';
import * as path from 'path';
import { spawnSync } from 'child_process';
import * as lockspace from '../lib';
import { isLockspaceError, LockSpace, LockspaceError, resourceNameForPath } from '../lib';
import { catchErr, catchErrSync, outsideProbe, stats, useTmpDir, waitFor } from './helpers';

const tmp = useTmpDir();

describe('signal: real AbortSignals only', () => {
  test('a duck-typed signal is ERR_INVALID_ARG_TYPE, and nothing is queued or held', async () => {
    const ls = LockSpace.open(tmp.dir);
    const holder = ls.acquireSync('r', { autoCreate: true, owner: 'holder' });
    const fakes: unknown[] = [
      { aborted: false, addEventListener() {}, removeEventListener() {} },
      Object.create(AbortSignal.prototype),
      new EventTarget(),
    ];
    for (const signal of fakes) {
      const e = await catchErr(() => ls.acquire('r', { wait: true, signal: signal as AbortSignal }));
      expect(e).toBeInstanceOf(TypeError);
      expect(e.code).toBe('ERR_INVALID_ARG_TYPE');
      expect(e.message).toContain('"options.signal" argument must be an instance of AbortSignal');
    }
    expect(stats().waiters).toBe(0);
    holder.releaseSync();
  });

  test("a real signal whose methods were overwritten still works, and one consumer's trouble costs no other grant", async () => {
    const ls = LockSpace.open(tmp.dir);
    const a = ls.acquireSync('a', { autoCreate: true, owner: 'holder' });
    const b = ls.acquireSync('b', { autoCreate: true, owner: 'holder' });
    const ac = new AbortController();
    const hostile = Object.assign(ac.signal, {
      removeEventListener() {
        throw new Error('boom');
      },
      addEventListener() {},
    });
    const first = ls.acquire('a', { wait: true, owner: 'w1', signal: hostile });
    const second = ls.acquire('b', { wait: true, owner: 'w2' });
    await waitFor(() => stats().waiters === 2, 'both queued');
    // Both grants come in one delivery.
    expect(ls.releaseOwnerSync('holder')).toBe(2);
    const [la, lb] = await Promise.all([first, second]);
    expect([a.released, b.released]).toEqual([true, true]);
    expect(await outsideProbe(path.join(tmp.dir, 'a'))).toBe('busy');
    expect(await outsideProbe(path.join(tmp.dir, 'b'))).toBe('busy');
    // The signal is still honoured through AbortSignal's own methods: aborting now does nothing.
    ac.abort();
    expect(la.released).toBe(false);
    la.releaseSync();
    lb.releaseSync();
    expect(stats().leases).toBe(0);
  });

  test('a real signal aborts the wait even with an own "aborted" property that lies', async () => {
    const ls = LockSpace.open(tmp.dir);
    const holder = ls.acquireSync('r', { autoCreate: true, owner: 'holder' });
    const ac = new AbortController();
    ac.abort(new Error('why'));
    Object.defineProperty(ac.signal, 'aborted', { value: false });
    const e = await catchErr(() => ls.acquire('r', { wait: true, signal: ac.signal }));
    expect(e.name).toBe('AbortError');
    expect(e.cause.message).toBe('why');
    expect(stats().waiters).toBe(0);
    holder.releaseSync();
  });
});

describe('timeouts beyond setTimeout range', () => {
  afterEach(() => jest.useRealTimers());

  test('timeout: 1e10 does not fire at 2^31-1 ms, and fires at 1e10 ms', async () => {
    const ls = LockSpace.open(tmp.dir);
    const holder = ls.acquireSync('r', { autoCreate: true, owner: 'holder' });
    jest.useFakeTimers({ doNotFake: ['nextTick', 'setImmediate', 'queueMicrotask'] });
    let outcome: unknown;
    const p = ls.acquire('r', { wait: true, timeout: 1e10 }).then(
      (l) => (outcome = l),
      (e) => (outcome = e),
    );
    await jest.advanceTimersByTimeAsync(2 ** 31 + 10);
    expect(outcome).toBeUndefined();
    expect(stats().waiters).toBe(1);
    await jest.advanceTimersByTimeAsync(1e10 - 2 ** 31 - 1000);
    expect(outcome).toBeUndefined();
    await jest.advanceTimersByTimeAsync(2000);
    await p;
    expect((outcome as LockspaceError).code).toBe('ETIMEDOUT');
    expect((outcome as LockspaceError).message).toContain('after 10000000000 ms');
    expect(stats().waiters).toBe(0);
    holder.releaseSync();
  });

  test('timeout: Infinity waits without a limit; negative and NaN are rejected', async () => {
    const ls = LockSpace.open(tmp.dir);
    const holder = ls.acquireSync('r', { autoCreate: true, owner: 'holder' });
    const p = ls.acquire('r', { wait: true, timeout: Infinity });
    await waitFor(() => stats().waiters === 1, 'queued');
    holder.releaseSync();
    (await p).releaseSync();
    for (const timeout of [-1, NaN]) {
      expect((await catchErr(() => ls.acquire('r', { wait: true, timeout }))).code).toBe('ERR_INVALID_ARG_VALUE');
    }
  });
});

describe('options are read once; what is read is validated', () => {
  test('an inherited invalid option is rejected, and nothing is created', async () => {
    const ls = LockSpace.open(tmp.dir);
    const e = await catchErr(() => ls.acquire('r', Object.create({ autoCreate: 'yes' })));
    expect(e.code).toBe('ERR_INVALID_ARG_TYPE');
    expect(catchErrSync(() => ls.acquireSync('r', Object.create({ autoCreate: 'yes' }))).code).toBe('ERR_INVALID_ARG_TYPE');
    expect(fs.existsSync(path.join(tmp.dir, 'r'))).toBe(false);
    expect((await catchErr(() => ls.acquire('r', Object.create({ owner: NaN })))).code).toBe('ERR_INVALID_ARG_VALUE');
    expect(catchErrSync(() => LockSpace.open(tmp.dir, Object.create({ lockType: 'flock' }))).code).toBe('ERR_INVALID_ARG_VALUE');
    expect(catchErrSync(() => resourceNameForPath('/x', Object.create({ canonicalize: 1 }))).code).toBe('ERR_INVALID_ARG_TYPE');
  });

  test('an inherited valid option is used', async () => {
    const ls = LockSpace.open(tmp.dir);
    const lease = await ls.acquire('r', Object.create({ autoCreate: true, shared: true, owner: 'inherited' }));
    expect(lease.shared).toBe(true);
    expect(lease.owner).toBe('inherited');
    expect(await outsideProbe(lease.path, 'shared')).toBe('locked');
    expect(await outsideProbe(lease.path, 'exclusive')).toBe('busy');
    await lease.release();
  });

  test('a getter is read once: a value that changes between reads cannot slip past validation', async () => {
    const ls = LockSpace.open(tmp.dir);
    let reads = 0;
    const options = {
      get autoCreate(): boolean {
        reads++;
        return (reads === 1 ? true : 'yes') as boolean;
      },
    };
    const lease = ls.acquireSync('r', options);
    expect(reads).toBe(1);
    lease.releaseSync();
    reads = 0;
    (await ls.acquire('r', options)).releaseSync();
    expect(reads).toBe(1);
  });
});

describe('strings that are not well-formed Unicode', () => {
  test('names with a lone surrogate are rejected instead of merging into U+FFFD', async () => {
    const ls = LockSpace.open(tmp.dir);
    for (const name of ['\uD800', '\uDFFF', 'a\uDC00b']) {
      const e = catchErrSync(() => ls.acquireSync(name, { autoCreate: true }));
      expect(e.code).toBe('ERR_INVALID_ARG_VALUE');
      expect(e.message).toContain('well-formed');
      expect((await catchErr(() => ls.acquire(name, { autoCreate: true }))).code).toBe('ERR_INVALID_ARG_VALUE');
      expect(catchErrSync(() => ls.createSync(name)).code).toBe('ERR_INVALID_ARG_VALUE');
      expect(catchErrSync(() => ls.deleteSync(name)).code).toBe('ERR_INVALID_ARG_VALUE');
    }
    expect(fs.readdirSync(tmp.dir)).toEqual([]);
    // A surrogate pair is a character like any other.
    const emoji = ls.acquireSync('\uD83D\uDE00', { autoCreate: true });
    expect(fs.readdirSync(tmp.dir)).toEqual(['😀']);
    emoji.releaseSync();
  });

  test("owners with a lone surrogate are rejected: one cannot release another's lease", () => {
    const ls = LockSpace.open(tmp.dir);
    expect(catchErrSync(() => ls.acquireSync('r', { autoCreate: true, owner: '\uD800' })).code).toBe('ERR_INVALID_ARG_VALUE');
    const lease = ls.acquireSync('r', { autoCreate: true, owner: 'ok' });
    expect(catchErrSync(() => ls.releaseSync('r', '\uDC00')).code).toBe('ERR_INVALID_ARG_VALUE');
    expect(catchErrSync(() => ls.releaseOwnerSync('\uDC00')).code).toBe('ERR_INVALID_ARG_VALUE');
    expect(lease.released).toBe(false);
    lease.releaseSync();
  });

  test('paths with a lone surrogate are rejected', () => {
    expect(catchErrSync(() => LockSpace.open(path.join(tmp.dir, '\uD800'))).code).toBe('ERR_INVALID_ARG_VALUE');
    expect(catchErrSync(() => resourceNameForPath(path.join(tmp.dir, '\uD800'))).code).toBe('ERR_INVALID_ARG_VALUE');
    expect(catchErrSync(() => resourceNameForPath('/x\uDFFF', { canonicalize: false })).code).toBe('ERR_INVALID_ARG_VALUE');
    const pathMode = LockSpace.open(null);
    expect(catchErrSync(() => pathMode.acquireSync(path.join(tmp.dir, '\uD800'))).code).toBe('ERR_INVALID_ARG_VALUE');
    expect(fs.readdirSync(tmp.dir)).toEqual([]);
  });
});

describe('every failure of the package is a LockspaceError', () => {
  test('resourceNameForPath in a missing directory: ENOENT as a LockspaceError', () => {
    const missing = path.join(tmp.dir, 'no', 'such', 'disk.img');
    const e = catchErrSync(() => resourceNameForPath(missing));
    expect(e).toBeInstanceOf(LockspaceError);
    expect(e).toBeInstanceOf(lockspace.LockspaceError);
    expect(isLockspaceError(e, 'ENOENT')).toBe(true);
    expect(e).toMatchObject({ code: 'ENOENT', errno: -2, syscall: 'realpath', path: missing });
    expect(e.message).toBe(`ENOENT: no such file or directory, realpath '${missing}'`);
  });

  test('isLockspaceError tells LockspaceErrors (and their code) from other errors', async () => {
    const ls = LockSpace.open(tmp.dir);
    const held = ls.acquireSync('r', { autoCreate: true, owner: 'a' });
    const busy = catchErrSync(() => ls.acquireSync('r', { owner: 'b' }));
    expect(isLockspaceError(busy)).toBe(true);
    expect(isLockspaceError(busy, 'EBUSY')).toBe(true);
    expect(isLockspaceError(busy, 'ENOENT')).toBe(false);
    expect(isLockspaceError(new Error('EBUSY'))).toBe(false);
    expect(isLockspaceError({ code: 'EBUSY' }, 'EBUSY')).toBe(false);
    const notHeld = catchErrSync(() => ls.releaseSync('r', 'b'));
    expect(isLockspaceError(notHeld, 'ERR_LOCK_NOT_HELD')).toBe(true);
    held.releaseSync();
  });

  test('test hooks are not in the public entry; they are in lockspace/internal', () => {
    expect(Object.keys(lockspace)).not.toContain('_debug');
    const root = path.join(__dirname, '..');
    const r = spawnSync(
      process.execPath,
      [
        '-e',
        `const pub = require('lockspace'); const internal = require('lockspace/internal');
         console.log(JSON.stringify({ pub: '_debug' in pub, stats: typeof internal._debug.stats().leases }));`,
      ],
      { cwd: root, encoding: 'utf8' },
    );
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual({ pub: false, stats: 'number' });
  });
});
