/*
 * A Web Locks-shaped manager (`navigator.locks`) over a lockspace: `ls.locks.request(name, [options],
 * callback)` holds the lock while the callback runs and until the promise it returns settles. Unlike
 * Node's own `navigator.locks` (one process), these locks exclude across worker threads and
 * processes: they are the lockspace's fcntl locks, with each request its own owner. In a directory
 * lockspace each name has its lock file (webLockFileName), kept between requests (see LockFiles).
 */
import { AsyncLocalStorage, AsyncResource } from 'node:async_hooks';
import { createHash } from 'node:crypto';
import { threadId } from 'node:worker_threads';

import { ACQUIRE, ACQUIRE_NOW, type Acquisition } from './acquisition';
import { AbortError, invalidArgType, isLockspaceError } from './errors';
import { Lease } from './lease';
import type { LockSpace } from './lockspace';
import { isWellFormed, ownerFromKey, ownerKey, readOptions, signalAborted, signalReason } from './validate';

export type LockMode = 'exclusive' | 'shared';

export interface LockOptions {
  /** Default `'exclusive'`. */
  mode?: LockMode | undefined;
  /** Do not wait: the callback gets `null` when the lock is held. */
  ifAvailable?: boolean | undefined;
  /** Not supported (a lock held by another thread or process cannot be taken from it): true rejects
   *  with a DOMException NotSupportedError. */
  steal?: false | undefined;
  /** Aborts the request until its callback is called (rejects with `signal.reason`). */
  signal?: AbortSignal | undefined;
}

/** The lock a request's callback holds. */
export interface Lock {
  readonly name: string;
  readonly mode: LockMode;
}

export interface LockInfo {
  name: string;
  mode: LockMode;
  /** `pid/threadId` of the thread that requested it. */
  clientId: string;
}

export interface LockManagerSnapshot {
  /** Locks held through this manager's lockspace by any thread of this process. */
  held: LockInfo[];
  /** Requests made through this manager's lockspace by any thread of this process, waiting for their
   *  lock (a granted request is only in `held`). */
  pending: LockInfo[];
}

export type LockGrantedCallback<T> = (lock: Lock | null) => T | PromiseLike<T>;

const REQUEST_OPTIONS = { mode: 'mode', ifAvailable: 'boolean', steal: 'boolean', signal: 'signal' } as const;
const NO_OPTIONS: Partial<LockOptions> = Object.freeze({});

/** Owners of requests are strings `lockspace.locks <clientId> #<n> <name>`: query() tells them apart
 *  and gets the Web Locks name back from them (a hashed file name cannot be turned back). */
const OWNER_PREFIX = 'lockspace.locks ';
const CLIENT_ID = `${process.pid}/${threadId}`;
/** This thread's owners up to the request's number. */
const OWNER_START = `${OWNER_PREFIX}${CLIENT_ID} #`;
let requests = 0;

/** The owner keys of the requests whose callbacks the running code is in, outermost first: a request
 *  made there is awaited by them (Web Locks' nesting), which the deadlock search follows. */
const inCallbacks = new AsyncLocalStorage<readonly string[]>();

/**
 * Whether `enterWith` in a continuation changes that continuation's context only, as with Node's
 * AsyncContextFrame (the default from Node 24): a callback is then called after one `enterWith`,
 * which makes one context frame where `run` makes two (one to enter, one to restore), about 0.3 µs
 * each. With async_hooks' stores (Node 20, or `--no-async-context-frame`) `enterWith` would write
 * into a context the caller shares, so `run` is used. Found by trying, not from the version.
 */
const enterWithIsScoped = ((): boolean => {
  const probe = new AsyncLocalStorage<number>();
  const scope = new AsyncResource('lockspace.locks.probe');
  scope.runInAsyncScope(() => probe.enterWith(1));
  const scoped = scope.runInAsyncScope(() => probe.getStore()) === undefined;
  probe.disable();
  return scoped;
})();

