/*
 * Bound sets (LockSpace#holdFor): a set of locks held for the life of another process (a VM), by a
 * holder process of its own (native/holder/holder.cc), so that the manager that bound it can exit,
 * crash or be upgraded and the locks stay, until the bound process ends.
 * Here: reading holdFor's arguments, starting the holder and reading its reports, BoundSet. Finding
 * holders again is bound-holders.ts. Ending a set is a signal to its holder, which the kernel admits
 * from the holder's user and root only.
 */
import { spawn } from 'node:child_process';
import * as dc from 'node:diagnostics_channel';
import * as fs from 'node:fs';

import { invalidArgType, invalidArgValue, LockspaceError, systemError } from './errors';
import { BoundRecord, FoundHolder, isLive, LostAction, startTime } from './bound-holders';
import { readRequests } from './lease-set';
import { HOLDER_PROGRAM } from './native';
import { procStat } from './proc-stat';
import type { LockType } from './options';
import { knownOptions, onAbort, readOption, signalAborted, signalReason } from './validate';
import { abortError } from './waits';

/** The member index of a holder's `error` line that says no guardian could be started. */
const NO_GUARDIAN = -2;

export type { BoundRecord, BoundTo, LostAction } from './bound-holders';

/** holdFor's options other than waiting. */
export interface HoldForCommonOptions {
  /** Shared (read) locks for the requests that do not say. */
  shared?: boolean | undefined;
  /** Create missing files (mode 0600); deleted again when the set is released or its process ends
   *  (local file systems only, as for `acquire`). */
  autoCreate?: boolean | undefined;
  /** Fencing: what happens to the bound process when a lock is lost. Default `'kill'`. */
  onLost?: LostAction | undefined;
  /** `onLost: 'term'`: ms between SIGTERM and SIGKILL. Default 5000. */
  graceMs?: number | undefined;
  /** How often (ms) the holder checks that each lock is still held. Default 2000. */
  checkInterval?: number | undefined;
  /** The holder fences when no check has completed for this long (ms; a network file system's call
   *  can hang for the server's whole timeout). Default 3 × checkInterval. Set it well below the time
   *  after which the file system grants the lock to another host. */
  fenceAfter?: number | undefined;
  /** Records only (`LockSpace.open(dir, { records: true })`): the label of the holder records, e.g.
   *  the VM's name; at most 256 bytes of UTF-8. With records on, the holder writes a record into each
   *  file of the set as a grant of the lockspace does (an exclusive member counts the generation on):
   *  readers (`inspect`, `lockspace status`) see the holder (`holderPid`) as the holder. */
  label?: string | undefined;
}

/** Bind without waiting: EBUSY at once when a member is held. */
export interface HoldForNowOptions extends HoldForCommonOptions {
  wait?: false | undefined;
  timeout?: undefined;
  signal?: undefined;
}

/** Bind once every lock of the set is free (holding none of them meanwhile). */
export interface HoldForWaitOptions extends HoldForCommonOptions {
  wait: true;
  /** Give up after this many ms (ETIMEDOUT), nothing held. */
  timeout?: number | undefined;
  /** Abort the bind (AbortError), nothing held. */
  signal?: AbortSignal | undefined;
}

/** Options built before the call, in a variable: there `wait` is a `boolean`, so whether `timeout`
 *  and `signal` go with `wait: true` is checked at run time (ERR_INVALID_ARG_VALUE). */
export interface HoldForBooleanWaitOptions extends HoldForCommonOptions {
  wait: boolean;
  timeout?: number | undefined;
  signal?: AbortSignal | undefined;
}

/** holdFor's options. `timeout` and `signal` go with `wait: true` only, as for `acquire`: without
 *  `wait` they do not compile. */
export type HoldForOptions = HoldForNowOptions | HoldForWaitOptions | HoldForBooleanWaitOptions;

/** diagnostics_channel('lockspace:fenced'): a holder reported a lost lock, and what it did. */
export interface FencedMessage {
  pid: number;
  holderPid: number;
  names: readonly string[];
  /** The name whose lock was lost, or null (the holder died, or its checks stopped answering). */
  lostName: string | null;
  /** 'SIGKILL', 'SIGTERM', 'SIGTERM,SIGKILL' or 'none'. */
  action: string;
  reason: LockspaceError;
}
const fencedChannel = dc.channel('lockspace:fenced');

const ESRCH = 3;
const EBUSY = 16;
const ETIMEDOUT = 110;
/** What makes a holder release its set on purpose (the holder program's kReleaseSignal). Any other
 *  ending signal while the bound process runs fences that process first. */
