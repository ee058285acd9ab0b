/*
 * Queued acquires: the dispatcher that receives their outcomes from native code, and the wait for
 * one of them bounded by a timeout and an AbortSignal.
 *
 * Rule: every delivery reaches its consumer or, when none can take it, its lease is released; one
 * consumer's failure never stops the deliveries after it.
 */
import { debuglog } from 'node:util';
import { isMainThread } from 'node:worker_threads';

import { AbortError, deadlockError, fromRecord, timeoutError } from './errors';
import { AcquireOutcome, binding as native, Delivery, isErrorRecord, isQueued, Queued } from './native';
import { onAbort, ownerFromKey, signalAborted, signalReason } from './validate';

/** Settles one queued request exactly once. `grant` returns false when the lease was not taken. */
interface Consumer {
  grant(lease: number): boolean;
  fail(error: Error): void;
}

const consumers = new Map<number, Consumer>();

function deliver(request: number, outcome: AcquireOutcome): void {
  const consumer = consumers.get(request);
  consumers.delete(request);
  const failed = isErrorRecord(outcome);
  let taken = false;
  try {
    if (consumer) {
      if (failed) consumer.fail(fromRecord(outcome));
      else taken = consumer.grant(outcome);
    }
  } finally {
    if (!failed && !taken) native.release(outcome); // nobody to give it to: never leak a lock
  }
}

// NODE_DEBUG=lockspace in a worker: the addon logs the releases its exit makes (terminate() runs no
// JavaScript, so the addon's env cleanup hook does it).
const logExitReleases = debuglog('lockspace').enabled && !isMainThread;

native.setDispatcher((batch: Delivery[]) => {
  for (const [request, outcome] of batch) {
    try {
      deliver(request, outcome);
    } catch (err) {
      // Not this batch's business: report it without losing the rest of the batch.
      queueMicrotask(() => {
        throw err;
      });
    }
  }
}, logExitReleases);

export function abortError(signal: AbortSignal): AbortError {
  return new AbortError(undefined, { cause: signalReason(signal) });
}

/**
 * Makes the AbortErrors of the waits one abort ends: each its own object, all with the stack of the
 * first (they are made at one place), so that a signal shared by thousands of waits captures one
 * stack, which is most of an error's cost.
 */
function abortErrors(signal: AbortSignal): () => AbortError {
  let first: AbortError | undefined;
  return () => {
    if (first === undefined) return (first = abortError(signal));
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    let err: AbortError;
    try {
      err = abortError(signal);
    } finally {
      Error.stackTraceLimit = limit;
    }
    err.stack = first.stack;
    return err;
  };
}

/** A wait's give-up, given the maker of its AbortError. */
type Abort = (error: () => Error) => void;

interface SignalWaits {
  readonly aborts: Set<Abort>;
  stopListening(): void;
}

/**
 * The waits each AbortSignal bounds, behind one 'abort' listener per signal: with one listener per
 * wait, a signal shared by thousands of waits costs quadratic time (EventTarget adds and removes a
 * listener in time linear in their number).
 */
const waitsBySignal = new WeakMap<AbortSignal, SignalWaits>();

/** Calls `abort` when `signal` aborts, unless the returned function was called first. */
function whenAborted(signal: AbortSignal, abort: Abort): () => void {
  let waits = waitsBySignal.get(signal);
  if (waits === undefined) {
    const aborts = new Set<Abort>();
    const stopListening = onAbort(signal, () => {
      waitsBySignal.delete(signal);
      const error = abortErrors(signal);
      for (const each of aborts) {
        try {
          each(error);
        } catch (err) {
          // One wait's failure never stops the others (as with separate listeners).
          queueMicrotask(() => {
            throw err;
          });
        }
      }
    });
    waits = { aborts, stopListening };
    waitsBySignal.set(signal, waits);
  }
  const { aborts, stopListening } = waits;
  aborts.add(abort);
  return () => {
    if (!aborts.delete(abort) || aborts.size > 0) return;
    if (waitsBySignal.get(signal)?.aborts === aborts) waitsBySignal.delete(signal);
    stopListening();
  };
}

/** setTimeout's longest delay; longer ones are re-armed until the deadline has really passed. */
const MAX_DELAY = 2 ** 31 - 1;

