/*
 * A Web Locks-shaped manager (`navigator.locks`) over a lockspace: `ls.locks.request(name, [options],
 * callback)` holds the lock while the callback runs and until the promise it returns settles. Unlike
 * Node's own `navigator.locks` (one process), these locks exclude across worker threads and
 * processes: they are the lockspace's fcntl locks, with each request its own owner.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { createHash } from 'node:crypto';
import { threadId } from 'node:worker_threads';

import { ACQUIRE } from './acquisition';
import { AbortError, invalidArgType, isLockspaceError } from './errors';
import type { Lease, LockSpace } from './lockspace';
import { isWellFormed, ownerKey, readOptions, signalAborted, signalReason } from './validate';

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
  /** Requests of this thread waiting for their lock (not those of other threads: the native table
   *  does not list its queued requests). */
  pending: LockInfo[];
}

export type LockGrantedCallback<T> = (lock: Lock | null) => T | PromiseLike<T>;

const REQUEST_OPTIONS = { mode: 'mode', ifAvailable: 'boolean', steal: 'boolean', signal: 'signal' } as const;

/** Owners of requests are strings `lockspace.locks <clientId> #<n> <name>`: query() tells them apart
 *  and gets the Web Locks name back from them (a hashed file name cannot be turned back). */
const OWNER_PREFIX = 'lockspace.locks ';
const CLIENT_ID = `${process.pid}/${threadId}`;
let requests = 0;

/** The owner keys of the requests whose callbacks the running code is in, outermost first: a request
 *  made there is awaited by them (Web Locks' nesting), which the deadlock search follows. */
const inCallbacks = new AsyncLocalStorage<readonly string[]>();

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

export class LockManager {
  #ls: LockSpace;
  /** This thread's queued requests, by owner. */
  #pending = new Map<string, LockInfo>();

  /** Made by `LockSpace#locks`. */
  constructor(ls: LockSpace) {
    this.#ls = ls;
  }

  request<T>(name: string, callback: LockGrantedCallback<T>): Promise<Awaited<T>>;
  request<T>(name: string, options: LockOptions, callback: LockGrantedCallback<T>): Promise<Awaited<T>>;
  async request<T>(name: string, ...args: [LockGrantedCallback<T>] | [LockOptions, LockGrantedCallback<T>]): Promise<Awaited<T>> {
    const [options, callback] = args.length === 1 ? [undefined, args[0]] : args;
    if (typeof callback !== 'function') throw invalidArgType('callback', 'of type function', callback);
    const opts = readOptions<LockOptions>(options, REQUEST_OPTIONS, 'locks.request');
    const mode = opts.mode ?? 'exclusive';
    const { signal } = opts;
    // Web Locks' checks, in its order, then lockspace's refusal of steal.
    checkWebLockName(name);
    if (opts.steal && opts.ifAvailable) throw notSupported('steal and ifAvailable cannot be used together');
    if (opts.steal && mode !== 'exclusive') throw notSupported("steal requires mode: 'exclusive'");
    if (signal && (opts.steal || opts.ifAvailable)) throw notSupported('signal cannot be used with steal or ifAvailable');
    if (opts.steal) throw notSupported('steal is not supported: a lock held by another thread or process cannot be taken from it');
    if (signal && signalAborted(signal)) throw signalReason(signal);
    const file = this.#ls.directory === null ? name : fileName(name);
    const shared = mode === 'shared';
    const owner = `${OWNER_PREFIX}${CLIENT_ID} #${++requests} ${name}`;
    const key = ownerKey(owner);
    const outer = inCallbacks.getStore();
    // A directory's lock files come and go with their locks; in path mode the files are the user's.
    const autoCreate = this.#ls.directory !== null;
    let lease: Lease | null;
    if (opts.ifAvailable) {
      lease = await this.#ls.acquire(file, { shared, autoCreate, owner }).catch((err: unknown) => {
        if (isLockspaceError(err, 'EBUSY')) return null;
        throw err;
      });
    } else {
      this.#pending.set(owner, { name, mode, clientId: CLIENT_ID });
      try {
        lease = await this.#ls[ACQUIRE](file, {
          shared,
          autoCreate,
          owner,
          key,
          wait: true,
          ...(signal && { signal }),
          ...(outer && { awaitedBy: [...outer] }),
        });
      } catch (err) {
        if (signal && err instanceof AbortError && signalAborted(signal)) throw signalReason(signal);
        throw err;
      } finally {
        this.#pending.delete(owner);
      }
      // A free lock is granted before request() returns: an abort since then still wins.
      if (signal && signalAborted(signal)) {
        await lease.release();
        throw signalReason(signal);
      }
    }
    try {
      const lock = lease && Object.freeze({ name, mode });
      return await inCallbacks.run(outer ? [...outer, key] : [key], () => callback(lock));
    } finally {
      await lease?.release();
    }
  }

  /** What is held through this lockspace in this process, and what this thread waits for. */
  async query(): Promise<LockManagerSnapshot> {
    const held: LockInfo[] = [];
    const heldOwners = new Set<string>();
    for (const r of this.#ls.resources()) {
      for (const owner of r.owners) {
        if (typeof owner !== 'string' || !owner.startsWith(OWNER_PREFIX)) continue;
        const rest = owner.slice(OWNER_PREFIX.length);
        const number = rest.indexOf(' #');
        if (number === -1) continue;
        const space = rest.indexOf(' ', number + 2);
        // Owners without a name (other copies of lockspace) name the file.
        const name = space === -1 ? r.name : rest.slice(space + 1);
        heldOwners.add(owner);
        held.push({ name, mode: r.shared ? 'shared' : 'exclusive', clientId: rest.slice(0, number) });
      }
    }
    // A request is granted before the wait for it returns: it is held then, no longer pending.
    const pending = [...this.#pending].filter(([owner]) => !heldOwners.has(owner)).map(([, info]) => ({ ...info }));
    return { held, pending };
  }
}
