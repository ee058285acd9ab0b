// Lost locks: the background checker of a lockspace's leases on a network file system, and the errors
// a lost or released lease reports. A lease is lost when its file system's client or server failed,
// another host took it, or its file was unlinked or replaced (see Lease#signal and Lease#verify).
import { debuglog } from 'node:util';

import { LockspaceError, systemError } from './errors';
import { binding, LeaseCheck, VerifyRecord } from './native';

const debug = debuglog('lockspace');


/**
 * Checks the leases of one lockspace on a network file system every `interval` ms: one threadpool
 * job for all of them at a time, never more. Its timer never keeps the process alive and never
 * throws.
 */
export class LeaseChecker<L> {
  #leases = new Set<L>();
  #timer: NodeJS.Timeout | undefined;
  #running = false;

  constructor(
    readonly interval: number,
    private readonly leases: { id(lease: L): number; take(lease: L, record: VerifyRecord): boolean },
  ) {}

  add(lease: L): void {
    this.#leases.add(lease);
    if (!this.#timer) {
      this.#timer = setInterval(() => this.#tick(), this.interval);
      this.#timer.unref();
    }
  }

  remove(lease: L): void {
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
    binding.verifyAsync(leases.map((l) => this.leases.id(l))).then(
      (records) => {
        this.#running = false;
        records.forEach((record, i) => {
          try {
            this.leases.take(leases[i], record);
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

export function notHeldError(path: string): LockspaceError {
  return new LockspaceError(`ERR_LOCK_NOT_HELD: lock not held (released), verify '${path}'`, { code: 'ERR_LOCK_NOT_HELD', path });
}

const EAGAIN = 11;
const ENOENT = 2;

/** The ERR_LOCK_LOST error for a verify outcome that says the lock is gone. */
export function lostError([check, errnum, syscall, path]: VerifyRecord): LockspaceError {
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
    case LeaseCheck.Dropped:
      cause = new LockspaceError(
        `ERR_LOCK_DROPPED: this process no longer holds the lock (closing any descriptor of the file in the process drops its POSIX locks), '${path}'`,
        { code: 'ERR_LOCK_DROPPED', path },
      );
      what = "this process's lock on it was dropped";
      break;
    default:
      cause = systemError(errnum, syscall, path, 'the file system failed the lock query');
      what = `the file system reports ${cause.code}`;
  }
  return new LockspaceError(`ERR_LOCK_LOST: lock lost (${what}), '${path}'`, { code: 'ERR_LOCK_LOST', path, cause });
}

