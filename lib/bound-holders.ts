/*
 * Finding the holders of bound sets (bound.ts) on this host, without the native addon (the CLI's
 * status uses it too). A holder is a process named `lockspace-hold` (`lockspace-lost` once a lock of
 * it is lost) whose environment carries LOCKSPACE_BOUND, a JSON BoundRecord. /proc/PID/environ is
 * readable by the holder's user and root only, so another user can neither list a set nor learn its
 * names. Which files a holder holds is read from its descriptors (/proc/PID/fd, same rule): it keeps
 * open only the files it locked, so that list is the kernel's, not a record that can go stale.
 */
import * as fs from 'node:fs';

import type { LockType } from './options';
import { devParts } from './proc-locks';
import { procStat } from './proc-stat';

/** What a holder does to the bound process when a lock of its set is lost (or the holder dies):
 *  `'kill'` SIGKILL at once (default); `'term'` SIGTERM, then SIGKILL after `graceMs`; `'none'`
 *  only reports it. */
export type LostAction = 'kill' | 'term' | 'none';

const HOLDER_NAMES = new Set(['lockspace-hold', 'lockspace-lost']);
const ENV_KEY = 'LOCKSPACE_BOUND=';

/** LOCKSPACE_BOUND: what a holder's environment says of its set. */
export interface BoundRecord {
  v: 1;
  /** The lockspace directory (null: path mode). */
  directory: string | null;
  names: string[];
  paths: string[];
  shared: boolean[];
  pid: number;
  /** The bound process's start time (clock ticks after boot, /proc/PID/stat field 22). */
  start: string;
  lockType: LockType;
  onLost: LostAction;
  /** When it was bound (ISO 8601). */
  since: string;
  /** What makes the holder release on purpose; absent: SIGTERM (holders of earlier versions). */
  releaseSignal?: 'SIGUSR1';
}

/** Field 22 of /proc/PID/stat (start time in clock ticks), or null when there is no such process. */
export function startTime(pid: number): string | null {
  return procStat(pid)?.start ?? null;
}

function commandOf(pid: number): string | null {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'latin1').split('\0').filter(Boolean).join(' ') || null;
  } catch {
    return null;
  }
}

export function isLive(pid: number, start: string): boolean {
  return startTime(pid) === start;
}


/** A holder process of this host that this user may see, with the files it holds open. */
export interface FoundHolder {
  holderPid: number;
  holderStart: string;
  record: BoundRecord;
  lost: boolean;
  /** `${major}:${minor}:${ino}` of each file it holds. */
  files: Set<string>;
}

function readRecord(pid: number): BoundRecord | null {
  let env: string;
  try {
    env = fs.readFileSync(`/proc/${pid}/environ`, 'latin1');
  } catch {
    return null; // another user's (EACCES), or gone
  }
  const entry = env.split('\0').find((e) => e.startsWith(ENV_KEY));
  if (entry === undefined) return null;
  try {
    const r = JSON.parse(Buffer.from(entry.slice(ENV_KEY.length), 'latin1').toString('utf8')) as BoundRecord;
    return r && r.v === 1 && Array.isArray(r.names) && Number.isInteger(r.pid) ? r : null;
  } catch {
    return null;
  }
}

export function fileKey(major: number, minor: number, ino: bigint | string): string {
  return `${major}:${minor}:${ino}`;
}

/** Every holder of this host this user may see (root: all). One pass over /proc. */
export function findHolders(): FoundHolder[] {
  let pids: string[];
  try {
    pids = fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p));
  } catch {
    return [];
  }
  const found: FoundHolder[] = [];
  for (const p of pids) {
    let comm: string;
    try {
      comm = fs.readFileSync(`/proc/${p}/comm`, 'latin1').trim();
    } catch {
      continue;
    }
    if (!HOLDER_NAMES.has(comm)) continue;
    const pid = Number(p);
    const record = readRecord(pid);
    const holderStart = startTime(pid);
    if (record === null || holderStart === null) continue;
    const files = new Set<string>();
    let fds: string[] = [];
    try {
      fds = fs.readdirSync(`/proc/${p}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        const st = fs.statSync(`/proc/${p}/fd/${fd}`, { bigint: true });
        if (!st.isFile()) continue;
        const { major, minor } = devParts(st.dev);
        files.add(fileKey(major, minor, st.ino));
      } catch {
        // closed meanwhile
      }
    }
    found.push({ holderPid: pid, holderStart, record, lost: comm === 'lockspace-lost', files });
  }
  return found;
}


/** Who a bound holder holds for: the bound process and its command line. */
export interface BoundTo {
  pid: number;
  command: string | null;
  holderPid: number;
  state: 'held' | 'lost';
}

export function boundTo(h: FoundHolder): BoundTo {
  return { pid: h.record.pid, command: commandOf(h.record.pid), holderPid: h.holderPid, state: h.lost ? 'lost' : 'held' };
}
