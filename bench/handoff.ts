/**
 * Figure 6, hand-off latency: from a holder's release to a waiter's acquisition (wait: true), between two
 * worker threads and between two processes, plus the CPU time a process burns while it waits.
 */
import { ChildProcess, fork } from 'child_process';
import { once } from 'events';
import * as path from 'path';
import { Worker } from 'worker_threads';
import { elapsedNs, nowNs, sleep } from './clock';
import type { ChildCommand, ChildParams, ChildReply, HandoffWorkerData } from './handoff-protocol';
import type { LockSpace, LockspaceModule } from './lockspace';
import { percentile } from './stats';

export interface Latency {
  rounds: number;
  p50Us: number;
  p99Us: number;
  maxUs: number;
}

export interface IdleWait {
  waits: number;
  wallMs: number;
  cpuMs: number;
  /** CPU time of the whole waiting process over the wait's wall time. */
  cpuShare: number;
}

export interface HandoffResult {
  threads: Latency;
  processes: Latency;
  idleWait: IdleWait;
}

export interface HandoffOptions {
  handoffRounds: number;
  crossProcessRounds: number;
  idleWaitMs: number;
  idleWaitRounds: number;
}

const KERNEL_WAIT_LIMIT_MS = 100;
/** Lets the waiting native thread enter F_SETLKW after it is counted. */
const SETTLE_MS = 1;

function latency(ns: ArrayLike<number>): Latency {
  const us = Array.from(ns, (v) => v / 1000);
  return { rounds: us.length, p50Us: percentile(us, 50), p99Us: percentile(us, 99), maxUs: percentile(us, 100) };
}

async function betweenThreads(dir: string, rounds: number): Promise<Latency> {
  const base = {
    dir,
    name: 'handoff-threads',
    rounds,
    control: new SharedArrayBuffer(4 * 3),
    releasedAt: new SharedArrayBuffer(8),
    latencies: new SharedArrayBuffer(8 * rounds),
  };
  const script = path.join(__dirname, 'handoff-worker.js');
  const workers = (['holder', 'waiter'] as const).map(
    (role) => new Worker(script, { workerData: { ...base, role } satisfies HandoffWorkerData }),
  );
  try {
    await Promise.all(workers.map((w) => once(w, 'message')));
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
  return latency(new Float64Array(base.latencies));
}

/** The other process, driven over IPC. */
class Holder {
  private constructor(private readonly child: ChildProcess) {}

  static async start(params: ChildParams): Promise<Holder> {
    const child = fork(path.join(__dirname, 'handoff-child.js'), [JSON.stringify(params)]);
    await once(child, 'message');
    return new Holder(child);
  }

  async request(command: ChildCommand): Promise<ChildReply> {
    const reply = once(this.child, 'message');
    this.child.send(command);
    return (await reply)[0] as ChildReply;
  }

  stop(): void {
    this.child.disconnect();
  }
}

async function untilKernelWait(lockspace: LockspaceModule): Promise<void> {
  const start = nowNs();
  while (lockspace._debug.stats().kernelWaits < 1 && elapsedNs(start) < KERNEL_WAIT_LIMIT_MS * 1e6) {
    await new Promise((resolve) => setImmediate(resolve));
  }
  await sleep(SETTLE_MS);
}

async function crossProcessRound(lockspace: LockspaceModule, ls: LockSpace, holder: Holder, name: string): Promise<number> {
  await holder.request({ cmd: 'hold' });
  const acquired = ls.acquire(name, { wait: true }).then((lease) => ({ lease, at: nowNs() }));
  await untilKernelWait(lockspace);
  const reply = holder.request({ cmd: 'release' });
  const { lease, at } = await acquired;
  const { releasedAt } = (await reply) as { releasedAt: string };
  lease.releaseSync();
  return Number(at - BigInt(releasedAt));
}

async function idleWaitRound(ls: LockSpace, holder: Holder, name: string, holdMs: number): Promise<[number, number]> {
  await holder.request({ cmd: 'hold' });
  const cpuBefore = process.cpuUsage();
  const start = nowNs();
  const reply = holder.request({ cmd: 'release', afterMs: holdMs });
  const lease = await ls.acquire(name, { wait: true });
  const cpu = process.cpuUsage(cpuBefore);
  const wallNs = elapsedNs(start);
  await reply;
  lease.releaseSync();
  return [wallNs / 1e6, (cpu.user + cpu.system) / 1000];
}

async function betweenProcesses(
  lockspace: LockspaceModule,
  dir: string,
  options: HandoffOptions,
): Promise<{ processes: Latency; idleWait: IdleWait }> {
  const name = 'handoff-processes';
  const ls = lockspace.LockSpace.open(dir);
  ls.createSync(name);
  const holder = await Holder.start({ dir, name });
  try {
    const latencies: number[] = [];
    for (let i = 0; i < options.crossProcessRounds; i++) latencies.push(await crossProcessRound(lockspace, ls, holder, name));
    let wallMs = 0;
    let cpuMs = 0;
    for (let i = 0; i < options.idleWaitRounds; i++) {
      const [wall, cpu] = await idleWaitRound(ls, holder, name, options.idleWaitMs);
      wallMs += wall;
      cpuMs += cpu;
    }
    const idleWait = { waits: options.idleWaitRounds, wallMs, cpuMs, cpuShare: cpuMs / wallMs };
    return { processes: latency(latencies), idleWait };
  } finally {
    holder.stop();
  }
}

export async function runHandoff(lockspace: LockspaceModule, dir: string, options: HandoffOptions): Promise<HandoffResult> {
  lockspace.LockSpace.open(dir).createSync('handoff-threads');
  const threads = await betweenThreads(dir, options.handoffRounds);
  return { threads, ...(await betweenProcesses(lockspace, dir, options)) };
}
