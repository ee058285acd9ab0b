/**
 * Child process of figure 4: holds growing numbers of resources and measures an acquire+release cycle on
 * one more resource at each level, the bulk acquire/release cost, and the memory per held lock.
 * Started with --expose-gc under a raised RLIMIT_NOFILE; prints one JSON line.
 */
import * as fs from 'fs';
import { childParams, NofileLimit, readNofile } from './child';
import { elapsedNs, nowNs, timeSync } from './clock';
import { requireLockspace, type Lease, type LockSpace, type NativeStats } from './lockspace';
import { runCases } from './measure';
import { Summary } from './stats';

export interface ScaleParams {
  dir: string;
  levels: number[];
  reps: number;
  sampleMs: number;
  fdReserve: number;
}

export interface ScaleLevel {
  held: number;
  /** ns per acquireSync+releaseSync of one extra resource while `held` are held. */
  cycleNs: Summary;
  /** ns per acquireSync of the resources added to reach this level. */
  bulkAcquireNs: number;
}

export interface MemoryPerLock {
  /**
   * heapBytes: lockspace's own counter, mallinfo2's bytes in use (every malloc'd block below the
   * mmap threshold). malloc heap growth, where the C library has no mallinfo2: growth of the resident
   * brk heap ([heap] in smaps), the main thread's small native allocations. Neither includes the V8 heap.
   */
  method: 'heapBytes' | 'malloc heap growth';
  bytes: number;
  /** Growth of the process's anonymous resident memory (RssAnon) per lock: native + JS + slack. */
  anonRssBytes: number;
  /** Growth of live V8 heap objects per lock (the JS side of a lease). */
  v8HeapBytes: number;
  locks: number;
}

export interface ScaleResult {
  nofile: NofileLimit;
  levels: ScaleLevel[];
  /** Requested levels that did not fit under RLIMIT_NOFILE. */
  skipped: number[];
  memory: MemoryPerLock | null;
  bulkReleaseNs: number;
}

const name = (i: number) => `r${i}`;

/** Requested levels that fit, plus the largest that fits when a requested one does not. */
function feasibleLevels(requested: number[], limit: number): { levels: number[]; skipped: number[] } {
  const levels = requested.filter((n) => n <= limit);
  const skipped = requested.filter((n) => n > limit);
  const largest = Math.floor(limit / 1000) * 1000;
  if (skipped.length > 0 && largest > Math.max(0, ...levels)) levels.push(largest);
  return { levels, skipped };
}

interface MemorySnapshot {
  mallocHeap: number;
  anonRss: number;
  v8Heap: number;
  stats: NativeStats;
}

function kilobytes(text: string, pattern: RegExp): number {
  const match = text.match(pattern);
  return match ? Number(match[1]) * 1024 : NaN;
}

function snapshot(stats: () => NativeStats): MemorySnapshot {
  (globalThis as { gc?: () => void }).gc?.();
  const smaps = fs.readFileSync('/proc/self/smaps', 'utf8');
  const heapAt = smaps.indexOf('[heap]');
  return {
    mallocHeap: heapAt < 0 ? NaN : kilobytes(smaps.slice(heapAt), /\nRss:\s+(\d+) kB/),
    anonRss: kilobytes(fs.readFileSync('/proc/self/status', 'utf8'), /^RssAnon:\s+(\d+) kB/m),
    v8Heap: process.memoryUsage().heapUsed,
    stats: stats(),
  };
}

function memoryPerLock(before: MemorySnapshot, after: MemorySnapshot, locks: number): MemoryPerLock {
  const per = (key: 'mallocHeap' | 'anonRss' | 'v8Heap') => (after[key] - before[key]) / locks;
  const common = { anonRssBytes: per('anonRss'), v8HeapBytes: per('v8Heap'), locks };
  const [b, a] = [before.stats.heapBytes, after.stats.heapBytes];
  if (typeof a === 'number' && typeof b === 'number') return { method: 'heapBytes', bytes: (a - b) / locks, ...common };
  return { method: 'malloc heap growth', bytes: per('mallocHeap'), ...common };
}

async function measureCycle(ls: LockSpace, params: ScaleParams, held: number): Promise<Summary> {
  const cycle = {
    id: `scale:${held}`,
    label: `cycle with ${held} held`,
    group: 'lockspace' as const,
    run: (n: number) => timeSync(n, () => ls.acquireSync('extra').releaseSync()),
  };
  const [result] = await runCases([cycle], params.reps, params.sampleMs, () => {});
  return result.nsPerOp;
}

function acquireUpTo(ls: LockSpace, leases: Lease[], count: number): number {
  const added = count - leases.length;
  const start = nowNs();
  while (leases.length < count) leases.push(ls.acquireSync(name(leases.length)));
  return elapsedNs(start) / Math.max(1, added);
}

function releaseAll(leases: Lease[]): number {
  const start = nowNs();
  for (const lease of leases) lease.releaseSync();
  return elapsedNs(start) / Math.max(1, leases.length);
}

async function main(): Promise<void> {
  const params = childParams<ScaleParams>();
  const { LockSpace: LS, _debug } = requireLockspace();
  const nofile = readNofile();
  const { levels, skipped } = feasibleLevels(params.levels, nofile.soft - params.fdReserve);
  const ls = LS.open(params.dir);
  const most = Math.max(...levels);
  for (let i = 0; i < most; i++) ls.createSync(name(i));
  ls.createSync('extra');

  const leases: Lease[] = [];
  const results: ScaleLevel[] = [];
  const before = snapshot(_debug.stats);
  for (const held of levels) {
    const bulkAcquireNs = acquireUpTo(ls, leases, held);
    results.push({ held, bulkAcquireNs, cycleNs: await measureCycle(ls, params, held) });
  }
  const after = snapshot(_debug.stats);
  const result: ScaleResult = {
    nofile,
    levels: results,
    skipped,
    memory: leases.length > 0 ? memoryPerLock(before, after, leases.length) : null,
    bulkReleaseNs: releaseAll(leases),
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main().catch((e) => {
  process.stderr.write(`scale child: ${(e as Error).stack}\n`);
  process.exit(1);
});
