/* LockSpace: a directory's (or the path-mode) lockspace and the calls on its resources. */
import { threadId } from 'node:worker_threads';

import { ACQUIRE, ACQUIRE_NOW, Acquisition, DEFAULT_ACQUISITION, readAcquisition } from './acquisition';
import { AcquireMessage, debug, debugging, publishRelease, releaseObserved, traceAcquire, traceAcquireSync, tracing } from './diagnostics';
import { ErrorRecord, fromRecord, generationChangedError, invalidArgValue, isLockspaceError, LockspaceError, timeoutError } from './errors';
import { InspectInfo, inspectInfo } from './inspect';
import { Lease, LEASE_TOKEN, leaseInternals } from './lease';
import {
  COVERED,
  ESCALATE_AFTER,
  LeaseSet,
  LockRequest,
  NotTaken,
  readRequests,
  releaseEach,
  releaseEachAsync,
  Requested,
  SetAttempt,
  START_OVER,
} from './lease-set';
import { BoundSet, boundSetOf, HoldForOptions, planHold, startHolder } from './bound';
import { findHolders } from './bound-holders';
import { LeaseChecker } from './lost';
import { AcquireOutcome, binding, DirHandle, FLAGS, isErrorRecord, isQueued, Queued } from './native';
import type {
  AcquireAllOptions,
  AcquireAllSyncOptions,
  AcquireOptions,
  AcquireSyncOptions,
  LockSpaceOptions,
  LockType,
  ResourceInfo,
} from './options';
import { absoluteAsKernel, fileIdentity, fileIdentityAsync, withCanonicalDir, withCanonicalDirAsync } from './paths';
import { checkName, checkOwner, checkPath, Owner, ownerFromKey, ownerKey, readOptions, signalAborted } from './validate';
import { abortError, awaitGrant } from './waits';
import { LockManager } from './locks';

const native = binding;
const THREAD_ID = threadId;

export { Lease } from './lease';
export { LeaseSet } from './lease-set';
export { BoundSet } from './bound';

const DEFAULT_CHECK_INTERVAL = 2000;
/** PostgreSQL's deadlock_timeout: a wait looks for a cycle of waits after this many ms. */
const DEFAULT_DEADLOCK_TIMEOUT = 1000;

function throwIfError<T>(result: T): Exclude<T, unknown[]> {
  if (isErrorRecord(result)) throw fromRecord(result);
  return result as Exclude<T, unknown[]>;
}

/**
 * A lockspace: a directory of lock files (or, with a `null` directory, absolute paths) locked with
 * fcntl through one process-wide table shared by the main thread and every worker thread.
 */
export class LockSpace {
  /** Canonical (realpath) directory, or null when resource names are absolute paths. */
  readonly directory: string | null;
  readonly lockType: LockType;
  /** Whether grants write holder records into the lock files (`LockSpace.open(dir, { records: true })`). */
  readonly records: boolean;
  #handle: DirHandle;
  #remote: boolean;
  #kind: number;
  #prefix: string;
  #locks: LockManager | undefined;
  #checker: LeaseChecker<Lease> | undefined;
  #lastName: string | undefined;
  #deadlockTimeout = DEFAULT_DEADLOCK_TIMEOUT;

  private constructor(handle: DirHandle, directory: string | null, remote: boolean, lockType: LockType, records: boolean) {
    this.#handle = handle;
    this.records = records;
    this.directory = directory;
    this.#prefix = directory === null ? '' : directory.endsWith('/') ? directory : `${directory}/`;
    this.#remote = remote;
    this.lockType = lockType;
    this.#kind = lockType === 'ofd' ? FLAGS.ofd : 0;
  }

