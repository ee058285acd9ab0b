/* /proc/PID/stat, read the one way: the command (field 2) may hold spaces and parentheses, so the
 * fields are counted from its closing one. */
import * as fs from 'node:fs';

export interface ProcStat {
  /** Field 3: R, S, D, Z, T, ... */
  state: string;
  /** Field 4. */
  ppid: number;
  /** Field 22, in clock ticks since boot: tells a process from a later one with its pid. */
  start: string;
}

/** The process's stat, or null when there is no such process (or /proc cannot be read). */
export function procStat(pid: number): ProcStat | null {
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch {
    return null;
  }
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  if (fields.length < 20) return null;
  return { state: fields[0], ppid: Number(fields[1]), start: fields[19] };
}
