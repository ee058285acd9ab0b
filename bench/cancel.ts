/**
 * Cancelling queued waits: many `acquire(name, { wait: true, signal })` queued behind a lease this
 * process holds, then aborted. Each wait with its own AbortController at two queue lengths (the cost
 * should grow linearly: the ratio of the two times), and one AbortSignal shared by all the waits.
 * Own controllers are aborted in a shuffled order: waits give up in any order in real use, and queue
 * order (always the head) or its reverse (always the tail) would hide a linear search of the queue.
 */
import { setMaxListeners } from 'events';
import { elapsedNs, nowNs } from './clock';
import type { LockSpace, LockspaceModule } from './lockspace';
import { median } from './stats';

export interface AbortTiming {
  waits: number;
  /** Wall time from the first abort() to the rejection of the last wait (median of the rounds). */
  ms: number;
}

export interface CancelResult {
  /** Each wait with its own AbortController, aborted one after another, at each queue length. */
  ownSignal: AbortTiming[];
  /** Time at the longest queue / time at the shortest: the median of the per-round ratios. */
  growth: number;
  /** One AbortController whose signal every wait listens to, aborted once. */
  sharedSignal: AbortTiming & {
    /** How many waits did not end in an AbortError (0 when every wait was rejected as expected). */
    notAborted: number;
  };
}

export interface CancelOptions {
  /** Queue lengths of the own-signal measure, smallest first. */
  ownSignalWaits: number[];
  sharedSignalWaits: number;
  rounds: number;
  /** No round starts after this much wall time (the first always runs): a quadratic cancel
   *  misses its target by far in one round, and must not make the bench run for minutes. */
  budgetMs: number;
}

const HOLDER = 'cancel-holder';
const QUEUE_LIMIT_MS = 30_000;

/** Until `count` waits are queued in the native table. */
async function untilQueued(lockspace: LockspaceModule, count: number): Promise<void> {
  const start = nowNs();
  while (lockspace._debug.stats().waiters < count) {
    if (elapsedNs(start) > QUEUE_LIMIT_MS * 1e6) throw new Error(`only ${lockspace._debug.stats().waiters} of ${count} waits queued`);
    await new Promise((resolve) => setImmediate(resolve));
  }
}

/** Queues one wait per signal, aborts them, and returns the time from the first abort to the last
 *  rejection and how many waits ended otherwise than with an AbortError. */
async function abortQueued(
  lockspace: LockspaceModule,
  ls: LockSpace,
  signals: AbortSignal[],
  abort: () => void,
): Promise<{ ms: number; notAborted: number }> {
  const outcomes = signals.map((signal) =>
    ls.acquire('r', { wait: true, signal }).then(
      (lease) => {
        lease.releaseSync();
        return false;
      },
      (e: unknown) => e instanceof Error && e.name === 'AbortError',
    ),
  );
  await untilQueued(lockspace, signals.length);
  const start = nowNs();
  abort();
  const aborted = await Promise.all(outcomes);
  const ms = elapsedNs(start) / 1e6;
  return { ms, notAborted: aborted.filter((ok) => !ok).length };
}

/** The same shuffle in every run (Fisher-Yates driven by a 32-bit LCG). */
function shuffled<T>(items: readonly T[]): T[] {
  const out = [...items];
  let state = 0x2545f491;
  for (let i = out.length - 1; i > 0; i--) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    const j = state % (i + 1);
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

async function ownSignals(lockspace: LockspaceModule, ls: LockSpace, waits: number): Promise<number> {
  const controllers = Array.from({ length: waits }, () => new AbortController());
  const abortOrder = shuffled(controllers);
  const { ms, notAborted } = await abortQueued(
    lockspace,
    ls,
    controllers.map((c) => c.signal),
    () => abortOrder.forEach((c) => c.abort()),
  );
  if (notAborted > 0) throw new Error(`${notAborted} of ${waits} waits with their own signal did not end in an AbortError`);
  return ms;
}

async function sharedSignal(lockspace: LockspaceModule, ls: LockSpace, waits: number): Promise<{ ms: number; notAborted: number }> {
  const controller = new AbortController();
  setMaxListeners(waits, controller.signal); // many listeners on one signal is the point here
  return abortQueued(lockspace, ls, Array(waits).fill(controller.signal), () => controller.abort());
}

export async function runCancel(lockspace: LockspaceModule, dir: string, options: CancelOptions): Promise<CancelResult> {
  const ls = lockspace.LockSpace.open(dir);
  ls.createSync('r');
  const held = ls.acquireSync('r', { owner: HOLDER });
  try {
    const own = options.ownSignalWaits.map((waits) => ({ waits, samples: [] as number[] }));
    const shared: number[] = [];
    let notAborted = 0;
    const start = nowNs();
    for (let round = 0; round < options.rounds && (round === 0 || elapsedNs(start) < options.budgetMs * 1e6); round++) {
      for (const level of own) level.samples.push(await ownSignals(lockspace, ls, level.waits));
      const s = await sharedSignal(lockspace, ls, options.sharedSignalWaits);
      shared.push(s.ms);
      notAborted += s.notAborted;
    }
    const [shortest, longest] = [own[0].samples, own[own.length - 1].samples];
    return {
      ownSignal: own.map(({ waits, samples }) => ({ waits, ms: median(samples) })),
      growth: median(longest.map((ms, i) => ms / shortest[i])),
      sharedSignal: { waits: options.sharedSignalWaits, ms: median(shared), notAborted },
    };
  } finally {
    held.releaseSync();
  }
}
