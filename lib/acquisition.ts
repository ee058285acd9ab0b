/* The options of one acquire, read once from the caller's object and validated as read. */
import { threadId } from 'node:worker_threads';

import type { AcquireOptions, AcquireSyncOptions } from './options';
import { knownOptions, Owner, ownerKey, readOption } from './validate';

const THREAD_OWNER_KEY = ownerKey(threadId);

const SYNC_OPTIONS = { shared: 'boolean', autoCreate: 'boolean', owner: 'owner' } as const;
const ASYNC_OPTIONS = { ...SYNC_OPTIONS, wait: 'boolean', timeout: 'timeout', signal: 'signal' } as const;
const NEVER_WAITS = 'it never waits; use acquire';
/** acquire's options that acquireSync does not take, and why. */
const NOT_SYNC = { wait: NEVER_WAITS, timeout: NEVER_WAITS, signal: NEVER_WAITS };

/** Options as read and validated: each read once from the caller's object. */
export interface Acquisition {
  shared: boolean;
  autoCreate: boolean;
  owner: Owner;
  key: string;
  wait: boolean;
  timeout?: number;
  signal?: AbortSignal;
}

/** No options: exclusive, no autoCreate, owned by this thread, no wait. */
export const DEFAULT_ACQUISITION: Acquisition = { shared: false, autoCreate: false, owner: threadId, key: THREAD_OWNER_KEY, wait: false };

/** Reads `options` of acquireSync (`wait` false) or acquire (`wait` true), as readOptions does: each
 *  option once, in the order of SYNC_OPTIONS / ASYNC_OPTIONS, validated as read. */
export function readAcquisition(options: AcquireSyncOptions | AcquireOptions, wait: boolean): Acquisition {
  const opts = wait
    ? knownOptions(options, ASYNC_OPTIONS, 'acquire')
    : knownOptions(options, SYNC_OPTIONS, 'acquireSync', NOT_SYNC);
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
  if (timeout !== undefined) a.timeout = timeout;
  if (signal !== undefined) a.signal = signal;
  return a;
}
