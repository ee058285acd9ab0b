import { resolve as resolvePath } from 'node:path';
import { debuglog } from 'node:util';
import { threadId } from 'node:worker_threads';

import { AbortError, ErrorRecord, fromRecord, invalidArgType, invalidArgValue, LockspaceError, systemError, timeoutError } from './errors';
import { AUTO_CREATE, binding, Delivery, DirHandle, InspectRecord, isErrorRecord, LeaseCheck, OFD, SHARED, VerifyRecord } from './native';
import { kernelLocksOn } from './proclocks';
import { checkName, checkOptions, checkOwner, Owner, ownerFromKey, ownerKey } from './validate';

const debug = debuglog('lockspace');
const native = binding;
const THREAD_ID = threadId;
const THREAD_OWNER_KEY = ownerKey(threadId);

export type { Owner } from './validate';

/** `'posix'`: classic fcntl record locks (F_SETLK), owned by the process, holder pid visible to
 *  `F_GETLK`/`lslocks`. `'ofd'`: Linux open-file-description locks (F_OFD_SETLK), owned by the open
 *  file, so no other descriptor's close can drop them; holder pid shows as -1. Both conflict with
 *  other processes' POSIX locks (virtlockd, `fcntl.lockf`). */
export type LockType = 'posix' | 'ofd';

export interface LockSpaceOptions {
  /** Default `'posix'`. */
  lockType?: LockType;
  /** Network file systems: how often (ms) held leases are checked in the background, so that a lost
   *  lock aborts `lease.signal` without a call by the holder. Default 2000; 0 turns it off. */
  checkInterval?: number;
}

export interface AcquireSyncOptions {
  /** Shared (read) lock instead of exclusive (write). Shared holders in this process join one lock. */
  shared?: boolean;
  /** Create the file (mode 0600) if missing, and delete it when the last owner releases it. */
  autoCreate?: boolean;
  /** Who holds it (any number or non-empty string); default: the calling thread's `threadId`. */
  owner?: Owner;
}

export interface AcquireOptions extends AcquireSyncOptions {
  /** Wait until the lock is free instead of failing with EBUSY. */
  wait?: boolean;
  /** With `wait`: give up after this many milliseconds (rejects with ETIMEDOUT). */
  timeout?: number;
  /** With `wait`: abort the wait (rejects with an AbortError). */
  signal?: AbortSignal;
}

export interface ResourceInfo {
  name: string;
  path: string;
  shared: boolean;
  autoCreate: boolean;
  owners: Owner[];
}

const SYNC_OPTIONS = { shared: 'boolean', autoCreate: 'boolean', owner: 'owner' } as const;
const ASYNC_OPTIONS = { ...SYNC_OPTIONS, wait: 'boolean', timeout: 'number', signal: 'signal' } as const;
const OPEN_OPTIONS = { lockType: 'string', checkInterval: 'number' } as const;
const DEFAULT_CHECK_INTERVAL = 2000;

const disposeSymbol: typeof Symbol.dispose = Symbol.dispose ?? Symbol.for('nodejs.dispose');
const asyncDisposeSymbol: typeof Symbol.asyncDispose = Symbol.asyncDispose ?? Symbol.for('nodejs.asyncDispose');

const LEASE_TOKEN: unique symbol = Symbol('lockspace.lease');

// Lease internals the lockspace and its lease checker use (set by Lease's static block).
let leaseInternals: {
  id(lease: Lease): number;
  watch(lease: Lease, checker: LeaseChecker): void;
  take(lease: Lease, record: VerifyRecord): boolean;
  remote(lease: Lease, remote: boolean): void;
};

/** A held lock. Release it once (further releases do nothing); `await using` releases it too. */
export class Lease {
  /** The resource name it was acquired by. */
  readonly name: string;
  readonly shared: boolean;
  readonly owner: Owner;
  #id: number;
  #prefix: string;
  #remote: boolean;
  #released = false;
  // Lost locks (see "Lost locks" below): the error once known lost, the signal's controller (made
  // on first use of `signal`), and the background checker watching this lease.
  #lost: LockspaceError | undefined;
  #controller: AbortController | undefined;
  #checker: LeaseChecker | undefined;