const RELEASE_SIGNAL = 'SIGUSR1';




const lostError = (record: BoundRecord, index: number, errnum: number): LockspaceError => {
  const path = record.paths[index];
  const cause = systemError(errnum, 'fcntl', path);
  return new LockspaceError(`ERR_LOCK_LOST: lock lost, holdFor '${path ?? record.names.join("', '")}' (bound to pid ${record.pid})`, {
    code: 'ERR_LOCK_LOST',
    syscall: 'holdFor',
    ...(path === undefined ? {} : { path }),
    cause,
  });
};

/** How often a found set's `signal` looks at its holder (bound sets are few; each look reads two
 *  small /proc files). */
const FOUND_WATCH_MS = 200;

const terminatedError = (record: BoundRecord): LockspaceError =>
  new LockspaceError(`ERR_LOCK_LOST: the holder of process ${record.pid}'s locks was told to end while the process ran`, {
    code: 'ERR_LOCK_LOST',
    syscall: 'holdFor',
  });

const foundLostError = (record: BoundRecord): LockspaceError =>
  new LockspaceError(`ERR_LOCK_LOST: lock lost, holdFor '${record.names.join("', '")}' (bound to pid ${record.pid})`, {
    code: 'ERR_LOCK_LOST',
    syscall: 'holdFor',
  });

const endedError = (record: BoundRecord): LockspaceError =>
  new LockspaceError(
    `ERR_LOCK_NOT_HELD: the set of process ${record.pid} ended: its holder is gone (the process ended, the set was released, or the holder died)`,
    { code: 'ERR_LOCK_NOT_HELD', syscall: 'holdFor' },
  );

const BOUND_TOKEN: unique symbol = Symbol('lockspace.boundSet');

/**
 * A set of locks held for the life of process `pid` by a holder process (`holderPid`): the kernel
 * releases them when `pid` ends, whatever happens to the manager that bound them. A manager that
 * restarts finds it again with `ls.boundSets()`.
 */
export class BoundSet {
  /** The bound process. */
  readonly pid: number;
  /** The process that holds the locks (`lockspace-hold`). */
  readonly holderPid: number;
  /** The names bound, in the order given. */
  readonly names: readonly string[];
  readonly directory: string | null;
  readonly lockType: LockType;
  readonly onLost: LostAction;
  /** When it was bound. */
  readonly since: Date;
  readonly #record: BoundRecord;
  readonly #holderStart: string;
  readonly #controller = new AbortController();
  /** The holder's exit, when this process started it (else ended() polls /proc). */
  #exit: Promise<void> | undefined;
  /** The holder's child process handle (unref'd: the set outlives this manager), ref'd while anyone
   *  here awaits the holder's exit, which would otherwise keep no event loop alive. */
  #holder: { ref(): void; unref(): void } | undefined;
  #awaitingExit = 0;
  /** A found set's look at its holder for `signal`, started the first time `signal` is read. */
  #watch: ReturnType<typeof setInterval> | undefined;

  /** Bound sets come from `holdFor` and `boundSets` only: the token is not exported. */
  constructor(token: typeof BOUND_TOKEN, record: BoundRecord, holderPid: number, holderStart: string) {
    if (token !== BOUND_TOKEN) throw new TypeError('Illegal constructor: bound sets come from LockSpace#holdFor');
    this.pid = record.pid;
    this.holderPid = holderPid;
    this.names = Object.freeze([...record.names]);
    this.directory = record.directory;
    this.lockType = record.lockType;
    this.onLost = record.onLost;
    this.since = new Date(record.since);
    this.#record = record;
    this.#holderStart = holderStart;
  }

