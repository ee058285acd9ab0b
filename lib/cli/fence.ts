/* Fencing a command that runs without its lock: the command and every process it started (a
 * wrapper script's VM, `sh -c`'s children), found through /proc, stopped before they are signalled
 * so that none can start another process meanwhile. */
import * as fs from 'node:fs';

import { procStat } from '../proc-stat';

/** A process as /proc showed it: its start time tells it from a later process with its pid. */
interface Found {
  pid: number;
  start: string;
}

/** Every process now whose parent is in `parents`. */
function childrenOf(parents: Set<number>): number[] {
  const found: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    const ppid = procStat(pid)?.ppid;
    if (ppid !== undefined && parents.has(ppid) && !parents.has(pid)) found.push(pid);
  }
  return found;
}

function send(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // gone, or not ours to signal (it became another user): nothing more can be done for it
  }
}

/** Stops `root` and its descendants (SIGSTOP), looking again until no new one appears. */
export function stopTree(root: number): Found[] {
  const tree: Found[] = [];
  const pids = new Set<number>();
  let next = [root];
  while (next.length > 0) {
    for (const pid of next) {
      send(pid, 'SIGSTOP');
      const start = procStat(pid)?.start;
      if (start === undefined) continue;
      pids.add(pid);
      tree.push({ pid, start });
    }
    next = childrenOf(pids); // children started before their parent stopped, too
  }
  return tree;
}

/** Sends `signal` to each process of `tree` that is still the process found (not a reused pid). */
export function signalTree(tree: Found[], signal: NodeJS.Signals): void {
  for (const p of tree) if (procStat(p.pid)?.start === p.start) send(p.pid, signal);
}

/** Whether any process of `tree` still runs. */
export function treeAlive(tree: Found[]): boolean {
  return tree.some((p) => procStat(p.pid)?.start === p.start);
}