  /**
   * Opens the lockspace in `directory` (created with mode 0700, parents too, if missing), or the
   * path-mode lockspace when `directory` is null. The directory is resolved as the kernel does
   * (`link/..` is the parent of link's target).
   */
  static open(directory: string | null, options?: LockSpaceOptions): LockSpace {
    const dir = checkPath('directory', directory, true);
    const opts = readOptions<LockSpaceOptions>(
      options,
      { lockType: 'lockType', checkInterval: 'interval', records: 'boolean', deadlockTimeout: 'timeout' },
      'LockSpace.open',
    );
    const lockType = opts.lockType ?? 'posix';
    const opened = throwIfError(native.openDir(dir === null ? null : absoluteAsKernel(dir)));
    const ls = new LockSpace(opened.handle, opened.path, opened.remote, lockType, opts.records === true);
    ls.#deadlockTimeout = opts.deadlockTimeout ?? DEFAULT_DEADLOCK_TIMEOUT;
    const interval = opts.checkInterval ?? DEFAULT_CHECK_INTERVAL;
    if (interval > 0) ls.#checker = new LeaseChecker<Lease>(interval, leaseInternals);
    return ls;
  }

  /** Closes the descriptors kept open (unlocked) after releases for fast re-acquisition. */
  static closeIdleFds(): number {
    return native.closeIdleFds();
  }

  /** A Web Locks-shaped manager (`navigator.locks` style) on this lockspace. */
  get locks(): LockManager {
    return (this.#locks ??= new LockManager(this, { queued: () => native.queued(this.#handle), remote: this.#remote }));
  }

  #path(name: string): string {
    return this.#prefix + name;
  }

  /**
   * The one place that decides where a call's syscalls run: on the calling thread (local file
   * systems answer at once), or on libuv's threadpool (`true`: a network file system may take
   * seconds). `name` null: any file of this lockspace (releaseOwner). A lease keeps its file's answer.
   */
  #onPool(name: string | null): boolean {
    if (this.directory !== null) return this.#remote;
    return name === null || native.isRemote(this.#handle, name);
  }

  /** Checks a resource name (checkName): the last one that passed is not checked again. */
  #name(name: unknown): string {
    if (typeof name === 'string' && name === this.#lastName) return name;
    return (this.#lastName = checkName(name, this.directory === null));
  }

  #lease(result: AcquireOutcome, name: string, a: Acquisition, onPool?: boolean, generation: bigint | null = null): Lease {
    if (isErrorRecord(result)) {
      const err = fromRecord(result);
      if (debugging) debug('%s %s: %s', err.code === 'EBUSY' ? 'conflict' : 'acquire failed', this.#path(name), err.message);
      throw err;
    }
    if (debugging) debug('acquire %s %s owner=%j', this.#path(name), a.shared ? 'shared' : 'exclusive', a.owner);
    const pool = onPool ?? this.#onPool(name);
    const lease = new Lease(LEASE_TOKEN, result, name, this.#prefix, a.shared, a.owner, pool, generation);
    // Network file systems: the lease is checked in the background.
    if (pool && this.#checker) leaseInternals.watch(lease, this.#checker);
    return lease;
  }

  /* ---------------------------------------------------------------- holder records */

  /** label and ifGeneration need records: without them they would be silently ignored. */
  #checkRecordOptions(a: Acquisition, options: unknown): void {
    if (this.records || (a.label === undefined && a.ifGeneration === undefined)) return;
    const which = a.label !== undefined ? 'label' : 'ifGeneration';
    throw invalidArgValue('options', options, `sets ${which}, which needs a lockspace opened with { records: true }`);
  }

  /**
   * Every grant (a fresh lock, a join, a hand-off, a grant after waiting, a set's member) comes here
   * with its lease id before it becomes a Lease: the native core writes the holder record under the
   * lock (native/core/registry_record.cc) and returns the generation. On failure, and when
   * `ifGeneration` is not the last exclusive generation, the lease is released and the acquire fails.
   */
  #recordSync(id: number, n: string, a: Acquisition): bigint {
    const r = native.writeRecord(id, a.label ?? '', a.ifGeneration);
    if (isErrorRecord(r)) {
      native.release(id);
      throw fromRecord(r);
    }
    if (r.changed) {
      native.release(id);
      throw generationChangedError(this.#path(n), a.ifGeneration ?? 0n, r.last);
    }
    return r.generation;
  }

  async #record(id: number, n: string, a: Acquisition, onPool: boolean): Promise<bigint> {
    if (!onPool) return this.#recordSync(id, n, a);
    const r = await native.writeRecordAsync(id, a.label ?? '', a.ifGeneration);
    if (isErrorRecord(r)) {
      await native.releaseAsync(id);
      throw fromRecord(r);
    }
    if (r.changed) {
      await native.releaseAsync(id);
      throw generationChangedError(this.#path(n), a.ifGeneration ?? 0n, r.last);
    }
    return r.generation;
  }

  /** A granted lease id (or the failure) as a Lease, its record written first when records are on. */
  /** The lease an acquire's answer grants (its error thrown); with holder records, once written. */
  #answer(result: AcquireOutcome, n: string, a: Acquisition, onPool: boolean): Lease | Promise<Lease> {
    return this.records ? this.#granted(result, n, a, onPool) : this.#lease(result, n, a, onPool);
  }

  async #granted(result: AcquireOutcome, n: string, a: Acquisition, onPool: boolean): Promise<Lease> {
    if (!this.records || isErrorRecord(result)) return this.#lease(result, n, a, onPool);
    return this.#lease(result, n, a, onPool, await this.#record(result, n, a, onPool));
  }

  #flags(a: Acquisition): number {
    return (a.shared ? FLAGS.shared : 0) | (a.autoCreate ? FLAGS.autoCreate : 0) | this.#kind;
  }

