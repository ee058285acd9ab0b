import * as fs from 'node:fs';

/** One fcntl lock (POSIX or OFD) on byte 0 of a file, from the kernel's list /proc/locks. */
export interface KernelLock {
  /** A request waiting for the lock ("->" lines), not a holder. */
  blocked: boolean;
  kind: 'posix' | 'ofd';
  mode: 'shared' | 'exclusive';
  /** null for OFD locks (the kernel shows -1: they belong to an open file, not a process). */
  pid: number | null;
}

const LOCK_LINE = /^\d+:\s+(->\s+)?(\S+)\s+\S+\s+(\S+)\s+(-?\d+)\s+([0-9a-f]+):([0-9a-f]+):(\d+)\s+(\d+)\s+(\d+|EOF)\s*$/;

/**
 * The fcntl locks on byte 0 of the file (major:minor:ino), or null when /proc/locks cannot be read.
 * Locks a FUSE or NFS client hands to its server are not in the list: ask the file system there.
 */
export function kernelLocksOn(major: number, minor: number, ino: string): KernelLock[] | null {
  let text: string;
  try {
    text = fs.readFileSync('/proc/locks', 'latin1');
  } catch {
    return null;
  }
  const out: KernelLock[] = [];
  const seen = new Set<string>();
  for (const line of text.split('\n')) {
    const m = LOCK_LINE.exec(line);
    if (!m) continue;
    const [, arrow, type, mode, pid, maj, min, inode, start] = m;
    if (type !== 'POSIX' && type !== 'OFDLCK') continue; // flock(2) locks and leases do not interact
    if (mode !== 'READ' && mode !== 'WRITE') continue;
    if (inode !== ino || parseInt(maj, 16) !== major || parseInt(min, 16) !== minor || start !== '0') continue;
    const lock: KernelLock = {
      blocked: arrow !== undefined,
      kind: type === 'POSIX' ? 'posix' : 'ofd',
      mode: mode === 'READ' ? 'shared' : 'exclusive',
      pid: Number(pid) > 0 ? Number(pid) : null,
    };
    // The file is read in chunks while locks come and go, so a line may be read twice: drop repeats
    // that cannot be real (one POSIX lock per process and byte; one held exclusive lock per byte).
    const key = `${lock.blocked}:${lock.kind}:${lock.mode}:${lock.pid}`;
    if ((lock.kind === 'posix' || (!lock.blocked && lock.mode === 'exclusive')) && seen.has(key)) continue;
    seen.add(key);
    out.push(lock);
  }
  return out;
}
