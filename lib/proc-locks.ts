/*
 * The kernel's list of file locks (/proc/locks), read without locking or opening anything, and the
 * locks on one file found in it the way the kernel names files there.
 *
 * The kernel prints a lock's file as `major:minor:inode` with the device of the file's *superblock*
 * (`i_sb->s_dev`). stat(2) gives the same device on most file systems, but btrfs gives each
 * subvolume its own (anonymous) st_dev while /proc/locks prints the superblock's, and inode numbers
 * repeat between subvolumes. So a file is matched under both devices, and a match under the
 * superblock's device alone is flagged `ambiguous` (it may be another subvolume's file with the same
 * inode number): callers confirm those by probing the lock.
 */
import * as fs from 'node:fs';

export interface Holder {
  /** null when the kernel does not tell (OFD locks show pid -1). */
  pid: number | null;
  command: string | null;
  /** 'POSIX' or 'OFDLCK' (from /proc/locks); null when probing. */
  type: string | null;
  mode: 'shared' | 'exclusive';
}

export interface ProcLock {
  blocked: boolean;
  type: 'POSIX' | 'OFDLCK';
  mode: 'shared' | 'exclusive';
  pid: number | null;
  major: number;
  minor: number;
  ino: bigint;
  start: bigint;
}

export const PROC_LOCKS = '/proc/locks';
const LOCK_LINE = /^\s+(->\s+)?(\S+)\s+\S+\s+(\S+)\s+(-?\d+)\s+([0-9a-f]+):([0-9a-f]+):(\d+)\s+(\d+)\s+(\d+|EOF)\s*$/;

/**
 * One read(2) of /proc/locks returns about a page of lines at most, and the kernel lets go of its list
 * of locks between two reads: a lock released meanwhile before the read position shifts the rest
 * back, and the next read skips a line (one taken meanwhile repeats a line). So a list that takes more
 * than one read is read again, until QUIET_PASSES passes in a row add no line, and each line counts
 * as often as the pass that had it most often. A lock held throughout is missed only if every pass
 * skipped it (with a process churning 300 locks, one pass in 27 missed one of two shared holders; two
 * passes that read the same lines can both have missed it, so that is no reason to stop).
 */
const QUIET_PASSES = 3;
const MAX_PASSES = 12;

/** A first read shorter than this was all of it: the kernel fills about a page (4 KiB) per read, and
 *  stops short of that only before a record longer than the rest (a lock with dozens of waiters). A
 *  longer first read may have been followed by an empty one only because locks went meanwhile. */
const WHOLE_IN_ONE_READ = 2048;

/** One pass: the lines of /proc/locks with the kernel's ordinal cut off, and whether its first read
 *  held all of it (then nothing can have been skipped). */
function readProcLocksOnce(): { lines: string[]; whole: boolean } {
  const fd = fs.openSync(PROC_LOCKS, 'r');
  try {
    const chunk = Buffer.allocUnsafe(65536);
    const parts: string[] = [];
    for (let n; (n = fs.readSync(fd, chunk, 0, chunk.length, null)) > 0; ) parts.push(chunk.toString('latin1', 0, n));
    const whole = parts.length === 0 || (parts.length === 1 && parts[0].length < WHOLE_IN_ONE_READ);
    return { lines: parts.join('').split('\n').map((line) => line.slice(line.indexOf(':') + 1)), whole };
  } finally {
    fs.closeSync(fd);
  }
}

function countLines(lines: string[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const line of lines) if (line) counts.set(line, (counts.get(line) ?? 0) + 1);
  return counts;
}

/**
 * The POSIX lock lines (without ordinals) of the files with these inode numbers, as each process's
 * /proc/PID/fdinfo lists them under the descriptor they were taken through. The kernel prints those
 * under the file's own lock, so none is skipped; but only for the processes this one may look into,
 * at the cost of a read per descriptor. (OFD locks are left to /proc/locks: one open file description
 * shows in every process that shares it.)
 */
function fdinfoLockLines(inodes: ReadonlySet<bigint>): string[] {
  const lines: string[] = [];
  let pids: string[];
  try {
    pids = fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p));
  } catch {
    return lines;
  }
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = fs.readdirSync(`/proc/${pid}/fdinfo`);
    } catch {
      continue; // gone, or not ours to look into
    }
    for (const fd of fds) {
      let text: string;
      try {
        text = fs.readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'latin1');
      } catch {
        continue;
      }
      for (const line of text.split('\n')) {
        // "lock:\t1: POSIX  ADVISORY  READ 4242 fe:00:1234 0 EOF"
        if (!line.startsWith('lock:')) continue;
        const rest = line.slice(line.indexOf(':', 5) + 1);
        const m = LOCK_LINE.exec(rest);
        if (m && m[2] === 'POSIX' && inodes.has(BigInt(m[7]))) lines.push(rest);
      }
    }
  }
  return lines;
}

/**
 * The lines of /proc/locks (without ordinals), each as often as any pass saw it; null if unreadable.
 * When it took more than one read (or may have) and `inodes` are given, the POSIX locks of those files are also
 * looked up in /proc/PID/fdinfo (a pass can miss one however often it is read again: the passes that
 * follow one another quickly can skip alike).
 */
function readProcLockLines(inodes?: ReadonlySet<bigint>): string[] | null {
  try {
    const first = readProcLocksOnce();
    if (first.whole) return first.lines;
    const most = countLines(first.lines);
    for (let passes = 1, quiet = 0; quiet < QUIET_PASSES && passes < MAX_PASSES; passes++) {
      const counts = countLines(readProcLocksOnce().lines);
      let added = false;
      for (const [line, count] of counts) {
        if (count > (most.get(line) ?? 0)) {
          most.set(line, count);
          added = true;
        }
      }
      quiet = added ? 0 : quiet + 1;
    }
    if (inodes !== undefined && inodes.size > 0) for (const line of fdinfoLockLines(inodes)) if (!most.has(line)) most.set(line, 1);
    return [...most].flatMap(([line, count]) => Array<string>(count).fill(line));
  } catch {
    return null;
  }
}