  #message(name: string, a: Acquisition): () => AcquireMessage {
    return () => ({ name, path: this.#path(name), shared: a.shared, owner: a.owner, wait: a.wait });
  }

  /**
   * Who holds `name`: `state` and `holders` are the kernel's view ([{ pid, mode, kind }], pid null
   * when unknown or on another host): from /proc/locks on local file systems, from a lock query to
   * the server (F_GETLK) on network ones, which names one other holder at most. `owners` are this
   * process's owners of it, `waiters` how many of its requests wait for it; `records` the holder
   * records of the holders that hold it now, on any host (records.ts), `generation` the last
   * exclusive generation counted in the file. Opens nothing for writing, locks nothing, never drops a
   * lock of this process. ENOENT if the file does not exist.
   */
  async inspect(name: string): Promise<InspectInfo> {
    const n = this.#name(name);
    const record = this.#onPool(n) ? await native.inspectAsync(this.#handle, n) : native.inspect(this.#handle, n);
    return inspectInfo(n, throwIfError(record));
  }

  inspectSync(name: string): InspectInfo {
    const n = this.#name(name);
    return inspectInfo(n, throwIfError(native.inspect(this.#handle, n)));
  }

  /** Creates the resource file (mode 0600). EEXIST if it exists; EBUSY if this process holds it. */
  createSync(name: string): void {
    throwIfError(native.create(this.#handle, this.#name(name)));
  }

  async create(name: string): Promise<void> {
    const n = this.#name(name);
    throwIfError(this.#onPool(n) ? await native.createAsync(this.#handle, n) : native.create(this.#handle, n));
  }

  /** Deletes the resource file, after locking it exclusively: EBUSY if held here or by another
   *  process. A missing file is not an error. */
  deleteSync(name: string): void {
    throwIfError(native.remove(this.#handle, this.#name(name), this.#kind));
  }

  async delete(name: string): Promise<void> {
    const n = this.#name(name);
    throwIfError(
      this.#onPool(n) ? await native.removeAsync(this.#handle, n, this.#kind) : native.remove(this.#handle, n, this.#kind),
    );
  }

  /** Acquires without waiting: EBUSY at once if this process or another one holds it. */
  acquireSync(name: string, options?: AcquireSyncOptions): Lease {
    const n = this.#name(name);
    const a = options === undefined ? DEFAULT_ACQUISITION : readAcquisition(options, false);
    if (options !== undefined) this.#checkRecordOptions(a, options);
    if (tracing()) return traceAcquireSync(() => this.#acquireSync(n, a), this.#message(n, a));
    return this.#acquireSync(n, a);
  }

  #acquireSync(n: string, a: Acquisition): Lease {
    const result = native.acquire(this.#handle, n, this.#flags(a), a.key);
    if (!this.records || isErrorRecord(result)) return this.#lease(result, n, a);
    return this.#lease(result, n, a, undefined, this.#recordSync(result, n, a));
  }

  /** Acquires the lock; with `wait`, waits for it (FIFO within this process), bounded by `timeout`
   *  and `signal`. Waiting never blocks the event loop nor a libuv threadpool thread. */
  acquire(name: string, options?: AcquireOptions): Promise<Lease> {
    let n: string;
    let a: Acquisition;
    try {
      n = this.#name(name);
      a = options === undefined ? DEFAULT_ACQUISITION : readAcquisition(options, true);
      if (options !== undefined) this.#checkRecordOptions(a, options);
    } catch (err) {
      return Promise.reject(err);
    }
    return tracing() ? traceAcquire(() => this.#acquire(n, a), this.#message(n, a)) : this.#acquire(n, a);
  }

  /** acquire with options as read (ls.locks: `awaitedBy`); not part of the public API. */
  [ACQUIRE](name: string, a: Acquisition): Promise<Lease> {
    let n: string;
    try {
      n = this.#name(name);
    } catch (err) {
      return Promise.reject(err);
    }
    return tracing() ? traceAcquire(() => this.#acquire(n, a), this.#message(n, a)) : this.#acquire(n, a);
  }

  /** Not an async function: a queued wait's promise is returned as it is, not adopted by another
   *  (each adoption costs microtask turns, which thousands of waits one signal ends all pay). */
  #acquire(n: string, a: Acquisition): Promise<Lease> {
    try {
      const flags = this.#flags(a);
      const onPool = this.#onPool(n);
      if (!a.wait) {
        if (onPool) return native.acquireAsync(this.#handle, n, flags, a.key).then((result) => this.#answer(result, n, a, true));
        return Promise.resolve(this.#answer(native.acquire(this.#handle, n, flags, a.key), n, a, false));
      }
      const { signal } = a;
      if (signal && signalAborted(signal)) return Promise.reject(abortError(signal));
      // Network file systems: the first attempt runs on the threadpool too, so the answer is queued at
      // once and that attempt's outcome comes through its `started`.
      const answer = onPool
        ? native.acquireWaitAsync(this.#handle, n, flags, a.key, a.awaitedBy)
        : native.acquireWait(this.#handle, n, flags, a.key, a.awaitedBy);
      if (!isQueued(answer)) return Promise.resolve(this.#answer(answer, n, a, onPool));
      return this.#queued(answer, n, a, onPool);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /**
   * ACQUIRE without a promise when it can answer at once: in a directory on a local file system,
   * without holder records or tracing, a lock granted now is the Lease itself, and a refusal is
   * thrown. A queued request (and every other case) is ACQUIRE's promise.
   */
  [ACQUIRE_NOW](name: string, a: Acquisition): Lease | Promise<Lease> {
    if (this.directory === null || this.#remote || this.records || tracing()) return this[ACQUIRE](name, a);
    const n = this.#name(name);
    const flags = this.#flags(a);
    if (!a.wait) return this.#lease(native.acquire(this.#handle, n, flags, a.key), n, a, false);
    if (a.signal && signalAborted(a.signal)) throw abortError(a.signal);
    const answer = native.acquireWait(this.#handle, n, flags, a.key, a.awaitedBy);
    if (!isQueued(answer)) return this.#lease(answer, n, a, false);
    return this.#queued(answer, n, a, false);
  }

  /** The rest of a waiting acquire once its request is queued (or started on the threadpool). */
  #queued(answer: Queued, n: string, a: Acquisition, onPool: boolean): Promise<Lease> {
    if (debugging) debug('wait %s %s owner=%j', this.#path(n), a.shared ? 'shared' : 'exclusive', a.owner);
    const deadlockTimeout = a.deadlockTimeout ?? this.#deadlockTimeout;
    const granted = awaitGrant(answer, { signal: a.signal, timeout: a.timeout, deadlockTimeout, path: this.#path(n) });
    // A failed wait's error passes through untouched: no catch and rethrow (thousands of waits one
    // AbortSignal ends would each pay for a throw).
    return granted.then(
      (lease) => this.#answer(lease, n, a, onPool),
      debugging
        ? (err: Error) => {
            debug('acquire failed %s: %s', this.#path(n), err.message);
            throw err;
          }
        : undefined,
    );
  }

  /* ---------------------------------------------------------------- lock sets (lease-set.ts) */

  /**
   * Acquires every resource of `requests` or none: on any failure nothing of the set is held. With
   * `wait`, it never holds part of the set while it waits for the rest (see lease-set.ts), so sets
   * taken in any order cannot deadlock each other; `timeout` and `signal` bound the whole call.
   */
  acquireAll(requests: readonly LockRequest[], options?: AcquireAllOptions): Promise<LeaseSet> {
    let set: SetAttempt | Promise<SetAttempt>;
    let a: Acquisition;
    try {
      const requested = readRequests(requests, this.directory === null);
      a = options === undefined ? DEFAULT_ACQUISITION : readAcquisition(options, true, true);
      if (options !== undefined) this.#checkRecordOptions(a, options);
      set = this.#attempt(requested, a, true);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.#acquireAll(set, a);
  }

  /** acquireAll without waiting: EBUSY (of the first busy member) at once, nothing held. */
  acquireAllSync(requests: readonly LockRequest[], options?: AcquireAllSyncOptions): LeaseSet {
    const requested = readRequests(requests, this.directory === null);
    const a = options === undefined ? DEFAULT_ACQUISITION : readAcquisition(options, false, true);
    if (options !== undefined) this.#checkRecordOptions(a, options);
    const set = this.#attempt(requested, a, false) as SetAttempt;
    try {
      for (;;) {
        const busy = this.#tryRestSync(set);
        if (busy === undefined) return set.result();
        releaseEach(set.letGo());
        if (busy !== START_OVER) throw busy.error;
      }
    } catch (err) {
      releaseEach(set.letGo());
      throw err;
    }
  }

  /** The attempt's members: canonical paths, with the directory of a path-mode name resolved (on the
   *  threadpool for a network file system when `async`). */
  #attempt(requested: Requested[], a: Acquisition, async: boolean): SetAttempt | Promise<SetAttempt> {
    if (this.directory !== null) return new SetAttempt(requested, requested.map((r) => this.#path(r.name)), a);
    if (!async) return new SetAttempt(requested, requested.map((r) => withCanonicalDir(r.name)), a);
    return Promise.all(requested.map((r) => (this.#onPool(r.name) ? withCanonicalDirAsync(r.name) : withCanonicalDir(r.name)))).then(
      (keys) => new SetAttempt(requested, keys, a),
    );
  }

  async #acquireAll(planned: SetAttempt | Promise<SetAttempt>, a: Acquisition): Promise<LeaseSet> {
    if (a.signal && signalAborted(a.signal)) throw abortError(a.signal);
    const deadline = a.timeout === undefined ? Infinity : performance.now() + a.timeout;
    const set = await planned;
    try {
      for (let busyRounds = 0; ; ) {
        const busy = await this.#tryRest(set);
        if (busy === undefined) return set.result();
        await releaseEachAsync(set.letGo());
        if (busy === START_OVER) continue;
        if (!a.wait) throw busy.error;
        if (++busyRounds === ESCALATE_AFTER) return await this.#inOrder(set, deadline);
        // Holding nothing: this wait closes no cycle. It queues FIFO, so the set takes its turn.
        set.hold(busy.index, await this.#waitFor(set, busy.index, deadline));
      }
    } catch (err) {
      await releaseEachAsync(set.letGo());
      throw err;
    }
  }

  /** Takes each member the set has not settled, without waiting, in canonical order; undefined when
   *  all are settled. */
  async #tryRest(set: SetAttempt): Promise<Exclude<NotTaken, typeof COVERED> | undefined> {
    for (let i = 0; i < set.members.length; i++) {
      if (set.settled(i)) continue;
      const next = await this.#take(set, i);
      if (next !== undefined && next !== COVERED) return next;
    }
    return undefined;
  }

  #tryRestSync(set: SetAttempt): Exclude<NotTaken, typeof COVERED> | undefined {
    for (let i = 0; i < set.members.length; i++) {
      if (set.settled(i)) continue;
      const next = this.#takeSync(set, i);
      if (next !== undefined && next !== COVERED) return next;
    }
    return undefined;
  }

  /** One member without waiting: undefined when held now, else what its failure means. */
  async #take(set: SetAttempt, i: number): Promise<NotTaken | undefined> {
    const m = set.members[i];
    try {
      set.hold(i, await this.#acquire(m.name, this.#memberAcquisition(set, i, false)));
      return undefined;
    } catch (err) {
      return set.notTaken(i, err, set.mayBeOwn(err) ? await this.#heldFileOf(set, i) : -1);
    }
  }

  #takeSync(set: SetAttempt, i: number): NotTaken | undefined {
    const m = set.members[i];
    try {
      set.hold(i, this.#acquireSync(m.name, this.#memberAcquisition(set, i, false)));
      return undefined;
    } catch (err) {
      return set.notTaken(i, err, set.mayBeOwn(err) ? this.#heldFileOfSync(set, i) : -1);
    }
  }

  /** The held member whose file member i's name reaches now (a hard link, say), or -1. */
  async #heldFileOf(set: SetAttempt, i: number): Promise<number> {
    const identity = (name: string) => (this.#onPool(name) ? fileIdentityAsync(this.#path(name)) : fileIdentity(this.#path(name)));
    const file = await identity(set.members[i].name);
    if (file === undefined) return -1;
    for (const h of set.heldIndexes()) if ((await identity(set.members[h].name)) === file) return h;
    return -1;
  }

  #heldFileOfSync(set: SetAttempt, i: number): number {
    const file = fileIdentity(this.#path(set.members[i].name));
    if (file === undefined) return -1;
    return set.heldIndexes().find((h) => fileIdentity(this.#path(set.members[h].name)) === file) ?? -1;
  }

  /** Every member in canonical order, waiting for each while holding the earlier ones. */
  async #inOrder(set: SetAttempt, deadline: number): Promise<LeaseSet> {
    for (let i = 0; i < set.members.length; i++) {
      if (set.settled(i)) continue;
      const next = await this.#take(set, i);
      if (next === undefined || next === COVERED) continue;
      if (next === START_OVER) {
        await releaseEachAsync(set.letGo());
        i = -1;
        continue;
      }
      // Holds only members before i in the one global order: no cycle of such waits can close.
      set.hold(i, await this.#waitFor(set, i, deadline));
    }
    return set.result();
  }

  /** Waits for member i until the set's deadline; ETIMEDOUT names the member and the caller's timeout. */
  async #waitFor(set: SetAttempt, i: number, deadline: number): Promise<Lease> {
    const a = set.acquisition;
    const m = set.members[i];
    const w = this.#memberAcquisition(set, i, true);
    if (a.signal) w.signal = a.signal;
    if (a.deadlockTimeout !== undefined) w.deadlockTimeout = a.deadlockTimeout;
    if (deadline !== Infinity) w.timeout = Math.max(0, deadline - performance.now());
    try {
      return await this.#acquire(m.name, w);
    } catch (err) {
      if (a.timeout !== undefined && isLockspaceError(err, 'ETIMEDOUT') && err.syscall === 'acquire') {
        throw timeoutError(this.#path(m.name), a.timeout);
      }
      throw err;
    }
  }

  #memberAcquisition(set: SetAttempt, i: number, wait: boolean): Acquisition {
    const a = set.acquisition;
    const m: Acquisition = { shared: set.members[i].shared, autoCreate: a.autoCreate, owner: a.owner, key: a.key, wait };
    if (a.label !== undefined) m.label = a.label;
    return m;
  }

  /** Releases what `owner` (default: this thread's threadId) holds on `name`, like libvirt's
   *  virLockSpaceReleaseResource. ERR_LOCK_NOT_HELD if that owner does not hold it. */
  releaseSync(name: string, owner?: Owner): void {
    const n = this.#name(name);
    const o = owner === undefined ? THREAD_ID : checkOwner(owner, 'owner');
    this.#releasedByName(n, o, native.releaseByName(this.#handle, n, ownerKey(o)));
  }

  async release(name: string, owner?: Owner): Promise<void> {
    const n = this.#name(name);
    if (!this.#onPool(n)) return this.releaseSync(name, owner);
    const o = owner === undefined ? THREAD_ID : checkOwner(owner, 'owner');
    this.#releasedByName(n, o, await native.releaseByNameAsync(this.#handle, n, ownerKey(o)));
  }

  #releasedByName(n: string, o: Owner, result: undefined | ErrorRecord): void {
    if (isErrorRecord(result)) throw fromRecord(result, o);
    if (debugging) debug('release %s owner=%j', this.#path(n), o);
    publishRelease(() => ({ name: n, path: this.#path(n), owner: o, via: 'name' }));
  }

  /** Releases everything `owner` holds through this lockspace's directory; returns how many. */
  releaseOwnerSync(owner: Owner): number {
    const o = checkOwner(owner, 'owner');
    const names = this.#heldBy(o);
    return this.#releasedOwner(o, names, native.releaseOwner(this.#handle, ownerKey(o)));
  }

  async releaseOwner(owner: Owner): Promise<number> {
    if (!this.#onPool(null)) return this.releaseOwnerSync(owner);
    const o = checkOwner(owner, 'owner');
    const names = this.#heldBy(o);
    return this.#releasedOwner(o, names, await native.releaseOwnerAsync(this.#handle, ownerKey(o)));
  }

  /** With a 'lockspace:release' subscriber only: what `owner` holds, to name it in the messages. */
  #heldBy(owner: Owner): string[] | undefined {
    if (!releaseObserved()) return undefined;
    const key = ownerKey(owner);
    return native.resources(this.#handle).flatMap(([name, , , , owners]) => (owners.includes(key) ? [name] : []));
  }

  #releasedOwner(owner: Owner, names: string[] | undefined, count: number): number {
    if (debugging) debug('releaseOwner %j in %s: %d', owner, this.directory, count);
    for (const name of names ?? []) publishRelease(() => ({ name, path: this.#path(name), owner, via: 'owner' }));
    return count;
  }

  /**
   * Holds `requests` (as acquireAll takes them) for the life of process `pid`, all or nothing: a
   * holder process of their own takes the locks, and the kernel drops them when `pid` ends, whatever
   * happens to this process meanwhile (exit, SIGKILL, restart, upgrade). `pid` may be any process
   * this user may watch: a child just spawned, or one that runs already (start it paused, bind,
   * resume). Rejects (nothing held) with EBUSY, ETIMEDOUT (`wait` with `timeout`), an AbortError,
   * ESRCH when `pid` ends before the set is held, or the error of opening a file. A lost lock
   * fences the process (`onLost`). See README, "Locks that outlive your manager".
   */
  holdFor(pid: number, requests: readonly LockRequest[], options?: HoldForOptions): Promise<BoundSet> {
    try {
      const pathMode = this.directory === null;
      const plan = planHold(pid, requests, options, {
        directory: this.directory,
        lockType: this.lockType,
        records: this.records,
        pathOf: (name) => this.#path(name),
        keyOf: (name) => (pathMode ? withCanonicalDir(name) : this.#path(name)),
      });
      return startHolder(plan);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** The sets bound on this host in this lockspace (`holdFor`, `lockspace hold`) that this user may
   *  see (root: every user's), by whatever process bound them. */
  async boundSets(): Promise<BoundSet[]> {
    return findHolders()
      .filter((h) => h.record.directory === this.directory)
      .map(boundSetOf);
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

export { LockspaceError };
