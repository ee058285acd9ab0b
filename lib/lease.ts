/* A held lock: how it is released (once), and how it is known lost (see "Lost locks" below). */

import { debug, debugging, publishLost, publishRelease, releaseObserved } from './diagnostics';
import { LockspaceError } from './errors';
import { LeaseChecker, lostError, notHeldError } from './lost';
import { binding as native, LeaseCheck, VerifyRecord } from './native';
import type { Owner } from './validate';

const disposeSymbol: typeof Symbol.dispose = Symbol.dispose ?? Symbol.for('nodejs.dispose');
const asyncDisposeSymbol: typeof Symbol.asyncDispose = Symbol.asyncDispose ?? Symbol.for('nodejs.asyncDispose');

/** Only lockspace's own modules make leases: the token is not exported from the package. */
export const LEASE_TOKEN: unique symbol = Symbol('lockspace.lease');

/** Lease internals the lockspace and its lease checker use (set by Lease's static block). */
export let leaseInternals: {
  id(lease: Lease): number;
  watch(lease: Lease, checker: LeaseChecker<Lease>): void;
  take(lease: Lease, record: VerifyRecord): boolean;
};

/** A held lock. Release it once (further releases do nothing); `await using` releases it too. */
export class Lease {
  /** The resource name it was acquired by. */
  readonly name: string;
  readonly shared: boolean;
  readonly owner: Owner;
  /** Holder records (`records: true`): for an exclusive lease, its generation, one more than the last
   *  exclusive holder's on any host; for a shared one, the last exclusive holder's. null without
   *  records. */
  readonly generation: bigint | null;
  #id: number;
  #prefix: string;
  /** Whether its file's syscalls run on libuv's threadpool (a network file system). */
  #onPool: boolean;
  #released = false;
  // Lost locks (see "Lost locks" below): the error once known lost, the signal's controller (made
  // on first use of `signal`), and the background checker watching this lease.
  #lost: LockspaceError | undefined;
  #controller: AbortController | undefined;
  #checker: LeaseChecker<Lease> | undefined;

  /** Leases come from `acquire`/`acquireSync` only: the token is not exported. */
  constructor(
    token: typeof LEASE_TOKEN,
    id: number,
    name: string,
    prefix: string,
    shared: boolean,
    owner: Owner,
    onPool: boolean,
    generation: bigint | null = null,
  ) {
    if (token !== LEASE_TOKEN) throw new TypeError('Illegal constructor: leases come from LockSpace#acquire');
    this.#id = id;
    this.name = name;
    this.#prefix = prefix;
    this.shared = shared;
    this.owner = owner;
    this.generation = generation;
    this.#onPool = onPool;
  }

  /** The file it locks. */
  get path(): string {
    return this.#prefix + this.name;
  }

  /** True once released by any means: this lease, `release(name, owner)`, `releaseOwner`, worker exit. */
  get released(): boolean {
    if (!this.#released && !native.isHeld(this.#id)) this.#released = true;
    return this.#released;
  }

  releaseSync(): void {
    if (this.#released) return;
    this.#released = true;
    this.#checker?.remove(this);
    this.#afterRelease(native.release(this.#id));
  }

  async release(): Promise<void> {
    if (!this.#onPool) return this.releaseSync();
    if (this.#released) return;
    this.#released = true;
    this.#checker?.remove(this);
    this.#afterRelease(await native.releaseAsync(this.#id));
  }

  #afterRelease(released: boolean): void {
    if (!released) return;
    if (debugging) debug('release %s owner=%j', this.path, this.owner);
    if (releaseObserved()) publishRelease(() => ({ name: this.name, path: this.path, owner: this.owner, via: 'lease' }));
  }

  [disposeSymbol](): void {
    this.releaseSync();
  }

  /* ---------------------------------------------------------------- lost locks */

  /**
   * Aborts when the lock is known lost (the file system's client or server failed, another host
   * took it, its file was unlinked or replaced); `signal.reason` is a LockspaceError with code
   * `'ERR_LOCK_LOST'`, the path and a `cause`. Pass it to the work the lock protects. A lease that
   * is released (and not lost) never aborts.
   */
  get signal(): AbortSignal {
    if (!this.#controller) {
      this.#controller = new AbortController();
      if (this.#lost) this.#controller.abort(this.#lost);
    }
    return this.#controller.signal;
  }

  /**
   * Resolves if the lock is still held and the name still reaches its file. Otherwise aborts
   * `signal` and rejects with the ERR_LOCK_LOST error (ERR_LOCK_NOT_HELD once released). Locally the
   * kernel must show this process's own lock (a POSIX lock dropped by a close outside lockspace is
   * lost); on a network file system it asks the server about the held descriptor (F_GETLK /
   * F_OFD_GETLK), on the threadpool. Always a query, never a change of the lock.
   */
  async verify(): Promise<void> {
    if (this.#lost) throw this.#lost;
    if (this.#released) throw notHeldError(this.path);
    const record = (this.#onPool ? await native.verifyAsync([this.#id]) : native.verify([this.#id]))[0];
    this.#take(record);
    if (this.#lost) throw this.#lost;
    if (record[0] !== LeaseCheck.Held || this.#released) {
      // Released meanwhile (here, by name, by releaseOwner or by the worker's exit).
      this.#released = true;
      throw notHeldError(this.path);
    }
  }

  /** Records a verify outcome; true when the lease is still worth checking. */
  #take(record: VerifyRecord): boolean {
    const check = record[0];
    if (check === LeaseCheck.Held) return true;
    if (check === LeaseCheck.NotHeld) {
      this.#checker?.remove(this);
      return false;
    }
    if (!this.#lost && !this.#released) {
      this.#lost = lostError(record);
      this.#checker?.remove(this);
      if (debugging) debug('lost %s: %s', this.path, this.#lost.message);
      const reason = this.#lost;
      publishLost(() => ({ name: this.name, path: this.path, shared: this.shared, owner: this.owner, reason }));
      this.#controller?.abort(reason);
    }
    return false;
  }

  static {
    leaseInternals = {
      id: (lease) => lease.#id,
      watch: (lease, checker) => {
        lease.#checker = checker;
        checker.add(lease);
      },
      take: (lease, record) => lease.#take(record),
    };
  }

  [asyncDisposeSymbol](): Promise<void> {
    return this.release();
  }
}
