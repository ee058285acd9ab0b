/*
 * diagnostics_channel publishing, at no cost when nobody subscribes (each publisher checks
 * hasSubscribers before building a message):
 *  - tracingChannel('lockspace:acquire'): start/end around acquireSync, start/end/asyncStart/asyncEnd
 *    around acquire's promise, error with the LockspaceError; the message is an AcquireMessage and
 *    gets `result` (the Lease) or `error`;
 *  - channel('lockspace:release'): a ReleaseMessage for every release this thread makes;
 *  - channel('lockspace:lost'): a LostMessage when a lease is known to be lost (publishLost);
 *  - channel('lockspace:fenced'): a FencedMessage when the holder of a bound set reports a lost lock
 *    and its fencing action (bound.ts; only in the manager that bound the set, while it runs).
 */
import * as dc from 'node:diagnostics_channel';
import { debuglog } from 'node:util';

import type { Owner } from './validate';

export interface AcquireMessage {
  name: string;
  path: string;
  shared: boolean;
  owner: Owner;
  wait: boolean;
}

export interface ReleaseMessage {
  name: string;
  path: string;
  owner: Owner;
  /** How it was released: a lease, release(name, owner), or releaseOwner(owner). */
  via: 'lease' | 'name' | 'owner';
}

export interface LostMessage {
  name: string;
  path: string;
  shared: boolean;
  owner: Owner;
  /** Why the lease is known to be lost. */
  reason: Error;
}

/** NODE_DEBUG=lockspace logging. Node reads NODE_DEBUG once, at startup, so whether it is on is read
 *  once too: the logger's own `enabled` getter is slow on the hot paths that check it. */
export const debug: (format: string, ...args: unknown[]) => void = debuglog('lockspace');
export const debugging: boolean = debuglog('lockspace').enabled;

type Tracing = dc.TracingChannel<object, AcquireMessage>;

// tracingChannel exists from Node.js 18.19 and 20.0; hasSubscribers on it from 20.13.
const acquireTracing: Tracing | undefined =
  typeof dc.tracingChannel === 'function' ? (dc.tracingChannel('lockspace:acquire') as Tracing) : undefined;
const releaseChannel = dc.channel('lockspace:release');
const lostChannel = dc.channel('lockspace:lost');

/** Whether anyone subscribes to the acquire tracing channel (hot paths check this first). */
export function tracing(): boolean {
  if (acquireTracing === undefined) return false;
  const t = acquireTracing as Tracing & { hasSubscribers?: boolean };
  if (typeof t.hasSubscribers === 'boolean') return t.hasSubscribers;
  return [t.start, t.end, t.asyncStart, t.asyncEnd, t.error].some((c) => c.hasSubscribers);
}

export function traceAcquireSync<T>(fn: () => T, message: () => AcquireMessage): T {
  if (!tracing()) return fn();
  return acquireTracing!.traceSync(fn, message());
}

export function traceAcquire<T>(fn: () => Promise<T>, message: () => AcquireMessage): Promise<T> {
  if (!tracing()) return fn();
  return acquireTracing!.tracePromise(fn, message());
}

export function releaseObserved(): boolean {
  return releaseChannel.hasSubscribers;
}

export function publishRelease(message: () => ReleaseMessage): void {
  if (releaseChannel.hasSubscribers) releaseChannel.publish(message());
}

/** The one place that announces a lost lease (on 'lockspace:lost'). */
export function publishLost(message: () => LostMessage): void {
  if (lostChannel.hasSubscribers) lostChannel.publish(message());
}
