/* The options of one acquire, read once from the caller's object and validated as read. */
import { threadId } from 'node:worker_threads';

import { invalidArgValue } from './errors';
import type { AcquireOptions, AcquireSyncOptions } from './options';
import { knownOptions, Owner, ownerKey, readOption } from './validate';

const THREAD_OWNER_KEY = ownerKey(threadId);

const SYNC_OPTIONS = { shared: 'boolean', autoCreate: 'boolean', owner: 'owner' } as const;
const ASYNC_OPTIONS = { ...SYNC_OPTIONS, wait: 'boolean', timeout: 'timeout', signal: 'signal', deadlockTimeout: 'timeout' } as const;
/** acquire's options that the sync calls do not take, and why (`use` names the async call). */
const notSync = (use: string) => {
  const why = `it never waits; use ${use}`;
  return { wait: why, timeout: why, signal: why, deadlockTimeout: why };
};
const NOT_SYNC = notSync('acquire');
const NOT_SYNC_ALL = notSync('acquireAll');

/** Options as read and validated: each read once from the caller's object. */
export interface Acquisition {
  shared: boolean;
  autoCreate: boolean;
  owner: Owner;
  key: string;
  wait: boolean;
  timeout?: number;
  signal?: AbortSignal;
  /** Undefined: the lockspace's. */
  deadlockTimeout?: number;
  /** Owners that await this acquire while it waits (ls.locks: the callbacks it was made in). */
  awaitedBy?: string[];
}

/** LockSpace's acquire with an Acquisition as read (ls.locks passes `awaitedBy`): not exported from
 *  the package. */
export const ACQUIRE: unique symbol = Symbol('lockspace.acquire');

/** No options: exclusive, no autoCreate, owned by this thread, no wait. */
export const DEFAULT_ACQUISITION: Acquisition = { shared: false, autoCreate: false, owner: threadId, key: THREAD_OWNER_KEY, wait: false };

/** Reads `options` of acquireSync (`wait` false) or acquire (`wait` true), as readOptions does: each
 *  option once, in the order of SYNC_OPTIONS / ASYNC_OPTIONS, validated as read. `all`: of
 *  acquireAllSync / acquireAll, which take the same options. */
export function readAcquisition(options: AcquireSyncOptions | AcquireOptions, wait: boolean, all = false): Acquisition {
  const opts = wait
    ? knownOptions(options, ASYNC_OPTIONS, all ? 'acquireAll' : 'acquire')
    : knownOptions(options, SYNC_OPTIONS, all ? 'acquireAllSync' : 'acquireSync', all ? NOT_SYNC_ALL : NOT_SYNC);
  const shared = readOption(opts, 'shared', SYNC_OPTIONS.shared);
  const autoCreate = readOption(opts, 'autoCreate', SYNC_OPTIONS.autoCreate);
  const owner = readOption(opts, 'owner', SYNC_OPTIONS.owner) as Owner | undefined;
  const a: Acquisition = {
    shared: shared === true,
    autoCreate: autoCreate === true,
    owner: owner ?? threadId,
    key: owner === undefined ? THREAD_OWNER_KEY : ownerKey(owner),
    wait: false,
  };
  if (!wait) return a;
  a.wait = readOption(opts, 'wait', ASYNC_OPTIONS.wait) === true;
  const timeout = readOption(opts, 'timeout', ASYNC_OPTIONS.timeout) as number | undefined;
  const signal = readOption(opts, 'signal', ASYNC_OPTIONS.signal) as AbortSignal | undefined;
  const deadlockTimeout = readOption(opts, 'deadlockTimeout', ASYNC_OPTIONS.deadlockTimeout) as number | undefined;
  if (!a.wait && (timeout !== undefined || signal !== undefined)) {
    throw invalidArgValue('options', options, 'sets timeout or signal without wait: true');
  }
  if (!a.wait && deadlockTimeout !== undefined) {
    throw invalidArgValue('options', options, 'sets deadlockTimeout without wait: true');
  }
  if (timeout !== undefined) a.timeout = timeout;
  if (signal !== undefined) a.signal = signal;
  if (deadlockTimeout !== undefined) a.deadlockTimeout = deadlockTimeout;
  return a;
}
