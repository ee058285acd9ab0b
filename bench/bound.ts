/** Bound sets (holdFor): what a bound VM costs in memory, its holder and guardian resident. */
import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import type { LockspaceModule } from './lockspace';

export interface BoundResult {
  vms: number;
  /** Per bound VM, KiB: the holder's and its guardian's VmRSS, and of that the anonymous part. */
  holderRssKiB: number;
  guardianRssKiB: number;
  anonKiB: number;
}

function statusKiB(pid: number, field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

/** Binds `vms` stand-in VMs (sleep) to 4 names each, reads the holders' and guardians' resident sets. */
export async function runBound(lockspace: LockspaceModule, dir: string, vms = 20): Promise<BoundResult> {
  const ls = lockspace.LockSpace.open(dir);
  const started: ChildProcess[] = [];
  try {
    let holder = 0;
    let guardian = 0;
    let anon = 0;
    for (let i = 0; i < vms; i++) {
      const vm = spawn('sleep', ['600'], { stdio: 'ignore' });
      started.push(vm);
      const set = await ls.holdFor(vm.pid!, [0, 1, 2, 3].map((d) => `vm${i}-disk${d}`), { autoCreate: true });
      const [g] = fs.readFileSync(`/proc/${set.holderPid}/task/${set.holderPid}/children`, 'utf8').trim().split(/\s+/).map(Number);
      holder += statusKiB(set.holderPid, 'VmRSS');
      guardian += statusKiB(g, 'VmRSS');
      anon += statusKiB(set.holderPid, 'RssAnon') + statusKiB(g, 'RssAnon');
    }
    return { vms, holderRssKiB: holder / vms, guardianRssKiB: guardian / vms, anonKiB: anon / vms };
  } finally {
    for (const vm of started) vm.kill('SIGKILL');
    const sets = await ls.boundSets();
    await Promise.all(sets.map((s) => s.ended()));
  }
}
