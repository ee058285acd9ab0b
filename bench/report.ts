/** The human-readable report: aligned text tables. */
import type { BenchResults } from './results';
import type { CaseResult } from './measure';
import { ratio, type TargetCheck } from './targets';

const FLOOR_ID = 'floor:open-lock-close';
const PROMISES_ID = 'node:promises';

function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) =>
    cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]) : cell.padStart(widths[i]))).join('  ').trimEnd();
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

export function fmt(value: number, digits = 0): string {
  return Number.isFinite(value)
    ? value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
    : 'n/a';
}

function caseTable(cases: CaseResult[]): string {
  const baseline = (id: string) => cases.find((c) => c.id === id)?.nsPerOp.median ?? NaN;
  const floor = baseline(FLOOR_ID);
  const promises = baseline(PROMISES_ID);
  const rows = cases.map((c) => [
    c.label,
    fmt(c.nsPerOp.median),
    fmt(c.nsPerOp.min),
    fmt(1e9 / c.nsPerOp.median),
    `${fmt(c.nsPerOp.median / floor, 2)}x`,
    `${fmt(c.nsPerOp.median / promises, 2)}x`,
  ]);
  return table(['case', 'median ns/op', 'min ns/op', 'ops/s', 'x C floor', 'x fs.promises'], rows);
}

function scaleSection(r: BenchResults): string[] {
  const s = r.scale;
  if (!s) return [];
  const rows = s.levels.map((l) => [fmt(l.held), fmt(l.cycleNs.median), fmt(l.cycleNs.min), fmt(l.bulkAcquireNs)]);
  const mem = s.memory;
  return [
    `Scale (RLIMIT_NOFILE soft ${fmt(s.nofile.soft)} / hard ${fmt(s.nofile.hard)}, via ${s.launcher})` +
      (s.skipped.length ? `; not reachable: ${s.skipped.map((n) => fmt(n)).join(', ')} held` : ''),
    table(['held', 'cycle median ns', 'cycle min ns', 'bulk acquire ns/op'], rows),
    `bulk release: ${fmt(s.bulkReleaseNs)} ns/op`,
    mem
      ? `memory per held lock over ${fmt(mem.locks)} locks: ${fmt(mem.bytes)} B (${mem.method}; for context, anon RSS ${fmt(mem.anonRssBytes)} B and live V8 heap ${fmt(mem.v8HeapBytes)} B per lock)`
      : 'memory per held lock: n/a',
  ];
}

function contentionSection(r: BenchResults): string[] {
  const c = r.contention;
  if (!c) return [];
  return [
    `Contention: ${c.threads} threads on ${c.resources} resources, ${fmt(c.exclusiveShare * 100)}% exclusive, await acquire(wait: true)`,
    `  ${c.threads} threads: ${fmt(c.manyThreads.median)} ops/s (min ${fmt(c.manyThreads.min)}); ` +
      `1 thread: ${fmt(c.oneThread.median)} ops/s (min ${fmt(c.oneThread.min)}); ratio ${fmt(c.ratio, 2)}x`,
    `  exclusivity violations ${c.violations}; errors ${c.errors}${c.firstError ? ` (first: ${c.firstError})` : ''}`,
  ];
}

function handoffSection(r: BenchResults): string[] {
  const h = r.handoff;
  if (!h) return [];
  const row = (label: string, l: typeof h.threads) => [label, fmt(l.rounds), fmt(l.p50Us, 1), fmt(l.p99Us, 1), fmt(l.maxUs, 1)];
  return [
    'Hand-off latency, release -> acquisition by a waiter (wait: true)',
    table(['between', 'rounds', 'p50 µs', 'p99 µs', 'max µs'], [row('worker threads', h.threads), row('processes', h.processes)]),
    `waiting process CPU: ${fmt(h.idleWait.cpuMs, 2)} ms over ${fmt(h.idleWait.wallMs)} ms of waiting ` +
      `(${fmt(h.idleWait.cpuShare * 100, 2)}%, ${h.idleWait.waits} waits)`,
  ];
}

function cancelSection(r: BenchResults): string[] {
  const c = r.cancel;
  if (!c) return [];
  const own = c.ownSignal.map((t) => `${fmt(t.waits)} in ${fmt(t.ms, 1)} ms`).join(', ');
  return [
    'Cancelling queued waits (wait: true behind a lease this process holds), wall time of all the aborts',
    `  each with its own AbortController: ${own} (growth ${fmt(c.growth, 2)}x)`,
    `  one AbortSignal shared by ${fmt(c.sharedSignal.waits)}: ${fmt(c.sharedSignal.ms, 1)} ms` +
      `, ${c.sharedSignal.notAborted} not rejected with AbortError`,
  ];
}