  /** Leases come from `acquire`/`acquireSync` only: the token is not exported. */
  constructor(token: typeof LEASE_TOKEN, id: number, name: string, prefix: string, shared: boolean, owner: Owner, remote: boolean) {
    if (token !== LEASE_TOKEN) throw new TypeError('Illegal constructor: leases come from LockSpace#acquire');
    this.#id = id;
    this.name = name;
    this.#prefix = prefix;
    this.shared = shared;
    this.owner = owner;
    this.#remote = remote;
  }

  /** The file it locks. */
  get path(): string {
    return this.#prefix + this.name;
  }

  /** True once released by any means: this lease, `release(name, owner)`, `releaseOwner`, worker exit. */
  get released(): boolean {
    if (!this.#released && !native.isHeld(this.#id)) this.#released = true;
    return this.#released;
  }

  releaseSync(): void {
    if (this.#released) return;
    this.#released = true;
    this.#checker?.remove(this);
    const released = native.release(this.#id);
    if (debug.enabled && released) debug('release %s owner=%j', this.path, this.owner);
  }

  async release(): Promise<void> {
    if (!this.#remote) return this.releaseSync();
    if (this.#released) return;
    this.#released = true;
    this.#checker?.remove(this);
    const released = await native.releaseAsync(this.#id);
    if (debug.enabled && released) debug('release %s owner=%j', this.path, this.owner);
  }

  [disposeSymbol](): void {
    this.releaseSync();
  }

  /* ---------------------------------------------------------------- lost locks */

  /**
   * Aborts when the lock is known lost (the file system's client or server failed, another host
   * took it, its file was unlinked or replaced); `signal.reason` is a LockspaceError with code
   * `'ERR_LOCK_LOST'`, the path and a `cause`. Pass it to the work the lock protects. A lease that
   * is released (and not lost) never aborts.
   */
  get signal(): AbortSignal {
    if (!this.#controller) {
      this.#controller = new AbortController();
      if (this.#lost) this.#controller.abort(this.#lost);
    }
    return this.#controller.signal;
  }

  /**
   * Resolves if the lock is still held and the name still reaches its file. Otherwise aborts
   * `signal` and rejects with the ERR_LOCK_LOST error (ERR_LOCK_NOT_HELD once released). On a
   * network file system it asks the server about the held descriptor (F_GETLK / F_OFD_GETLK: a
   * query, never a change of the lock), on the threadpool.
   */
  async verify(): Promise<void> {
    if (this.#lost) throw this.#lost;
    if (this.#released) throw notHeldError(this.path);
    const record = this.#remote ? (await native.verifyAsync([this.#id]))[0] : native.verify(this.#id);
    this.#take(record);
    if (this.#lost) throw this.#lost;
    if (record[0] !== LeaseCheck.Held || this.#released) {
      // Released meanwhile (here, by name, by releaseOwner or by the worker's exit).
      this.#released = true;
      throw notHeldError(this.path);
    }
  }

  /** Records a verify outcome; true when the lease is still worth checking. */
  #take(record: VerifyRecord): boolean {
    const check = record[0];
    if (check === LeaseCheck.Held) return true;
    if (check === LeaseCheck.NotHeld) {
      this.#checker?.remove(this);
      return false;
    }
    if (!this.#lost && !this.#released) {
      this.#lost = lostError(record);
      this.#checker?.remove(this);
      if (debug.enabled) debug('lost %s: %s', this.path, this.#lost.message);
      this.#controller?.abort(this.#lost);
    }
    return false;
  }

  static {
    leaseInternals = {
      id: (lease) => lease.#id,
      watch: (lease, checker) => {
        lease.#checker = checker;
        checker.add(lease);
      },
      take: (lease, record) => lease.#take(record),
      remote: (lease, remote) => {
        lease.#remote = remote;
      },
    };
  }

  [asyncDisposeSymbol](): Promise<void> {
    return this.release();
  }
}

interface Pending {
  resolve(lease: number): void;
  reject(error: Error): void;
}

const pending = new Map<number, Pending>();

native.setDispatcher((batch: Delivery[]) => {
  for (const [request, lease, error] of batch) {
    const p = pending.get(request);
    if (!p) {
      if (lease > 0) native.release(lease);  // nobody to give it to: never leak a lock
      continue;
    }
    pending.delete(request);
    if (error) p.reject(fromRecord(error));
    else p.resolve(lease);
  }
});

function throwIfError<T>(result: T): Exclude<T, unknown[]> {
  if (isErrorRecord(result)) throw fromRecord(result);
  return result as Exclude<T, unknown[]>;
}

function abortError(signal: AbortSignal): AbortError {
  return new AbortError(undefined, { cause: signal.reason });
}

/**
 * A lockspace: a directory of lock files (or, with a `null` directory, absolute paths) locked with
 * fcntl through one process-wide table shared by the main thread and every worker thread.
 */
export class LockSpace {
  /** Canonical (realpath) directory, or null when resource names are absolute paths. */
  readonly directory: string | null;
  readonly lockType: LockType;
  #handle: DirHandle;
  #remote: boolean;
  #kind: number;
  #prefix: string;
  #checker: LeaseChecker | undefined;

  private constructor(handle: DirHandle, directory: string | null, remote: boolean, lockType: LockType) {
    this.#handle = handle;
    this.directory = directory;
    this.#prefix = directory === null ? '' : directory.endsWith('/') ? directory : `${directory}/`;
    this.#remote = remote;
    this.lockType = lockType;
    this.#kind = lockType === 'ofd' ? OFD : 0;
  }

  /**
   * Opens the lockspace in `directory` (created with mode 0700, parents too, if missing), or the
   * path-mode lockspace when `directory` is null.
   */
  static open(directory: string | null, options?: LockSpaceOptions): LockSpace {
    if (directory !== null && typeof directory !== 'string') {
      throw invalidArgType('directory', 'of type string or null', directory);
    }
    if (directory === '') throw invalidArgValue('directory', directory, 'must not be empty');
    if (typeof directory === 'string' && directory.includes('\0')) {
      throw invalidArgValue('directory', directory, 'must not contain NUL bytes');
    }
    const opts = checkOpenOptions(options);
    const lockType = opts.lockType ?? 'posix';
    const opened = throwIfError(native.openDir(directory === null ? null : resolvePath(directory)));
    const ls = new LockSpace(opened.handle, opened.path, opened.remote, lockType);
    const interval = opts.checkInterval ?? DEFAULT_CHECK_INTERVAL;
    if (interval > 0) ls.#checker = new LeaseChecker(interval);
    return ls;
  }

  /** Closes the descriptors kept open (unlocked) after releases for fast re-acquisition. */
  static closeIdleFds(): number {
    return native.closeIdleFds();
  }

  #path(name: string): string {
    return this.#prefix + name;
  }

  #remoteFor(name: string): boolean {
    return this.directory === null ? native.isRemote(this.#handle, name) : this.#remote;
  }

  #name(name: unknown): string {
    return checkName(name, this.directory === null);
  }

  #lease(result: number | unknown[], name: string, shared: boolean, owner: Owner): Lease {
    if (isErrorRecord(result)) {
      const err = fromRecord(result);
      if (debug.enabled) debug('%s %s: %s', err.code === 'EBUSY' ? 'conflict' : 'acquire failed', this.#path(name), err.message);
      throw err;
    }
    if (debug.enabled) debug('acquire %s %s owner=%j', this.#path(name), shared ? 'shared' : 'exclusive', owner);
    const lease = new Lease(LEASE_TOKEN, result as number, name, this.#prefix, shared, owner, this.#remote);
    if (this.directory === null || this.#remote) this.#watch(lease, name);
    return lease;
  }

  /** Network file systems: the lease is checked in the background (path mode: per name). */
  #watch(lease: Lease, name: string): void {
    const remote = this.#remoteFor(name);
    leaseInternals.remote(lease, remote);
    if (remote && this.#checker) leaseInternals.watch(lease, this.#checker);
  }

  /**
   * Who holds `name`: `state` and `holders` are the kernel's view ([{ pid, mode, kind }], pid null
   * when unknown or on another host): from /proc/locks on local file systems, from a lock query to
   * the server (F_GETLK) on network ones, which names one other holder at most. `owners` are this
   * process's owners of it, `waiters` how many of its requests wait for it. Opens nothing for
   * writing, locks nothing, never drops a lock of this process. ENOENT if the file does not exist.
   */
  async inspect(name: string): Promise<InspectInfo> {
    const n = this.#name(name);
    const record = this.#remoteFor(n) ? await native.inspectAsync(this.#handle, n) : native.inspect(this.#handle, n);
    return inspectInfo(n, throwIfError(record));
  }

  inspectSync(name: string): InspectInfo {
    return inspectInfo(name, throwIfError(native.inspect(this.#handle, this.#name(name))));
  }

  /** Creates the resource file (mode 0600). EEXIST if it exists; EBUSY if this process holds it. */
  createSync(name: string): void {
    throwIfError(native.create(this.#handle, this.#name(name)));
  }

  async create(name: string): Promise<void> {
    const n = this.#name(name);
    throwIfError(this.#remoteFor(n) ? await native.createAsync(this.#handle, n) : native.create(this.#handle, n));
  }

  /** Deletes the resource file, after locking it exclusively: EBUSY if held here or by another
   *  process. A missing file is not an error. */
  deleteSync(name: string): void {
    throwIfError(native.remove(this.#handle, this.#name(name), this.#kind));
  }

  async delete(name: string): Promise<void> {
    const n = this.#name(name);
    throwIfError(
      this.#remoteFor(n) ? await native.removeAsync(this.#handle, n, this.#kind) : native.remove(this.#handle, n, this.#kind),
    );
  }

  /** Acquires without waiting: EBUSY at once if this process or another one holds it. */
  acquireSync(name: string, options?: AcquireSyncOptions): Lease {
    const n = this.#name(name);
    if (options === undefined) {
      return this.#lease(native.acquire(this.#handle, n, this.#kind, THREAD_OWNER_KEY), n, false, THREAD_ID);
    }
    const opts = checkOptions<AcquireSyncOptions>(options, SYNC_OPTIONS, 'acquireSync (it never waits; use acquire)');
    const shared = opts.shared === true;
    const owner = opts.owner ?? THREAD_ID;
    const flags = (shared ? SHARED : 0) | (opts.autoCreate ? AUTO_CREATE : 0) | this.#kind;
    return this.#lease(native.acquire(this.#handle, n, flags, ownerKey(owner)), n, shared, owner);
  }

  /** Acquires the lock; with `wait`, waits for it (FIFO within this process), bounded by `timeout`
   *  and `signal`. Waiting never blocks the event loop nor a libuv threadpool thread. */
  async acquire(name: string, options?: AcquireOptions): Promise<Lease> {
    const n = this.#name(name);
    const opts = checkOptions<AcquireOptions>(options, ASYNC_OPTIONS, 'acquire');
    if (!opts.wait && (opts.timeout !== undefined || opts.signal !== undefined)) {
      throw invalidArgValue('options', options, 'sets timeout or signal without wait: true');
    }
    const shared = opts.shared === true;
    const owner = opts.owner ?? THREAD_ID;
    const key = opts.owner === undefined ? THREAD_OWNER_KEY : ownerKey(owner);
    const flags = (shared ? SHARED : 0) | (opts.autoCreate ? AUTO_CREATE : 0) | this.#kind;
    if (!opts.wait) {
      const result = this.#remoteFor(n)
        ? await native.acquireAsync(this.#handle, n, flags, key)
        : native.acquire(this.#handle, n, flags, key);
      return this.#lease(result, n, shared, owner);
    }
    const { signal, timeout } = opts;
    if (signal?.aborted) throw abortError(signal);
    let request: number;
    // Network file systems: the first attempt runs on the threadpool too; its outcome (granted, failed
    // or queued) comes back through `started`, a later grant through the dispatcher.
    let started: Promise<number | ErrorRecord> | undefined;
    if (this.#remoteFor(n)) {
      [request, started] = native.acquireWaitAsync(this.#handle, n, flags, key);
    } else {
      const result = native.acquireWait(this.#handle, n, flags, key);
      if (isErrorRecord(result) || result > 0) return this.#lease(result, n, shared, owner);
      request = -result;
    }
    if (debug.enabled) debug('wait %s %s owner=%j', this.#path(n), shared ? 'shared' : 'exclusive', owner);
    const lease = await new Promise<number>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const onAbort = (): void => giveUp(abortError(signal!));
      const cleanup = (): void => {
        if (timer !== undefined) clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
      };
      // Only a request still queued can be given up; otherwise its outcome is already on its way.
      const giveUp = (error: Error): void => {
        if (!native.cancel(request)) return;
        pending.delete(request);
        cleanup();
        reject(error);
      };
      pending.set(request, {
        resolve: (id) => {
          cleanup();
          resolve(id);
        },
        reject: (error) => {
          cleanup();
          reject(error);
        },
      });
      if (timeout !== undefined && timeout !== Infinity) {
        timer = setTimeout(() => giveUp(timeoutError(this.#path(n), timeout)), Math.min(timeout, 2 ** 31 - 1));
      }
      signal?.addEventListener('abort', onAbort, { once: true });
      started?.then(
        (r) => {
          // 0: queued, the dispatcher brings the outcome; -1: cancelled, already settled by giveUp.
          const p = r === 0 || r === -1 ? undefined : pending.get(request);
          if (!p) return;
          pending.delete(request);
          if (isErrorRecord(r)) p.reject(fromRecord(r));
          else p.resolve(r);
        },
        (e: unknown) => {
          const p = pending.get(request);
          if (!p) return;
          pending.delete(request);
          p.reject(e instanceof Error ? e : new Error(String(e)));
        },
      );
    });
    return this.#lease(lease, n, shared, owner);
  }

  /** Releases what `owner` (default: this thread's threadId) holds on `name`, like libvirt's
   *  virLockSpaceReleaseResource. ERR_LOCK_NOT_HELD if that owner does not hold it. */
  releaseSync(name: string, owner?: Owner): void {
    const n = this.#name(name);
    const o = owner === undefined ? THREAD_ID : checkOwner(owner, 'owner');
    const result = native.releaseByName(this.#handle, n, ownerKey(o));
    if (isErrorRecord(result)) throw fromRecord(result, o);
    if (debug.enabled) debug('release %s owner=%j', this.#path(n), o);
  }

  async release(name: string, owner?: Owner): Promise<void> {
    const n = this.#name(name);
    if (!this.#remoteFor(n)) return this.releaseSync(name, owner);
    const o = owner === undefined ? THREAD_ID : checkOwner(owner, 'owner');
    const result = await native.releaseByNameAsync(this.#handle, n, ownerKey(o));
    if (isErrorRecord(result)) throw fromRecord(result, o);
    if (debug.enabled) debug('release %s owner=%j', this.#path(n), o);
  }

  /** Releases everything `owner` holds through this lockspace's directory; returns how many. */
  releaseOwnerSync(owner: Owner): number {
    const count = native.releaseOwner(this.#handle, ownerKey(checkOwner(owner, 'owner')));
    if (debug.enabled) debug('releaseOwner %j in %s: %d', owner, this.directory, count);
    return count;
  }

  async releaseOwner(owner: Owner): Promise<number> {
    // Path mode: the owner's resources may be on any file system, so the threadpool it is.
    if (!this.#remote && this.directory !== null) return this.releaseOwnerSync(owner);
    const count = await native.releaseOwnerAsync(this.#handle, ownerKey(checkOwner(owner, 'owner')));
    if (debug.enabled) debug('releaseOwner %j in %s: %d', owner, this.directory, count);
    return count;
  }

  /** The resources this process holds through this lockspace's directory. */
  resources(): ResourceInfo[] {
    return native.resources(this.#handle).map(([name, path, shared, autoCreate, owners]) => ({
      name,
      path,
      shared,
      autoCreate,
      owners: owners.map(ownerFromKey),
    }));
  }
}

function checkOpenOptions(options: unknown): LockSpaceOptions {
  if (options === undefined) return {};
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw invalidArgType('options', 'of type object', options);
  }
  for (const key of Object.keys(options)) {
    if (!(key in OPEN_OPTIONS)) {
      throw invalidArgValue('options', options, `has an unknown property "${key}" for LockSpace.open (known: lockType)`);
    }
  }
  const { lockType, checkInterval } = options as LockSpaceOptions;
  if (lockType !== undefined && lockType !== 'posix' && lockType !== 'ofd') {
    if (typeof lockType !== 'string') throw invalidArgType('options.lockType', 'of type string', lockType);
    throw invalidArgValue('options.lockType', lockType, "must be 'posix' or 'ofd'");
  }
  if (checkInterval !== undefined) {
    if (typeof checkInterval !== 'number') throw invalidArgType('options.checkInterval', 'of type number', checkInterval);
    if (!Number.isInteger(checkInterval) || checkInterval < 0 || checkInterval > 2 ** 31 - 1) {
      throw invalidArgValue('options.checkInterval', checkInterval, 'must be an integer from 0 (off) to 2147483647 (ms)');
    }
  }
  return options as LockSpaceOptions;
}

/* ------------------------------------------------------------------ lost locks and inspection */

/**
 * Checks the leases of one lockspace on a network file system every `interval` ms: one threadpool
 * job for all of them at a time, never more. Its timer never keeps the process alive and never
 * throws.
 */
class LeaseChecker {
  #leases = new Set<Lease>();
  #timer: NodeJS.Timeout | undefined;
  #running = false;

  constructor(readonly interval: number) {}

  add(lease: Lease): void {
    this.#leases.add(lease);
    if (!this.#timer) {
      this.#timer = setInterval(() => this.#tick(), this.interval);
      this.#timer.unref();
    }
  }

  remove(lease: Lease): void {
    this.#leases.delete(lease);
    if (this.#leases.size === 0 && this.#timer) {
      clearInterval(this.#timer);
      this.#timer = undefined;
    }
  }

  #tick(): void {
    if (this.#running || this.#leases.size === 0) return;
    this.#running = true;
    const leases = [...this.#leases];
    native.verifyAsync(leases.map((l) => leaseInternals.id(l))).then(
      (records) => {
        this.#running = false;
        records.forEach((record, i) => {
          try {
            leaseInternals.take(leases[i], record);
          } catch (err) {
            debug('lease check: %s', err); // a listener of lease.signal threw: not ours to rethrow
          }
        });
      },
      (err: unknown) => {
        this.#running = false;
        debug('lease check failed: %s', err);
      },
    );
  }
}

function notHeldError(path: string): LockspaceError {
  return new LockspaceError(`ERR_LOCK_NOT_HELD: lock not held (released), verify '${path}'`, { code: 'ERR_LOCK_NOT_HELD', path });
}

const EAGAIN = 11;
const ENOENT = 2;

/** The ERR_LOCK_LOST error for a verify outcome that says the lock is gone. */
function lostError([check, errnum, syscall, path]: VerifyRecord): LockspaceError {
  let cause: LockspaceError;
  let what: string;
  switch (check) {
    case LeaseCheck.Conflict:
      cause = systemError(EAGAIN, 'fcntl', path, 'another host or process holds a conflicting lock');
      what = 'another host or process holds it now';
      break;
    case LeaseCheck.Unlinked:
      cause = systemError(ENOENT, 'stat', path, 'the lock file was unlinked');
      what = 'its file was unlinked';
      break;
    case LeaseCheck.Replaced:
      cause = new LockspaceError(`ERR_LOCK_FILE_REPLACED: the name reaches another file now, '${path}'`, {
        code: 'ERR_LOCK_FILE_REPLACED',
        path,
      });
      what = 'its file was replaced';
      break;
    default:
      cause = systemError(errnum, syscall, path, 'the file system failed the lock query');
      what = `the file system reports ${cause.code}`;
  }
  return new LockspaceError(`ERR_LOCK_LOST: lock lost (${what}), '${path}'`, { code: 'ERR_LOCK_LOST', path, cause });
}

export interface LockHolder {
  /** null when unknown (OFD locks) or on another host. */
  pid: number | null;
  mode: 'shared' | 'exclusive';
  kind: LockType;
}

export interface InspectInfo {
  name: string;
  path: string;
  state: 'free' | 'shared' | 'exclusive';
  holders: LockHolder[];
  /** This process's owners of it. */
  owners: Owner[];
  /** How many requests of this process wait for it. */
  waiters: number;
}

function inspectInfo(name: string, r: InspectRecord): InspectInfo {
  const holders: LockHolder[] = [];
  if (!r.remote) {
    const locks = kernelLocksOn(r.major, r.minor, r.ino) ?? [];
    for (const l of locks) if (!l.blocked) holders.push({ pid: l.pid, mode: l.mode, kind: l.kind });
  } else {
    // The server does not tell this process's own locks (they do not conflict with themselves).
    if (r.held) holders.push({ pid: process.pid, mode: r.heldShared ? 'shared' : 'exclusive', kind: r.heldOfd ? 'ofd' : 'posix' });
    if (r.otherHeld) holders.push({ pid: null, mode: r.otherShared ? 'shared' : 'exclusive', kind: r.otherOfd ? 'ofd' : 'posix' });
  }
  const state = holders.some((h) => h.mode === 'exclusive') ? 'exclusive' : holders.length > 0 ? 'shared' : 'free';
  return { name, path: r.path, state, holders, owners: r.owners.map(ownerFromKey), waiters: r.waiters };
}

export { LockspaceError };