/** Calls a granted request's callback in the context that tells nested requests who awaits them.
 *  Only after request()'s first await: the context entered is then request()'s own continuation, and
 *  with enterWith the rest of it (the release, its diagnostics event) runs in that context too. A
 *  request made there is taken to be awaited by the one just released, whose owner holds nothing and
 *  so closes no cycle. */
function callInCallbacks<T>(chain: readonly string[], callback: LockGrantedCallback<T>, lock: Lock | null): T | PromiseLike<T> {
  if (!enterWithIsScoped) return inCallbacks.run(chain, callback, lock);
  inCallbacks.enterWith(chain);
  return callback(lock);
}

function notSupported(message: string): DOMException {
  return new DOMException(message, 'NotSupportedError');
}

/** Web Locks names that need it are reserved a first '-': no Web Locks name has one. */
function checkWebLockName(name: unknown): string {
  if (typeof name !== 'string') throw invalidArgType('name', 'of type string', name);
  if (name.startsWith('-')) throw notSupported(`Lock names starting with "-" are reserved: ${JSON.stringify(name)}`);
  // No UTF-8 form: converting would merge it with the name that has U+FFFD in its place.
  if (!isWellFormed(name)) throw notSupported('Lock names with a lone surrogate are not supported');
  return name;
}

const MAX_FILE_NAME = 255;
const ESCAPED = /[%/\0]/g;

function escape(c: string): string {
  return `%${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`;
}

/** What a directory lockspace accepts as a resource name (checkName). */
function isSafeFileName(name: string): boolean {
  return name !== '' && name !== '.' && name !== '..' && !/[/\0]/.test(name) && Buffer.byteLength(name) <= MAX_FILE_NAME;
}

function fileName(name: string): string {
  if (isSafeFileName(name)) return name;
  // '-' and the name with '%', '/' and NUL percent-encoded: decodes back to the name.
  const escaped = `-${name.replace(ESCAPED, escape)}`;
  if (Buffer.byteLength(escaped) <= MAX_FILE_NAME) return escaped;
  // Too long: '--' (never an escaped name's start, as no name starts with '-') and a hash.
  return `--${createHash('sha256').update(name).digest('base64url')}`;
}

/**
 * The lock file name (in a directory lockspace) of the Web Locks name `name`: the name itself when it
 * is a valid resource name; otherwise `-` and the name with `%`, `/` and NUL percent-encoded; when
 * that is over 255 bytes, `--` and the base64url SHA-256 of the name's UTF-8 (not reversible).
 * A DOMException NotSupportedError for names starting with `-` and names with a lone surrogate.
 */
export function webLockFileName(name: string): string {
  return fileName(checkWebLockName(name));
}

/** What a LockSpace gives its manager besides its public calls. */
export interface LockManagerAccess {
  /** The requests queued through the lockspace by every thread of this process: [name, shared, owner key]. */
  queued(): [string, boolean, string][];
  /** A network file system: its lock files are never deleted (see LockFiles). */
  remote: boolean;
}

export const lockFileLimits = {
  /** Idle lock files are deleted once they have stayed unused through one sweep (1 to 2 sweeps' time). */
  sweepMs: 1000,
  /** Beyond this many idle lock files of one manager the oldest ones are deleted at once. */
  maxIdleFiles: 256,
};
/** A name that keeps reaching no file (deleted by another process each time it is created): give up. */
const MAX_CREATES = 64;

interface FileUse {
  /** This manager's requests on the file now (waiting or holding). */
  users: number;
  /** The sweep count when it was last let go (or first used). */
  idleSince: number;
}

/** Every thread's lock files that are idle: deleted at its exit. */
const idleAtExit = new Set<LockFiles>();
let exitHookSet = false;

