/*
 * Lock sets (LockSpace#acquireAll): several resources taken together, all or nothing. Here: the
 * requests as read, the members they make, the state of one attempt and its rules, and LeaseSet;
 * LockSpace drives an attempt with its own acquire calls (sync, async, on the threadpool).
 *
 * The rules (README, Semantics, "Lock sets"):
 * - One member per file. Requests whose names give one canonical path are one member from the start
 *   (the same name twice; `/d/./a` and `/d/a` in path mode). Names that reach one file otherwise (a
 *   hard link) show when the table answers EBUSY from this process for a file the set holds: see
 *   `alias`. A member is exclusive if any request of it is.
 * - Canonical order: by canonical path, which every process computes alike.
 * - An attempt first tries the members without waiting; on a busy one it lets everything go and
 *   waits for that one alone, then tries the rest without waiting while holding it. It never waits
 *   while holding, so it can close no cycle of waits.
 * - After ESCALATE_AFTER busy rounds it takes the members in canonical order, waiting for each while
 *   holding the earlier ones: hold-and-wait, but in one global order, which no cycle can close either.
 */
import type { Acquisition } from './acquisition';
import { invalidArgType, invalidArgValue, isLockspaceError } from './errors';
import type { Lease } from './lease';
import { checkName, knownOptions, onAbort, readOption, signalAborted, signalReason } from './validate';

const disposeSymbol: typeof Symbol.dispose = Symbol.dispose ?? Symbol.for('nodejs.dispose');
const asyncDisposeSymbol: typeof Symbol.asyncDispose = Symbol.asyncDispose ?? Symbol.for('nodejs.asyncDispose');

/** Only lockspace's own modules make lease sets: the token is not exported from the package. */
export const SET_TOKEN: unique symbol = Symbol('lockspace.leaseSet');

/** Busy rounds (a member was busy, and the set let go and waited for it) before the set waits for
 *  its members in canonical order, holding the ones it has. */
export const ESCALATE_AFTER = 3;

/** One request of `acquireAll`: a resource name (shared as `options.shared` says), or a name with
 *  its own `shared`. */
export type LockRequest = string | { name: string; shared?: boolean | undefined };

/** A request as read and validated; `shared` undefined: as `options.shared` says. */
export interface Requested {
  name: string;
  shared: boolean | undefined;
}

const REQUEST = { name: 'name', shared: 'boolean' } as const;

/** Reads acquireAll's requests before anything is taken: each element read once and validated. */
export function readRequests(requests: unknown, pathMode: boolean): Requested[] {
  if (!Array.isArray(requests)) throw invalidArgType('requests', 'an instance of Array', requests);
  const length = requests.length;
  if (length === 0) throw invalidArgValue('requests', requests, 'must name at least one resource');
  const read: Requested[] = [];
  for (let i = 0; i < length; i++) {
    const arg = `requests[${i}]`;
    const request: unknown = requests[i];
    if (typeof request === 'string') {
      read.push({ name: checkName(request, pathMode, arg), shared: undefined });
      continue;
    }
    if (request === null || typeof request !== 'object' || Array.isArray(request)) {
      throw invalidArgType(arg, 'of type string or object', request);
    }
    const r = knownOptions(request, REQUEST, 'a request of acquireAll', undefined, arg);
    const name = checkName(r.name, pathMode, `${arg}.name`);
    read.push({ name, shared: readOption(r, 'shared', REQUEST.shared, arg) as boolean | undefined });
  }
  return read;
}

/** One file of the set: what is acquired. */
export interface Member {
  /** The name of its first request. */
  readonly name: string;
  /** Its canonical path: the order, and one member per path. */
  readonly key: string;
  /** False once any request of it (or, found later, an alias of it) is exclusive. */
  shared: boolean;
}

/** What a failed take of a member means: covered (its name reaches a file the set holds), start
 *  over (a member the set holds shared must be taken exclusive), or busy (with the error to report). */
export const COVERED = 'covered';
export const START_OVER = 'start over';
export interface Busy {
  index: number;
  error: unknown;
}
export type NotTaken = typeof COVERED | typeof START_OVER | Busy;

/** The state of one acquireAll: its members in canonical order, which it holds, which are covered. */
export class SetAttempt {
  readonly members: readonly Member[];
  /** The call's options: owner, autoCreate, and `shared` for requests that do not say. */
  readonly acquisition: Acquisition;
  /** For each request, the index of its member. */
  readonly #memberOf: number[];
  readonly #held: (Lease | undefined)[];
  /** -1, or the held member whose lease covers this one. */
  readonly #coveredBy: number[];