/** fcntl locks (POSIX and OFD) from /proc/locks, or null if it cannot be read; complete for the POSIX
 *  locks of the files with the inode numbers `inodes` held by processes this one may look into. */
export function readProcLocks(inodes?: ReadonlySet<bigint>): ProcLock[] | null {
  const lines = readProcLockLines(inodes);
  if (lines === null) return null;
  const locks: ProcLock[] = [];
  for (const line of lines) {
    const m = LOCK_LINE.exec(line);
    if (!m) continue;
    const [, arrow, type, mode, pid, major, minor, ino, start] = m;
    if (type !== 'POSIX' && type !== 'OFDLCK') continue; // flock(2) locks and leases do not interact
    if (mode !== 'READ' && mode !== 'WRITE') continue;
    const n = Number(pid);
    locks.push({
      blocked: arrow !== undefined,
      type,
      mode: mode === 'READ' ? 'shared' : 'exclusive',
      pid: n > 0 ? n : null,
      major: parseInt(major, 16),
      minor: parseInt(minor, 16),
      ino: BigInt(ino),
      start: BigInt(start),
    });
  }
  return locks;
}

/** glibc's gnu_dev_major/gnu_dev_minor. */
export function devParts(dev: bigint): { major: number; minor: number } {
  const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn);
  const minor = (dev & 0xffn) | ((dev >> 12n) & ~0xffn);
  return { major: Number(major), minor: Number(minor) };
}

export function commandName(pid: number): string | null {
  try {
    return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim() || null;
  } catch {
    return null;
  }
}

interface Mount {
  major: number;
  minor: number;
  point: string;
}

/** Octal escapes of /proc/self/mountinfo (`\040` for a space). */
function unescapeMountPath(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

function readMounts(): Mount[] {
  try {
    return fs
      .readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .flatMap((line) => {
        const f = line.split(' ');
        const dev = /^(\d+):(\d+)$/.exec(f[2] ?? '');
        return dev && f[4] ? [{ major: Number(dev[1]), minor: Number(dev[2]), point: unescapeMountPath(f[4]) }] : [];
      });
  } catch {
    return [];
  }
}

/**
 * The superblock device of the file system mounted at the deepest mount point above `path` (a
 * canonical path), as /proc/self/mountinfo gives it; undefined if unknown. Of mounts stacked on one
 * point, the last one listed is the one seen.
 */
export function superblockDevice(path: string): { major: number; minor: number } | undefined {
  let best: Mount | undefined;
  for (const m of readMounts()) {
    const under = m.point === '/' || path === m.point || path.startsWith(m.point.endsWith('/') ? m.point : `${m.point}/`);
    if (under && (best === undefined || m.point.length >= best.point.length)) best = m;
  }
  return best && { major: best.major, minor: best.minor };
}

export interface FileLocks {
  holders: Holder[];
  waiters: Holder[];
  /** Matched only under the superblock's device: may be another subvolume's file (confirm by probing). */
  ambiguous: boolean;
}

/** The locks on byte 0 of the file with stat `st`, whose file system's superblock device is `sb`. */
export function locksOn(all: ProcLock[], st: fs.BigIntStats, sb?: { major: number; minor: number }): FileLocks {
  return locksOnFile(all, devParts(st.dev), st.ino, sb);
}

/** The locks by inode number, for looking up many files in one read. */
export function byInode(all: ProcLock[]): Map<bigint, ProcLock[]> {
  const index = new Map<bigint, ProcLock[]>();
  for (const l of all) {
    const list = index.get(l.ino);
    if (list) list.push(l);
    else index.set(l.ino, [l]);
  }
  return index;
}

/**
 * The same for a file named by its device numbers and inode number. `all` may be only the locks with
 * that inode number (byInode). `command` names a pid (commandName; inspect needs no names).
 */
export function locksOnFile(
  all: ProcLock[],
  own: { major: number; minor: number },
  ino: bigint,
  sb?: { major: number; minor: number },
  command: (pid: number) => string | null = commandName,
): FileLocks {
  const sbDiffers = sb !== undefined && (sb.major !== own.major || sb.minor !== own.minor);
  const holders: Holder[] = [];
  const waiters: Holder[] = [];
  const seen = new Set<string>();
  let ambiguous = false;
  for (const l of all) {
    if (l.ino !== ino || l.start !== 0n) continue;
    const ownDevice = l.major === own.major && l.minor === own.minor;
    const sbDevice = sbDiffers && l.major === sb.major && l.minor === sb.minor;
    if (!ownDevice && !sbDevice) continue;
    if (!ownDevice) ambiguous = true;
    const h: Holder = { pid: l.pid, command: l.pid === null ? null : command(l.pid), type: l.type, mode: l.mode };
    // /proc/locks is read a page at a time while locks come and go, so a line may be read twice. Repeats that
    // cannot be real are dropped: one POSIX lock per process and byte (the kernel merges them), and
    // one held exclusive lock per byte. Identical shared OFD lines can be two open file descriptions.
    const key = `${l.blocked}:${l.type}:${l.mode}:${l.pid}`;
    const impossibleRepeat = l.type === 'POSIX' || (!l.blocked && l.mode === 'exclusive');
    if (impossibleRepeat && seen.has(key)) continue;
    seen.add(key);
    (l.blocked ? waiters : holders).push(h);
  }
  return { holders, waiters, ambiguous };
}