/**
 * The lock files of a directory lockspace's Web Locks names. Creating and deleting a file costs about
 * ten times a lock on a file kept open, so a file stays after its request (its descriptor stays open,
 * unlocked, in the native table's idle list) and is deleted once no request of this manager used it
 * through a whole sweep, or at once beyond lockFileLimits.maxIdleFiles idle ones (oldest first), or
 * when the thread exits.
 *
 * A deletion is `ls.delete`: it locks the file exclusively without waiting (EBUSY if anyone holds
 * it: then it is left to its holder's manager), checks that the name still reaches it, unlinks it and
 * unlocks. A request of another process that opened the file before the unlink is granted nothing on
 * it: every grant checks, holding the lock, that the name reaches the locked file, and starts over
 * (ENOENT: created again) if not. So exclusion holds across processes at every moment.
 *
 * On a network file system nothing is deleted (as `autoCreate` deletes nothing there: a client may
 * go on seeing a deleted file by its cached name and lock it while another locks the new one).
 */
class LockFiles {
  #ls: LockSpace;
  #deletes: boolean;
  #files = new Map<string, FileUse>();
  #idle = 0;
  #sweeps = 0;
  #timer: NodeJS.Timeout | undefined;

  constructor(ls: LockSpace, deletes: boolean) {
    this.#ls = ls;
    this.#deletes = deletes;
  }