/** A lock set of 4 names against 4 single acquires of them, as the median of per-round ratios. */
function setSection(r: BenchResults): string[] {
  const sync = ratio(r.cases, 'lockspace:set-sync', 'lockspace:four-sync');
  const async = ratio(r.cases, 'lockspace:set-async', 'lockspace:four-async');
  if (sync === undefined || async === undefined) return [];
  return [`Lock sets: acquireAll of 4 names / 4 acquires of them: sync ${fmt(sync, 2)}x, async ${fmt(async, 2)}x (median of per-round ratios)`];
}

/** A bind (holdFor of 4 names + release) against acquireAll of the same 4, and a bound VM's memory. */
function boundSection(r: BenchResults): string[] {
  const lines: string[] = [];
  const bind = r.cases.find((c) => c.id === 'lockspace:bind');
  const set = ratio(r.cases, 'lockspace:bind', 'lockspace:set-async');
  if (bind && set !== undefined) {
    lines.push(`Bound sets: holdFor of 4 names + release: ${fmt(bind.nsPerOp.median / 1000)} µs (${fmt(set)}x await acquireAll of 4 + release)`);
  }
  const b = r.bound;
  if (b) {
    lines.push(
      `  resident per bound VM (${b.vms} VMs): holder ${fmt(b.holderRssKiB)} KiB + guardian ${fmt(b.guardianRssKiB)} KiB, ` +
        `of which anonymous ${fmt(b.anonKiB)} KiB (the rest is the program's own pages, shared between holders)`,
    );
  }
  return lines;
}

/** Holder records on the sync cycle: with records / without, as the median of per-round ratios. */
function recordsSection(r: BenchResults): string[] {
  const rec = r.cases.find((c) => c.id === 'lockspace:sync-records');
  const plain = r.cases.find((c) => c.id === 'lockspace:sync');
  const x = ratio(r.cases, 'lockspace:sync-records', 'lockspace:sync');
  if (!rec || !plain || x === undefined) return [];
  const extra = rec.nsPerOp.median - plain.nsPerOp.median;
  return [
    `Holder records: acquireSync+releaseSync with records / without: ${fmt(x, 2)}x (median of per-round ratios), ` +
      `about ${fmt(extra)} ns more per cycle; without records nothing is read or written`,
  ];
}

function webLocksSection(r: BenchResults): string[] {
  const w = r.webLocksHandoff;
  if (!w) return [];
  const us = (ns: number) => fmt(ns / 1000, 2);
  return [
    `Web Locks hand-off: two worker threads, each awaiting ${fmt(w.rounds)} requests of one name one after another`,
    `  ls.locks ${us(w.lockspace.median)} µs per request (min ${us(w.lockspace.min)}); navigator.locks ${us(w.navigator.median)} µs ` +
      `(min ${us(w.navigator.min)}); ratio ${fmt(w.ratio, 2)}x (median of per-repetition ratios)`,
  ];
}

function targetValue(t: TargetCheck): string {
  if (t.unit === 'x') return `${fmt(t.value, 2)}x`;
  if (t.unit === 'µs') return `${fmt(t.value, 1)} µs`;
  if (t.unit === 'ms') return `${fmt(t.value, 1)} ms`;
  if (t.unit === 'B') return `${fmt(t.value)} B`;
  return Number.isInteger(t.value) ? String(t.value) : fmt(t.value, 4);
}

function targetTable(targets: TargetCheck[]): string {
  const rows = targets.map((t) => [String(t.figure), t.target, targetValue(t), t.pass ? 'PASS' : 'MISS', t.note ?? '']);
  return table(['#', 'target', 'measured', 'result', 'note'], rows);
}

export function renderReport(r: BenchResults): string {
  const m = r.machine;
  const sections = [
    [
      `lockspace bench${r.options.quick ? ' (--quick)' : ''}: ${r.options.reps} repetitions, median reported`,
      `machine: ${m.cpus} x ${m.cpuModel}, ${m.memoryGiB} GiB, Linux ${m.kernel}, Node ${m.node}, temp dir on ${m.fsType}`,
    ],
    r.cases.length ? [caseTable(r.cases)] : [],
    setSection(r),
    boundSection(r),
    recordsSection(r),
    scaleSection(r),
    contentionSection(r),
    handoffSection(r),
    cancelSection(r),
    webLocksSection(r),
    r.targets.length ? ['Targets', targetTable(r.targets)] : [],
    r.notes.length ? ['Notes', ...r.notes.map((n) => `- ${n}`)] : [],
  ];
  return sections.filter((s) => s.length > 0).map((s) => s.join('\n')).join('\n\n') + '\n';
}