  /** 'held'; 'lost' once a lock of the set is lost (the fencing action has run); 'ended' when the
   *  holder is gone (the bound process ended, or the set was released). */
  get state(): 'held' | 'lost' | 'ended' {
    if (!isLive(this.holderPid, this.#holderStart)) return 'ended';
    let comm = '';
    try {
      comm = fs.readFileSync(`/proc/${this.holderPid}/comm`, 'latin1').trim();
    } catch {
      return 'ended';
    }
    return comm === 'lockspace-lost' ? 'lost' : 'held';
  }

  /**
   * In the manager that bound the set: aborts (reason ERR_LOCK_LOST) when the holder reports a lost
   * lock, or dies. In a set found with `boundSets()`: aborts once `state` is no longer 'held': 'lost'
   * (ERR_LOCK_LOST), or 'ended' (ERR_LOCK_NOT_HELD: the bound process ended, the set was released,
   * or the holder died). A found set looks at its holder every 200 ms from the first time `signal`
   * is read, until it aborts; that keeps no event loop alive.
   */
  get signal(): AbortSignal {
    if (this.#exit === undefined && this.#watch === undefined && !this.#controller.signal.aborted) this.#watchFound();
    return this.#controller.signal;
  }

  /** A found set hears no report from its holder: `signal` follows `state` instead. */
  #watchFound(): void {
    const check = (): boolean => {
      const state = this.state;
      if (state === 'held') return false;
      this.lost(state === 'lost' ? foundLostError(this.#record) : endedError(this.#record));
      return true;
    };
    if (check()) return;
    this.#watch = setInterval(() => {
      if (check()) clearInterval(this.#watch);
    }, FOUND_WATCH_MS);
    this.#watch.unref();
  }

  /** @internal This process started the holder: its exit event says when it is gone. */
  watchExit(exit: Promise<void>, holder: { ref(): void; unref(): void }): void {
    this.#exit = exit;
    this.#holder = holder;
  }

  /** @internal The holder reported a loss. */
  lost(reason: LockspaceError): void {
    if (!this.#controller.signal.aborted) this.#controller.abort(reason);
  }

  /** Resolves once the holder is gone: the bound process ended (or the set was released) and the
   *  kernel has dropped the locks. */
  async ended(): Promise<void> {
    if (this.#exit) {
      if (this.#awaitingExit++ === 0) this.#holder?.ref();
      try {
        return await this.#exit;
      } finally {
        if (--this.#awaitingExit === 0) this.#holder?.unref();
      }
    }
    while (isLive(this.holderPid, this.#holderStart) && !isZombie(this.holderPid)) await new Promise((r) => setTimeout(r, 10));
  }

  /**
   * Releases the set: the holder unlocks and exits. Refused (ERR_BOUND_PROCESS_RUNNING) while the
   * bound process runs, unless `force` (the process then runs without its locks: stop or pause it
   * first). Resolves once the holder is gone.
   */
  async release(options?: { force?: boolean | undefined }): Promise<void> {
    const force = options === undefined ? undefined : readOption(knownOptions(options, { force: 'boolean' }, 'release'), 'force', 'boolean');
    if (!isLive(this.holderPid, this.#holderStart)) return;
    if (force !== true && isLive(this.pid, this.#record.start)) {
      throw new LockspaceError(
        `ERR_BOUND_PROCESS_RUNNING: process ${this.pid} still runs: its locks stay until it ends (release({ force: true }) to drop them anyway)`,
        { code: 'ERR_BOUND_PROCESS_RUNNING', syscall: 'release' },
      );
    }
    try {
      // A holder started before release signals existed releases on SIGTERM.
      process.kill(this.holderPid, this.#record.releaseSignal ?? 'SIGTERM');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ESRCH') return;
      throw systemError(-(err as NodeJS.ErrnoException).errno!, 'kill', undefined, `holder ${this.holderPid}`);
    }
    await this.ended();
  }
}

function isZombie(pid: number): boolean {
  return (procStat(pid)?.state ?? 'Z') === 'Z';
}

const HOLD_OPTIONS = {
  shared: 'boolean',
  autoCreate: 'boolean',
  wait: 'boolean',
  timeout: 'timeout',
  signal: 'signal',
  checkInterval: 'interval',
  fenceAfter: 'interval',
  graceMs: 'interval',
  label: 'label',
} as const;

interface HoldPlan {
  record: BoundRecord;
  args: string[];
  wait: boolean;
  signal: AbortSignal | undefined;
}

function readOnLost(value: unknown): LostAction {
  if (value === undefined) return 'kill';
  if (value === 'kill' || value === 'term' || value === 'none') return value;
  if (typeof value !== 'string') throw invalidArgType('options.onLost', 'of type string', value);
  throw invalidArgValue('options.onLost', value, "must be 'kill', 'term' or 'none'");
}

/** Reads holdFor's arguments into the holder's command line and record: nothing started yet. */
export function planHold(
  pid: unknown,
  requests: unknown,
  options: unknown,
  ls: { directory: string | null; lockType: LockType; records: boolean; pathOf(name: string): string; keyOf(name: string): string },
): HoldPlan {
  if (typeof pid !== 'number') throw invalidArgType('pid', 'of type number', pid);
  if (!Number.isInteger(pid) || pid <= 0 || pid > 2 ** 22) throw invalidArgValue('pid', pid, 'must be a process id (a positive integer)');
  const requested = readRequests(requests, ls.directory === null);
  const opts = options === undefined ? {} : knownOptions(options, { ...HOLD_OPTIONS, onLost: 'name' }, 'holdFor');
  const shared = readOption(opts, 'shared', 'boolean') === true;
  const autoCreate = readOption(opts, 'autoCreate', 'boolean') === true;
  const wait = readOption(opts, 'wait', 'boolean') === true;
  const timeout = readOption(opts, 'timeout', 'timeout') as number | undefined;
  const signal = readOption(opts, 'signal', 'signal') as AbortSignal | undefined;
  const onLost = readOnLost(opts.onLost);
  const checkInterval = (readOption(opts, 'checkInterval', 'interval') as number | undefined) ?? 2000;
  const fenceAfter = (readOption(opts, 'fenceAfter', 'interval') as number | undefined) ?? 3 * checkInterval;
  const graceMs = (readOption(opts, 'graceMs', 'interval') as number | undefined) ?? 5000;
  const label = readOption(opts, 'label', 'label') as string | undefined;
  if (label !== undefined && !ls.records) {
    throw invalidArgValue('options', options, 'sets label, which needs a lockspace opened with { records: true }');
  }
  if (!wait && (timeout !== undefined || signal !== undefined)) {
    throw invalidArgValue('options', options, 'sets timeout or signal without wait: true');
  }
  if (checkInterval === 0) throw invalidArgValue('options.checkInterval', checkInterval, 'must be at least 1 (ms): a bound set is always checked');
  if (fenceAfter <= checkInterval) throw invalidArgValue('options.fenceAfter', fenceAfter, 'must be longer than checkInterval');

  // One member per file path, exclusive if any request of it is; in canonical order, which every
  // holder uses alike (the holder also makes one lock of two names that reach one file).
  const members = new Map<string, { name: string; path: string; shared: boolean }>();
  for (const r of requested) {
    const key = ls.keyOf(r.name);
    const isShared = r.shared ?? shared;
    const known = members.get(key);
    if (known === undefined) members.set(key, { name: r.name, path: ls.pathOf(r.name), shared: isShared });
    else known.shared &&= isShared;
  }
  const ordered = [...members.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, m]) => m);

  const start = startTime(pid);
  if (start === null) throw systemError(ESRCH, 'holdFor', undefined, `no process ${pid}`);
  const record: BoundRecord = {
    v: 1,
    releaseSignal: RELEASE_SIGNAL,
    directory: ls.directory,
    names: ordered.map((m) => m.name),
    paths: ordered.map((m) => m.path),
    shared: ordered.map((m) => m.shared),
    pid,
    start,
    lockType: ls.lockType,
    onLost,
    since: new Date().toISOString(),
  };
  const waitMs = !wait ? 0 : timeout === undefined ? -1 : Math.ceil(timeout);
  const args = [
    ...['--pid', String(pid), '--start', start, '--kind', ls.lockType, '--wait-ms', String(waitMs)],
    ...['--on-lost', onLost, '--grace-ms', String(graceMs), '--check-ms', String(checkInterval), '--fence-after-ms', String(fenceAfter)],
    ...(autoCreate ? ['--auto-create'] : []),
    ...(ls.records ? ['--records', ...(label ? ['--label', label] : [])] : []),
    '--',
    ...ordered.map((m) => `${m.shared ? 's' : 'x'}${m.path}`),
  ];
  return { record, args, wait, signal };
}

/** Starts the holder of a planned set and resolves once it holds every lock (or rejects: nothing held). */
export function startHolder(plan: HoldPlan): Promise<BoundSet> {
  const { record, signal } = plan;
  if (signal && signalAborted(signal)) return Promise.reject(abortError(signal));
  return new Promise<BoundSet>((resolve, reject) => {
    let child;
    try {
      fs.accessSync(HOLDER_PROGRAM, fs.constants.X_OK);
      child = spawn(HOLDER_PROGRAM, plan.args, {
        detached: true, // its own session: the manager's terminal and process group can go
        stdio: ['ignore', 'pipe', 'ignore'],
        env: { LOCKSPACE_BOUND: JSON.stringify(record) },
      });
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      reject(systemError(-(e.errno ?? -2), 'spawn', HOLDER_PROGRAM, 'the holder program of bound sets (built beside the addon)'));
      return;
    }
    const holder = child;
    const exit = new Promise<void>((done) => holder.once('exit', () => done()));
    let settled: BoundSet | Error | undefined;
    let outcome: Error | undefined;
    let bound: BoundSet | undefined;
    let buffered = '';
    // Given up: the holder releases whatever it took and exits, and 'close' rejects. A 'held' it wrote
    // before it got the signal may still come: it is no set (the holder is releasing it).
    let givenUp = false;
    const off = signal
      ? onAbort(signal, () => {
          givenUp = true;
          holder.kill(RELEASE_SIGNAL);
        })
      : () => {};
    const fail = (err: Error) => {
      outcome ??= err;
    };
    holder.on('error', (err: NodeJS.ErrnoException) => fail(systemError(-(err.errno ?? -5), 'spawn', HOLDER_PROGRAM)));
    const onLine = (line: string) => {
      const [what, ...words] = line.split(' ');
      if (bound === undefined) {
        if (givenUp) return;
        if (what === 'held') {
          bound = new BoundSet(BOUND_TOKEN, record, holder.pid!, startTime(holder.pid!) ?? '');
          bound.watchExit(exit, holder);
          settled = bound;
          off();
          holder.unref(); // the set outlives this manager: nothing here waits for the holder
          (holder.stdout as unknown as { unref(): void }).unref();
          resolve(bound);
        } else if (what === 'busy') {
          const path = record.paths[Number(words[0])];
          const holderPid = Number(words[1]);
          const err = plan.wait
            ? new LockspaceError(`ETIMEDOUT: timed out waiting for the lock, holdFor '${path}'`, { code: 'ETIMEDOUT', errno: -ETIMEDOUT, syscall: 'holdFor', path })
            : systemError(EBUSY, 'holdFor', path, holderPid > 0 ? `held by another process, pid ${holderPid}` : 'held by another process');
          if (!plan.wait && holderPid > 0) (err as { holderPid: number }).holderPid = holderPid;
          if (!plan.wait) (err as { heldByThisProcess: boolean }).heldByThisProcess = false;
          fail(err);
        } else if (what === 'error') {
          const index = Number(words[2]);
          const errnum = Number(words[0]);
          fail(
            errnum === ESRCH && index < 0
              ? systemError(ESRCH, 'holdFor', undefined, `process ${record.pid} ended before its locks were held`)
              : systemError(errnum, words[1], record.paths[index], index === NO_GUARDIAN ? 'the holder could not start the guardian that fences the process if the holder dies' : undefined),
          );
        }
        return;
      }
      if (what === 'lost') bound.lost(lostError(record, Number(words[0]), Number(words[1])));
      if (what === 'terminated') bound.lost(terminatedError(record));
      if (what === 'fenced') {
        const reason =
          words[1] === 'holder-exited'
            ? new LockspaceError(`ERR_LOCK_LOST: the holder of process ${record.pid}'s locks exited`, { code: 'ERR_LOCK_LOST', syscall: 'holdFor' })
            : words[1] === 'terminated'
              ? terminatedError(record)
              : bound.signal.aborted
                ? (signalReason(bound.signal) as LockspaceError)
                : lostError(record, -1, ETIMEDOUT);
        if (words[1] === 'holder-exited') bound.lost(reason);
        publishFenced(bound, record, words[0], reason);
      }
    };
    holder.stdout!.setEncoding('latin1');
    holder.stdout!.on('data', (chunk: string) => {
      buffered += chunk;
      for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
        onLine(buffered.slice(0, nl));
        buffered = buffered.slice(nl + 1);
      }
    });
    // Rejects only once the holder has exited: the kernel has dropped whatever it held by then.
    holder.on('close', (code, sig) => {
      off();
      if (settled !== undefined) return;
      if (signal && signalAborted(signal)) outcome = abortError(signal);
      reject(outcome ?? systemError(5, 'holdFor', undefined, `the holder exited (${sig ?? code}) before holding the set`));
    });
  });
}


function publishFenced(bound: BoundSet, record: BoundRecord, action: string, reason: LockspaceError): void {
  if (!fencedChannel.hasSubscribers) return;
  const lostPath = reason.path;
  const index = lostPath === undefined ? -1 : record.paths.indexOf(lostPath);
  fencedChannel.publish({
    pid: bound.pid,
    holderPid: bound.holderPid,
    names: bound.names,
    lostName: index < 0 ? null : record.names[index],
    action,
    reason,
  } satisfies FencedMessage);
}

/** A found holder's set. */
export function boundSetOf(h: FoundHolder): BoundSet {
  return new BoundSet(BOUND_TOKEN, h.record, h.holderPid, h.holderStart);
}