/** Calls `fire` once `ms` milliseconds have passed — never earlier, however large `ms` is. */
function deadline(ms: number, fire: () => void): () => void {
  const end = performance.now() + ms;
  let timer: NodeJS.Timeout;
  const arm = (left: number): void => {
    timer = setTimeout(() => {
      const rest = end - performance.now();
      if (rest > 0) arm(rest);
      else fire();
    }, Math.min(Math.max(Math.ceil(left), 0), MAX_DELAY));
  };
  arm(ms);
  return () => clearTimeout(timer);
}

/** A wait that is in no cycle when it has waited deadlockTimeout is looked at again later, at
 *  doubling intervals up to this (a cycle can also close without a new wait, as a grant to an owner
 *  that waits elsewhere adds edges). */
const MAX_RECHECK = 30_000;

/**
 * Looks for a cycle of waits through queued request `request` once it has waited `delay` ms, then at
 * doubling intervals while it waits (the timer keeps no process alive). `found` gets the error when
 * the table found one: the request is no longer queued then.
 */
function deadlockChecks(request: number, delay: number, path: string, found: (error: Error) => void): () => void {
  let timer: NodeJS.Timeout | undefined;
  let next = delay;
  const arm = (): void => {
    timer = setTimeout(check, Math.min(Math.max(Math.ceil(next), 0), MAX_DELAY));
    timer.unref();
  };
  const check = (): void => {
    const cycle = native.checkDeadlock(request);
    if (cycle === undefined) {
      next = Math.min(next * 2, Math.max(delay, MAX_RECHECK));
      arm();
      return;
    }
    found(deadlockError(path, cycle.map(([owner, p, soft]) => ({ owner: ownerFromKey(owner), path: p, soft }))));
  };
  arm();
  return () => clearTimeout(timer);
}

export interface WaitBounds {
  signal?: AbortSignal;
  timeout?: number;
  /** Look for a cycle of waits after this many ms (Infinity: never). */
  deadlockTimeout?: number;
  /** The file, for the ETIMEDOUT message. */
  path: string;
}

/**
 * Waits for a queued acquire: resolves with its lease id when granted, rejects with its error, with
 * ETIMEDOUT after `timeout` ms, or with an AbortError when `signal` aborts.
 */
export function awaitGrant(queued: Queued, bounds: WaitBounds): Promise<number> {
  const { request, started } = queued;
  const { signal, timeout } = bounds;
  return new Promise<number>((resolve, reject) => {
    let settled = false;
    let stopTimer: (() => void) | undefined;
    let stopListening: (() => void) | undefined;
    let stopChecks: (() => void) | undefined;
    const finish = (): void => {
      settled = true;
      consumers.delete(request);
      try {
        stopTimer?.();
        stopChecks?.();
        stopListening?.();
      } catch {
        // cleanup only; the outcome stands
      }
    };
    const consumer: Consumer = {
      grant(lease) {
        if (settled) return false;
        finish();
        resolve(lease);
        return true;
      },
      fail(error) {
        if (settled) return;
        finish();
        reject(error);
      },
    };
    // Only a request still queued can be given up; otherwise its outcome is already on its way.
    const giveUp = (error: () => Error): void => {
      if (settled || !native.cancel(request)) return;
      consumer.fail(error());
    };
    consumers.set(request, consumer);
    if (timeout !== undefined && timeout !== Infinity) {
      stopTimer = deadline(timeout, () => giveUp(() => timeoutError(bounds.path, timeout)));
    }
    if (signal) {
      if (signalAborted(signal)) giveUp(() => abortError(signal));
      else stopListening = whenAborted(signal, giveUp);
    }
    const { deadlockTimeout } = bounds;
    if (!settled && deadlockTimeout !== undefined && deadlockTimeout !== Infinity) {
      stopChecks = deadlockChecks(request, deadlockTimeout, bounds.path, (error) => consumer.fail(error));
    }
    started?.then(
      (answer) => {
        if (!isQueued(answer)) deliver(request, answer); // queued: a delivery, or giveUp's cancel, settles it
      },
      (e: unknown) => consumers.get(request)?.fail(e instanceof Error ? e : new Error(String(e))),
    );
  });
}
