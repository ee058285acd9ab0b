/* The public option and result types of LockSpace (lib/lockspace.ts). */
import type { Owner } from './validate';

/** `'posix'`: classic fcntl record locks (F_SETLK), owned by the process, holder pid visible to
 *  `F_GETLK`/`lslocks`. `'ofd'`: Linux open-file-description locks (F_OFD_SETLK), owned by the open
 *  file, so no other descriptor's close can drop them; holder pid shows as -1. Both conflict with
 *  other processes' POSIX locks (virtlockd, `fcntl.lockf`). */
export type LockType = 'posix' | 'ofd';

// Every option also accepts `undefined` explicitly (for `exactOptionalPropertyTypes` users).

export interface LockSpaceOptions {
  /** Default `'posix'`. */
  lockType?: LockType | undefined;
  /** Network file systems: how often (ms) held leases are checked in the background, so that a lost
   *  lock aborts `lease.signal` without a call by the holder. Default 2000; 0 turns it off. */
  checkInterval?: number | undefined;
  /** Holder records: each grant writes who holds the lock (host, pid, label, time, and for exclusive
   *  grants a generation) into the lock file, for `inspect` and `lockspace status` on every host.
   *  Default false (nothing is written). */
  records?: boolean | undefined;
  /** How long (ms) a wait of this lockspace waits before it looks for a cycle of waits in this
   *  process's lock table (deadlock detection, see README "Waiting"). Default 1000; `Infinity`: never. */
  deadlockTimeout?: number | undefined;
}

export interface AcquireSyncOptions {
  /** Shared (read) lock instead of exclusive (write). Shared holders in this process join one lock. */
  shared?: boolean | undefined;
  /** Create the file (mode 0600) if missing, and delete it when the last owner releases it. */
  autoCreate?: boolean | undefined;
  /** Who holds it (any number or non-empty string); default: the calling thread's `threadId`. */
  owner?: Owner | undefined;
  /** Records only (`LockSpace.open(dir, { records: true })`): a label for the holder record, e.g. the
   *  VM's name; at most 256 bytes of UTF-8. */
  label?: string | undefined;
  /** Records only: fail with ERR_GENERATION_CHANGED unless the last exclusive generation is this one
   *  (a `lease.generation` of before): "resume only if nobody took it meanwhile". Not for sets. */
  ifGeneration?: bigint | undefined;
}

/** Acquire without waiting: EBUSY at once when held. */
export interface AcquireNowOptions extends AcquireSyncOptions {
  wait?: false | undefined;
  timeout?: undefined;
  signal?: undefined;
  deadlockTimeout?: undefined;
}

/** Acquire, waiting until the lock is free (FIFO within this process). */
export interface AcquireWaitOptions extends AcquireSyncOptions {
  wait: true;
  /** Give up after this many milliseconds (rejects with ETIMEDOUT); any non-negative number. */
  timeout?: number | undefined;
  /** Abort the wait (rejects with an AbortError). */
  signal?: AbortSignal | undefined;
  /** Look for a cycle of waits after this many ms of waiting (rejects with EDEADLK if this wait is in
   *  one); default: the lockspace's `deadlockTimeout`. `Infinity`: never. */
  deadlockTimeout?: number | undefined;
}

/** Options built before the call, in a variable: there `wait` is a `boolean`, so whether
 *  `timeout` and `signal` go with `wait: true` is checked at run time (ERR_INVALID_ARG_VALUE). */
export interface AcquireBooleanWaitOptions extends AcquireSyncOptions {
  wait: boolean;
  timeout?: number | undefined;
  signal?: AbortSignal | undefined;
  deadlockTimeout?: number | undefined;
}

/** `timeout` and `signal` go with `wait: true` only: without `wait` they do not compile. */
export type AcquireOptions = AcquireNowOptions | AcquireWaitOptions | AcquireBooleanWaitOptions;

/** acquireAll's options: acquire's, without `ifGeneration` (each member has a generation of its own). */
export type AcquireAllOptions = AcquireOptions extends infer T ? (T extends unknown ? Omit<T, 'ifGeneration'> & { ifGeneration?: undefined } : never) : never;
/** acquireAllSync's options: acquireSync's, without `ifGeneration`. */
export type AcquireAllSyncOptions = Omit<AcquireSyncOptions, 'ifGeneration'> & { ifGeneration?: undefined };

export interface ResourceInfo {
  name: string;
  path: string;
  shared: boolean;
  autoCreate: boolean;
  owners: Owner[];
}

// What these declarations need from the host, declared here so that they compile without @types/node
// or the DOM library (both declare the same members, and these merge with them).
declare global {
  interface AbortSignal {
    readonly aborted: boolean;
  }
  interface SymbolConstructor {
    readonly dispose: unique symbol;
    readonly asyncDispose: unique symbol;
  }
}