  /** A request on `file` starts. A file this manager does not know of is created now, before the
   *  request's first await (on a network file system the request creates it when it finds it
   *  missing): a free lock is granted before request() returns, as a Web Locks request is. */
  use(file: string): void {
    const use = this.#files.get(file);
    if (use !== undefined) {
      if (use.users++ === 0) this.#idle--;
      return;
    }
    this.#files.set(file, { users: 1, idleSince: this.#sweeps });
    if (!this.#deletes) return;
    try {
      this.#ls.createSync(file);
    } catch (err) {
      // There already (EEXIST), or there and held in this process (EBUSY): the request locks it.
      if (!isLockspaceError(err, 'EEXIST') && !isLockspaceError(err, 'EBUSY')) {
        this.#files.delete(file);
        throw err;
      }
    }
  }

  letGo(file: string): void {
    const use = this.#files.get(file)!;
    if (--use.users > 0) return;
    if (!this.#deletes) {
      this.#files.delete(file);
      return;
    }
    // The map is in the order of idleSince: a file let go in a later sweep goes to its end.
    if (use.idleSince !== this.#sweeps) {
      use.idleSince = this.#sweeps;
      this.#files.delete(file);
      this.#files.set(file, use);
    }
    if (++this.#idle === 1) idleAtExit.add(this);
    const { maxIdleFiles, sweepMs } = lockFileLimits;
    if (this.#idle > maxIdleFiles) this.#deleteIdle(() => this.#idle > maxIdleFiles);
    else if (this.#timer === undefined) this.#timer = setTimeout(() => this.#sweep(), sweepMs).unref();
  }

  /** Deletes the files idle since before the last sweep. */
  #sweep(): void {
    this.#timer = undefined;
    const sweep = this.#sweeps++;
    this.#deleteIdle((use) => use.idleSince < sweep);
    if (this.#idle > 0) this.#timer = setTimeout(() => this.#sweep(), lockFileLimits.sweepMs).unref();
  }

  /** Deletes idle files, those idle since the oldest sweep first, while `more(use)` says so. */
  #deleteIdle(more: (use: FileUse) => boolean): void {
    for (const [file, use] of this.#files) {
      if (use.users > 0) continue;
      if (!more(use)) continue;
      this.#files.delete(file);
      this.#idle--;
      try {
        this.#ls.deleteSync(file);
      } catch {
        // Held (here or elsewhere: its holder's manager deletes it), or not deletable: left as it is.
      }
    }
    if (this.#idle === 0) idleAtExit.delete(this);
  }

  /** Thread exit: every idle file goes. */
  deleteAll(): void {
    this.#deleteIdle(() => true);
  }
}

function deleteIdleFilesAtExit(): void {
  for (const files of idleAtExit) files.deleteAll();
}

export class LockManager {
  #ls: LockSpace;
  #access: LockManagerAccess;
  /** Null in path mode (the files are the caller's). */
  #files: LockFiles | null;
  /** This thread's requests not yet granted, by owner (the table lists those queued). */
  #pending = new Map<string, LockInfo>();
  #releasesNow: boolean;
  /** The last name checked, and its file name (fileName hashes long names). */
  #lastName: string | undefined;
  #lastFile = '';

  /** Made by `LockSpace#locks`. */
  constructor(ls: LockSpace, access: LockManagerAccess) {
    this.#ls = ls;
    this.#access = access;
    this.#files = ls.directory === null ? null : new LockFiles(ls, !access.remote);
    this.#releasesNow = ls.directory !== null && !access.remote;
    if (this.#files && !exitHookSet) {
      exitHookSet = true;
      process.on('exit', deleteIdleFilesAtExit);
    }
  }

  request<T>(name: string, callback: LockGrantedCallback<T>): Promise<Awaited<T>>;
  request<T>(name: string, options: LockOptions, callback: LockGrantedCallback<T>): Promise<Awaited<T>>;
  async request<T>(
    name: string,
    optionsOrCallback: LockOptions | LockGrantedCallback<T>,
    maybeCallback?: LockGrantedCallback<T>,
  ): Promise<Awaited<T>> {
    const [options, callback] = arguments.length < 3 ? [undefined, optionsOrCallback] : [optionsOrCallback as LockOptions, maybeCallback];
    if (typeof callback !== 'function') throw invalidArgType('callback', 'of type function', callback);
    const opts = options === undefined ? NO_OPTIONS : readOptions<LockOptions>(options, REQUEST_OPTIONS, 'locks.request');
    const mode = opts.mode ?? 'exclusive';
    const { signal } = opts;
    // Web Locks' checks, in its order, then lockspace's refusal of steal.
    const file = this.#fileFor(name);
    if (opts.steal && opts.ifAvailable) throw notSupported('steal and ifAvailable cannot be used together');
    if (opts.steal && mode !== 'exclusive') throw notSupported("steal requires mode: 'exclusive'");
    if (signal && (opts.steal || opts.ifAvailable)) throw notSupported('signal cannot be used with steal or ifAvailable');
    if (opts.steal) throw notSupported('steal is not supported: a lock held by another thread or process cannot be taken from it');
    if (signal && signalAborted(signal)) throw signalReason(signal);
    const files = this.#files;
    const owner = `${OWNER_START}${++requests} ${name}`;
    const key = ownerKey(owner);
    const outer = inCallbacks.getStore();
    const a: Acquisition = {
      shared: mode === 'shared',
      autoCreate: false,
      owner,
      key,
      wait: !opts.ifAvailable,
      signal,
      awaitedBy: outer && [...outer],
    };
    // A request outside every callback holds nothing while it waits and nobody awaits it: no cycle
    // of waits is closed by it alone, and each has a nested request in it, whose wait looks.
    if (outer === undefined) a.deadlockTimeout = Infinity;
    files?.use(file);
    try {
      let lease: Lease | null = null;
      let now: Lease | Promise<Lease> | undefined;
      let refusal: unknown;
      try {
        now = this.#ls[ACQUIRE_NOW](file, a);
      } catch (err) {
        refusal = err;
      }
      if (now instanceof Lease) {
        lease = now;
        // As in Web Locks, the callback is called later, never within request().
        await undefined;
      } else {
        if (a.wait) this.#pending.set(owner, { name, mode, clientId: CLIENT_ID });
        try {
          if (now !== undefined) {
            try {
              lease = await now;
            } catch (err) {
              refusal = err;
              now = undefined;
            }
          }
          if (now === undefined) lease = await this.#afterRefusal(refusal, file, a);
        } finally {
          this.#pending.delete(owner);
        }
      }
      // A free lock is granted before request() returns: an abort since then still wins.
      if (lease && signal && signalAborted(signal)) {
        await this.#release(lease);
        throw signalReason(signal);
      }
      try {
        const lock = lease && Object.freeze({ name, mode });
        return await callInCallbacks(outer ? [...outer, key] : [key], callback, lock);
      } finally {
        // A local release is done when #release returns: no await, no extra turn of the microtasks.
        const releasing = lease && this.#release(lease);
        if (releasing) await releasing;
      }
    } finally {
      files?.letGo(file);
    }
  }

  /** Checks a Web Locks name and gives its lock file's name (in path mode the name itself); the last
   *  name checked is not checked again. */
  #fileFor(name: string): string {
    if (name !== this.#lastName) {
      checkWebLockName(name);
      this.#lastFile = this.#files === null ? name : fileName(name);
      this.#lastName = name;
    }
    return this.#lastFile;
  }

  /** Local directories release at once (the lease's syscalls run on this thread anyway). */
  #release(lease: Lease): void | Promise<void> {
    return this.#releasesNow ? lease.releaseSync() : lease.release();
  }

  /**
   * What follows an acquire's refusal: ifAvailable's null when the lock is held, the signal's reason
   * for an abort, and for a lock file found missing (deleted by another process, or on a network file
   * system never made) the file made and the acquire made again. Anything else is thrown.
   */
  async #afterRefusal(refusal: unknown, file: string, a: Acquisition): Promise<Lease | null> {
    for (let creates = 0; ; creates++) {
      if (!a.wait && isLockspaceError(refusal, 'EBUSY')) return null;
      if (a.signal && refusal instanceof AbortError && signalAborted(a.signal)) throw signalReason(a.signal);
      if (this.#files === null || !isLockspaceError(refusal, 'ENOENT') || creates === MAX_CREATES) throw refusal;
      try {
        await this.#ls.create(file);
      } catch (err) {
        // Created (EEXIST), or created and held (EBUSY), by another request meanwhile: lock that one.
        if (!isLockspaceError(err, 'EEXIST') && !isLockspaceError(err, 'EBUSY')) throw err;
      }
      try {
        return await this.#ls[ACQUIRE](file, a);
      } catch (err) {
        refusal = err;
      }
    }
  }

  /** What is held through this lockspace by any thread of this process, and what waits for it. */
  async query(): Promise<LockManagerSnapshot> {
    // Queued requests first: one granted meanwhile is then in held too, and left out of pending.
    const queued = this.#access.queued();
    const held: LockInfo[] = [];
    const heldOwners = new Set<string>();
    for (const r of this.#ls.resources()) {
      for (const owner of r.owners) {
        const info = typeof owner === 'string' ? lockInfo(owner, r.name, r.shared) : undefined;
        if (info === undefined) continue;
        heldOwners.add(owner as string);
        held.push(info);
      }
    }
    const pending: LockInfo[] = [];
    const listed = new Set<string>(heldOwners);
    for (const [file, shared, key] of queued) {
      const owner = ownerFromKey(key);
      const info = typeof owner === 'string' ? lockInfo(owner, file, shared) : undefined;
      if (info === undefined || listed.has(owner as string)) continue;
      listed.add(owner as string);
      pending.push(info);
    }
    // This thread's requests on their way into the table (or starting over on a replaced file).
    for (const [owner, info] of this.#pending) {
      if (!listed.has(owner)) pending.push({ ...info });
    }
    return { held, pending };
  }
}

/** The Web Locks request an owner key names, or undefined for owners that are not requests. */
function lockInfo(owner: string, file: string, shared: boolean): LockInfo | undefined {
  if (!owner.startsWith(OWNER_PREFIX)) return undefined;
  const rest = owner.slice(OWNER_PREFIX.length);
  const number = rest.indexOf(' #');
  if (number === -1) return undefined;
  const space = rest.indexOf(' ', number + 2);
  // Owners without a name (other copies of lockspace) name the file.
  const name = space === -1 ? file : rest.slice(space + 1);
  return { name, mode: shared ? 'shared' : 'exclusive', clientId: rest.slice(0, number) };
}
