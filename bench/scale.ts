/**
 * Figure 4, scale: run in a child process whose RLIMIT_NOFILE is raised as far as allowed (Node cannot
 * call setrlimit). `prlimit` raises the hard limit too when the process has CAP_SYS_RESOURCE.
 */
import { spawnSync } from 'child_process';
import * as path from 'path';
import { readNofile, runJsonProcess } from './child';
import type { ScaleParams, ScaleResult } from './scale-child';

/** Descriptors beyond the held resources: Node's own, the extra resource, the idle cache. */
export const FD_RESERVE = 1024;

function prlimitWorks(limit: number): boolean {
  const probe = spawnSync('prlimit', [`--nofile=${limit}:${limit}`, 'true'], { stdio: 'ignore' });
  return probe.status === 0;
}

/** The command prefix that starts the child with the highest RLIMIT_NOFILE this machine grants. */
function limitPrefix(wanted: number): { prefix: string[]; how: string } {
  const { hard } = readNofile();
  for (const limit of [wanted, hard]) {
    if (limit <= hard || process.geteuid?.() === 0) {
      if (prlimitWorks(limit)) return { prefix: ['prlimit', `--nofile=${limit}:${limit}`], how: `prlimit --nofile=${limit}:${limit}` };
    }
  }
  return { prefix: [], how: `none (prlimit unavailable; inherited hard limit ${hard})` };
}

export async function runScale(params: Omit<ScaleParams, 'fdReserve'>): Promise<ScaleResult & { launcher: string }> {
  const wanted = Math.max(...params.levels) + FD_RESERVE;
  const { prefix, how } = limitPrefix(wanted);
  const script = path.join(__dirname, 'scale-child.js');
  const argv = [...prefix, process.execPath, '--expose-gc', script, JSON.stringify({ ...params, fdReserve: FD_RESERVE })];
  const result = await runJsonProcess<ScaleResult>(argv[0], argv.slice(1));
  return { ...result, launcher: how };
}
