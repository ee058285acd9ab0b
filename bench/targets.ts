/** The speed and memory targets, each checked against figures measured in this run. */
import type { CancelResult } from './cancel';
import type { ContentionResult } from './contention';
import type { HandoffResult } from './handoff';
import type { CaseResult } from './measure';
import type { ScaleLevel, ScaleResult } from './scale-child';
import type { WebLocksHandoffResult } from './web-locks';
import { median } from './stats';

export interface TargetCheck {
  figure: number;
  target: string;
  /** The measured figure the limit applies to (a ratio, µs, bytes...). */
  value: number;
  unit: string;
  limit: number;
  pass: boolean;
  note?: string;
}

export interface Measured {
  cases: CaseResult[];
  scale?: ScaleResult;
  contention?: ContentionResult;
  handoff?: HandoffResult;
  cancel?: CancelResult;
  webLocksHandoff?: WebLocksHandoffResult;
}

/** "Waiting burns no core": the waiter's CPU time stays under this share of the wait's wall time. */
export const MAX_IDLE_CPU_SHARE = 0.05;

function check(figure: number, target: string, value: number, unit: string, op: '<=' | '<' | '>=' | '==', limit: number, note?: string): TargetCheck {
  const pass = { '<=': value <= limit, '<': value < limit, '>=': value >= limit, '==': value === limit }[op];
  return { figure, target: `${target} ${op} ${limit}${unit === 'x' ? 'x' : ''}`, value, unit, limit, pass, note };
}

function medianOf(cases: CaseResult[], id: string): number | undefined {
  return cases.find((c) => c.id === id)?.nsPerOp.median;
}

/**
 * Ratio of two cases, when both ran: the median of the per-round ratios. Each round measures every
 * case once, the compared cases back to back (see perOpCases), so a burst of load from the machine's
 * other tenants hits both sides of a pair rather than one side of a ratio of medians.
 */
export function ratio(cases: CaseResult[], numerator: string, denominator: string): number | undefined {
  const a = cases.find((c) => c.id === numerator)?.nsPerOp.samples;
  const b = cases.find((c) => c.id === denominator)?.nsPerOp.samples;
  if (!a || !b) return undefined;
  if (a.length !== b.length || a.length === 0) return medianOf(cases, numerator)! / medianOf(cases, denominator)!;
  return median(a.map((x, i) => x / b[i]));
}

function perOpChecks(cases: CaseResult[]): TargetCheck[] {
  const specs: [number, string, string, string, '<=' | '>=', number][] = [
    [1, 'acquireSync+releaseSync / C floor cycle', 'lockspace:sync', 'floor:open-lock-close', '<=', 1.1],
    // The hot-path targets: nearer the limit, the floor's 'reacquire' syscalls (about 0.75-0.85x).
    [1, 'acquireSync+releaseSync / C floor cycle', 'lockspace:sync', 'floor:open-lock-close', '<=', 0.9],
    [1, "acquireSync+releaseSync / libvirt's virLockSpace cycle", 'lockspace:sync', 'peer:libvirt', '<=', 1],
    [2, 'await acquire+release / C floor cycle', 'lockspace:async', 'floor:open-lock-close', '<=', 1.5],
    [2, 'await acquire+release / C floor cycle', 'lockspace:async', 'floor:open-lock-close', '<=', 1.1],
    [2, 'await acquire+release / fs.promises open+close', 'lockspace:async', 'node:promises', '<=', 1],
    [3, 'autoCreate cycle / same syscalls in C', 'lockspace:autocreate', 'floor:autocreate', '<=', 1.5],
    [7, 'proper-lockfile / await acquire+release', 'peer:proper-lockfile', 'lockspace:async', '>=', 20],
    [7, 'os-lock / await acquire+release', 'peer:os-lock', 'lockspace:async', '>=', 3],
    [9, 'ls.locks.request cycle / navigator.locks.request cycle', 'lockspace:web-locks', 'node:navigator-locks', '<=', 1],
  ];
  return specs.flatMap(([figure, target, a, b, op, limit]) => {
    const r = ratio(cases, a, b);
    return r === undefined ? [] : [check(figure, target, r, 'x', op, limit)];
  });
}

function scaleChecks(scale: ScaleResult): TargetCheck[] {
  const base = scale.levels.find((l) => l.held === 10);
  const top: ScaleLevel | undefined = scale.levels[scale.levels.length - 1];
  const checks: TargetCheck[] = [];
  if (base && top && top !== base) {
    const note = scale.skipped.length > 0 ? `${scale.skipped.join(', ')} held not reachable (RLIMIT_NOFILE ${scale.nofile.soft}); measured at ${top.held}` : undefined;
    checks.push(check(4, `cycle at ${top.held} held / cycle at 10 held`, top.cycleNs.median / base.cycleNs.median, 'x', '<=', 1.5, note));
  }
  if (scale.memory) {
    checks.push(check(4, `native bytes per held lock (${scale.memory.method})`, scale.memory.bytes, 'B', '<', 256));
  }
  return checks;
}

function contentionChecks(c: ContentionResult): TargetCheck[] {
  return [
    check(5, `${c.threads} threads / 1 thread throughput`, c.ratio, 'x', '>=', 1),
    check(5, `${c.threads} threads / 1 thread throughput`, c.ratio, 'x', '>=', 1.5),
    check(5, 'exclusivity violations', c.violations, '', '==', 0),
    check(5, 'acquire/release errors', c.errors, '', '==', 0, c.firstError?.slice(0, 90)),
  ];
}

function handoffChecks(h: HandoffResult): TargetCheck[] {
  return [
    check(6, 'thread hand-off p50 (µs)', h.threads.p50Us, 'µs', '<', 100),
    check(6, 'process hand-off p50 (µs)', h.processes.p50Us, 'µs', '<', 2000),
    check(6, 'waiter CPU / wall while waiting', h.idleWait.cpuShare, '', '<', MAX_IDLE_CPU_SHARE),
  ];
}

/** The whole of a cancel should grow linearly with the queue: 4x the waits within 6x the time. */
function cancelChecks(c: CancelResult): TargetCheck[] {
  const [shortest, longest] = [c.ownSignal[0], c.ownSignal[c.ownSignal.length - 1]];
  const s = c.sharedSignal;
  return [
    check(8, `abort ${longest.waits} queued waits / abort ${shortest.waits} (own AbortControllers)`, c.growth, 'x', '<=', 6),
    check(8, `one AbortSignal aborting ${s.waits} queued waits (ms)`, s.ms, 'ms', '<=', 100),
    check(8, 'waits the shared signal did not reject with AbortError', s.notAborted, '', '==', 0),
  ];
}

/** Web Locks between two worker threads: lockspace's ls.locks against Node's navigator.locks. */
function webLocksChecks(w: WebLocksHandoffResult): TargetCheck[] {
  return [check(9, 'ls.locks / navigator.locks, two worker threads handing off', w.ratio, 'x', '<=', 1)];
}

export function checkTargets(m: Measured): TargetCheck[] {
  return [
    ...perOpChecks(m.cases),
    ...(m.scale ? scaleChecks(m.scale) : []),
    ...(m.contention ? contentionChecks(m.contention) : []),
    ...(m.handoff ? handoffChecks(m.handoff) : []),
    ...(m.cancel ? cancelChecks(m.cancel) : []),
    ...(m.webLocksHandoff ? webLocksChecks(m.webLocksHandoff) : []),
  ].sort((a, b) => a.figure - b.figure);
}
