/*
 * A Web Locks-shaped manager (`navigator.locks`) over a lockspace: `ls.locks.request(name, [options],
 * callback)` holds the lock while the callback runs and until the promise it returns settles. Unlike
 * Node's own `navigator.locks` (one process), these locks exclude across worker threads and
 * processes: they are the lockspace's fcntl locks, with each request its own owner.
 */
import { threadId } from 'node:worker_threads';

import { invalidArgType, invalidArgValue, isLockspaceError } from './errors';
import type { Lease, LockSpace } from './lockspace';
import { readOptions } from './validate';

export type LockMode = 'exclusive' | 'shared';

export interface LockOptions {
  /** Default `'exclusive'`. */
  mode?: LockMode | undefined;
  /** Do not wait: the callback gets `null` when the lock is held. */
  ifAvailable?: boolean | undefined;
  /** Not supported (a lock held by another thread or process cannot be taken from it): must not be true. */
  steal?: false | undefined;
  /** Aborts the request while it is queued (rejects with an AbortError). */
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
  /** Requests of this thread waiting for their lock. */
  pending: LockInfo[];
}

export type LockGrantedCallback<T> = (lock: Lock | null) => T | PromiseLike<T>;

const REQUEST_OPTIONS = { mode: 'mode', ifAvailable: 'boolean', steal: 'boolean', signal: 'signal' } as const;

/** Owners of requests are strings `lockspace.locks <clientId> #<n>`, so query() can tell them apart. */
const OWNER_PREFIX = 'lockspace.locks ';
const CLIENT_ID = `${process.pid}/${threadId}`;
let requests = 0;

export class LockManager {
  #ls: LockSpace;
  #pending = new Set<LockInfo>();

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
    if (opts.steal) {
      throw invalidArgValue('options.steal', true, 'is not supported: a lock held by another thread or process cannot be taken from it');
    }
    if (opts.ifAvailable && opts.signal) throw invalidArgValue('options', options, 'sets both ifAvailable and signal');
    const mode = opts.mode ?? 'exclusive';
    const shared = mode === 'shared';
    const owner = `${OWNER_PREFIX}${CLIENT_ID} #${++requests}`;
    // A directory's lock files come and go with their locks; in path mode the files are the user's.
    const autoCreate = this.#ls.directory !== null;
    let lease: Lease | null;
    if (opts.ifAvailable) {
      lease = await this.#ls.acquire(name, { shared, autoCreate, owner }).catch((err: unknown) => {
        if (isLockspaceError(err, 'EBUSY')) return null;
        throw err;
      });
    } else {
      const info: LockInfo = { name, mode, clientId: CLIENT_ID };
      this.#pending.add(info);
      try {
        lease = await this.#ls.acquire(name, { shared, autoCreate, owner, wait: true, signal: opts.signal });
      } finally {
        this.#pending.delete(info);
      }
    }
    try {
      return await callback(lease && Object.freeze({ name, mode }));
    } finally {
      await lease?.release();
    }
  }

  /** What is held through this lockspace in this process, and what this thread waits for. */
  async query(): Promise<LockManagerSnapshot> {
    const held: LockInfo[] = [];
    for (const r of this.#ls.resources()) {
      for (const owner of r.owners) {
        if (typeof owner !== 'string' || !owner.startsWith(OWNER_PREFIX)) continue;
        const clientId = owner.slice(OWNER_PREFIX.length, owner.lastIndexOf(' #'));
        held.push({ name: r.name, mode: r.shared ? 'shared' : 'exclusive', clientId });
      }
    }
    return { held, pending: [...this.#pending].map((p) => ({ ...p })) };
  }
}