  /** `keys[i]`: the canonical path of request i. */
  constructor(requested: Requested[], keys: string[], a: Acquisition) {
    this.acquisition = a;
    const byKey = new Map<string, Member>();
    requested.forEach((r, i) => {
      const exclusive = !(r.shared ?? a.shared);
      const known = byKey.get(keys[i]);
      if (known === undefined) byKey.set(keys[i], { name: r.name, key: keys[i], shared: !exclusive });
      else if (exclusive) known.shared = false; // exclusive wins
    });
    const members = [...byKey.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    const index = new Map(members.map((m, i) => [m.key, i]));
    this.members = members;
    this.#memberOf = keys.map((k) => index.get(k)!);
    this.#held = members.map(() => undefined);
    this.#coveredBy = members.map(() => -1);
  }

  /** Held, or covered by a held member. */
  settled(i: number): boolean {
    return this.#held[i] !== undefined || this.#coveredBy[i] >= 0;
  }

  hold(i: number, lease: Lease): void {
    this.#held[i] = lease;
  }

  /** The members held now: those an EBUSY from this process may be about. */
  heldIndexes(): number[] {
    return this.#held.flatMap((l, i) => (l === undefined ? [] : [i]));
  }

  /** Whether member i's failed take may be about the set's own hold: EBUSY from this process while
   *  the set holds something. The caller then looks for the held member whose file i's name reaches. */
  mayBeOwn(err: unknown): boolean {
    return isLockspaceError(err, 'EBUSY') && err.heldByThisProcess === true && this.#held.some((l) => l !== undefined);
  }

  /** What member i's failed take with `err` means; `h`: the held member whose file i's name reaches
   *  (-1: none). Any error but EBUSY ends the attempt: it is thrown. */
  notTaken(i: number, err: unknown, h: number): NotTaken {
    if (!isLockspaceError(err, 'EBUSY')) throw err;
    return h >= 0 ? this.#alias(i, h) : { index: i, error: err };
  }

  /** Member i's name reaches the file held member h holds: one lock. Exclusive wins: when h is held
   *  shared and i wants exclusive, h is marked exclusive and the attempt must start over (a later
   *  round where the two are no longer one file then takes h exclusive all the same: safe). */
  #alias(i: number, h: number): typeof COVERED | typeof START_OVER {
    if (!this.members[i].shared && this.members[h].shared) {
      this.members[h].shared = false;
      return START_OVER;
    }
    this.#coveredBy[i] = h;
    return COVERED;
  }

  /** Takes back everything held, last member first, for the caller to release; a later round finds
   *  the aliases again (files may have changed meanwhile). */
  letGo(): Lease[] {
    const leases: Lease[] = [];
    for (let i = this.#held.length - 1; i >= 0; i--) {
      const lease = this.#held[i];
      if (lease !== undefined) leases.push(lease);
      this.#held[i] = undefined;
      this.#coveredBy[i] = -1;
    }
    return leases;
  }

  /** The lease set, once every member is settled. */
  result(): LeaseSet {
    const held = this.#held;
    const leaseOf = (m: number): Lease => held[m] ?? held[this.#coveredBy[m]]!;
    return new LeaseSet(
      SET_TOKEN,
      this.#memberOf.map(leaseOf),
      held.filter((l): l is Lease => l !== undefined),
    );
  }
}

/** Releases every lease given, in that order, even when one of them throws (the first error is
 *  thrown afterwards). */
export function releaseEach(leases: readonly Lease[]): void {
  let first: { error: unknown } | undefined;
  for (const lease of leases) {
    try {
      lease.releaseSync();
    } catch (error) {
      first ??= { error };
    }
  }
  if (first) throw first.error;
}

/** releaseEach with `await lease.release()` (on the threadpool on network file systems), one at a time. */
export async function releaseEachAsync(leases: readonly Lease[]): Promise<void> {
  let first: { error: unknown } | undefined;
  for (const lease of leases) {
    try {
      await lease.release();
    } catch (error) {
      first ??= { error };
    }
  }
  if (first) throw first.error;
}

/**
 * Leases taken together by `acquireAll`/`acquireAllSync`. `leases[i]` is the lease that holds
 * `requests[i]`: requests that reached one file share one lease (the same object). Releasing
 * releases each lease once, in the reverse of the canonical order; further releases do nothing.
 */
export class LeaseSet {
  /** For each request, in the order given, the lease that holds it. */
  readonly leases: readonly Lease[];
  /** Each lease once, in canonical order. */
  readonly #held: readonly Lease[];
  #controller: AbortController | undefined;

  /** Lease sets come from `acquireAll`/`acquireAllSync` only: the token is not exported. */
  constructor(token: typeof SET_TOKEN, leases: Lease[], held: Lease[]) {
    if (token !== SET_TOKEN) throw new TypeError('Illegal constructor: lease sets come from LockSpace#acquireAll');
    this.leases = Object.freeze(leases);
    this.#held = held;
  }

  async release(): Promise<void> {
    await releaseEachAsync([...this.#held].reverse());
  }

  releaseSync(): void {
    releaseEach([...this.#held].reverse());
  }

  /**
   * Aborts when any lease of the set is known lost (see `Lease#signal`), with that lease's reason:
   * the set no longer holds all it was granted.
   */
  get signal(): AbortSignal {
    if (!this.#controller) {
      const controller = (this.#controller = new AbortController());
      for (const lease of this.#held) {
        const signal = lease.signal;
        if (signalAborted(signal)) {
          controller.abort(signalReason(signal));
          break;
        }
        onAbort(signal, () => controller.abort(signalReason(signal)));
      }
    }
    return this.#controller.signal;
  }

  [disposeSymbol](): void {
    this.releaseSync();
  }

  [asyncDisposeSymbol](): Promise<void> {
    return this.release();
  }
}
