/* The options of one acquire, read once from the caller's object and validated as read. */
import { threadId } from 'node:worker_threads';

import { invalidArgValue } from './errors';
import type { AcquireOptions, AcquireSyncOptions } from './options';
import { knownOptions, Owner, ownerKey, readOption } from './validate';

const THREAD_OWNER_KEY = ownerKey(threadId);

const SYNC_OPTIONS = { shared: 'boolean', autoCreate: 'boolean', owner: 'owner', label: 'label', ifGeneration: 'generation' } as const;
const ASYNC_OPTIONS = { ...SYNC_OPTIONS, wait: 'boolean', timeout: 'timeout', signal: 'signal', deadlockTimeout: 'timeout' } as const;
// A set's members each have their own generation: a set takes no ifGeneration.
const { ifGeneration: _sync, ...SYNC_ALL_OPTIONS } = SYNC_OPTIONS;
const { ifGeneration: _async, ...ASYNC_ALL_OPTIONS } = ASYNC_OPTIONS;
const NOT_ALL = { ifGeneration: "its members each have a generation of their own; acquire them one by one with acquire's ifGeneration" };
/** acquire's options that the sync calls do not take, and why (`use` names the async call). */
const notSync = (use: string) => {
  const why = `it never waits; use ${use}`;
  return { wait: why, timeout: why, signal: why, deadlockTimeout: why };
};
const NOT_SYNC = notSync('acquire');
const NOT_SYNC_ALL = { ...notSync('acquireAll'), ...NOT_ALL };

/** Options as read and validated: each read once from the caller's object. */
export interface Acquisition {
  shared: boolean;
  autoCreate: boolean;
  owner: Owner;
  key: string;
  wait: boolean;
  timeout?: number;
  signal?: AbortSignal;
  /** Holder records: the caller's label, and the generation the grant must follow. */
  label?: string;
  ifGeneration?: bigint;
  /** Undefined: the lockspace's. */
  deadlockTimeout?: number;
  /** Owners that await this acquire while it waits (ls.locks: the callbacks it was made in). */
  awaitedBy?: string[];
}

/** LockSpace's acquire with an Acquisition as read (ls.locks passes `awaitedBy`): not exported from
 *  the package. */
export const ACQUIRE: unique symbol = Symbol('lockspace.acquire');

/** ACQUIRE answered without a promise when the table answers at once (ls.locks' fast path): not
 *  exported from the package. */
export const ACQUIRE_NOW: unique symbol = Symbol('lockspace.acquireNow');

/** No options: exclusive, no autoCreate, owned by this thread, no wait. */
export const DEFAULT_ACQUISITION: Acquisition = { shared: false, autoCreate: false, owner: threadId, key: THREAD_OWNER_KEY, wait: false };

/** Reads `options` of acquireSync (`wait` false) or acquire (`wait` true), as readOptions does: each
 *  option once, in the order of SYNC_OPTIONS / ASYNC_OPTIONS, validated as read. `all`: of
 *  acquireAllSync / acquireAll, which take the same options. */
export function readAcquisition(options: AcquireSyncOptions | AcquireOptions, wait: boolean, all = false): Acquisition {
  const opts = wait
    ? all
      ? knownOptions(options, ASYNC_ALL_OPTIONS, 'acquireAll', NOT_ALL)
      : knownOptions(options, ASYNC_OPTIONS, 'acquire')
    : all
      ? knownOptions(options, SYNC_ALL_OPTIONS, 'acquireAllSync', NOT_SYNC_ALL)
      : knownOptions(options, SYNC_OPTIONS, 'acquireSync', NOT_SYNC);
  const shared = readOption(opts, 'shared', SYNC_OPTIONS.shared);
  const autoCreate = readOption(opts, 'autoCreate', SYNC_OPTIONS.autoCreate);
  const owner = readOption(opts, 'owner', SYNC_OPTIONS.owner) as Owner | undefined;
  const label = readOption(opts, 'label', SYNC_OPTIONS.label) as string | undefined;
  const ifGeneration = all ? undefined : (readOption(opts, 'ifGeneration', SYNC_OPTIONS.ifGeneration) as bigint | undefined);
  const a: Acquisition = {
    shared: shared === true,
    autoCreate: autoCreate === true,
    owner: owner ?? threadId,
    key: owner === undefined ? THREAD_OWNER_KEY : ownerKey(owner),
    wait: false,
  };
  if (label !== undefined) a.label = label;
  if (ifGeneration !== undefined) a.ifGeneration = ifGeneration;
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
