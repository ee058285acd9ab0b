/* The options of one acquire, read once from the caller's object and validated as read. */
import { threadId } from 'node:worker_threads';

import type { AcquireNowOptions, AcquireSyncOptions, AcquireWaitOptions } from './options';
import { Owner, ownerKey, readOptions } from './validate';

const THREAD_OWNER_KEY = ownerKey(threadId);

const SYNC_OPTIONS = { shared: 'boolean', autoCreate: 'boolean', owner: 'owner' } as const;
const ASYNC_OPTIONS = { ...SYNC_OPTIONS, wait: 'boolean', timeout: 'timeout', signal: 'signal' } as const;

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

/** Reads `options` of acquireSync (`wait` false) or acquire (`wait` true). */
export function readAcquisition(options: AcquireSyncOptions | AcquireNowOptions | AcquireWaitOptions, wait: boolean): Acquisition {
  const opts = wait
    ? readOptions<AcquireWaitOptions | AcquireNowOptions>(options, ASYNC_OPTIONS, 'acquire')
    : readOptions<AcquireSyncOptions>(options, SYNC_OPTIONS, 'acquireSync (it never waits; use acquire)');
  return acquisition(opts);
}

function acquisition(opts: Partial<AcquireWaitOptions> | Partial<AcquireNowOptions>): Acquisition {
  const owner = opts.owner ?? threadId;
  const a: Acquisition = {
    shared: opts.shared === true,
    autoCreate: opts.autoCreate === true,
    owner,
    key: opts.owner === undefined ? THREAD_OWNER_KEY : ownerKey(owner),
    wait: opts.wait === true,
  };
  if (opts.timeout !== undefined) a.timeout = opts.timeout;
  if (opts.signal !== undefined) a.signal = opts.signal;
  return a;
}

