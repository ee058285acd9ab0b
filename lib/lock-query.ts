/*
 * The kernel's answer to "who holds byte 0 of this file?", asked so that it can be believed: a lock
 * query (F_GETLK with a write lock: the first lock of any other owner) made from a native thread with a
 * descriptor table of its own, so that it sees this process's own locks too and closing its
 * descriptor drops none of them (native/core/lock_query.h). It is consistent at the moment it is asked,
 * unlike /proc/locks, which is read a page at a time while lines come and go and which leaves out
 * the locks of processes the reader's pid namespace cannot see.
 *
 * The query names one holder. /proc/locks adds the others (several shared holders) and the waiters:
 * its lines prove that a lock existed when they were read, their absence proves nothing.
 */
import { LockspaceError, systemError } from './errors';
import { binding, RecordsRecord } from './native';
import type { Holder } from './proc-locks';

export interface LockAnswer {
  state: 'free' | 'shared' | 'exclusive';
  /** The pid of the lock found; null when there is none, the holder is not visible in this pid
   *  namespace, the lock is an OFD lock, or the file is on a network file system (a pid there is
   *  the holder's on its own host). */
  pid: number | null;
  ofd: boolean;
  remote: boolean;
  /** The file the name reached when it was asked about. */
  major: number;
  minor: number;
  ino: bigint;
  /** Asked with records and held: the holder records read from the file (records.ts). */
  records?: RecordsRecord;
}

/** The kernel's answer for each path (a Buffer for bytes that are not UTF-8), or why it could not be
 *  asked. Only regular files are opened. One native thread for all of them. With `records`, the holder
 *  records of each file found held, read through the same descriptor. */
export function queryLocks(paths: (string | Uint8Array)[], records = false): (LockAnswer | LockspaceError)[] {
  return binding.queryLocks(paths, records).map(([errno, syscall, state, pid, major, minor, ino, remote, recs], i) => {
    if (errno === 0) {
      const a: LockAnswer = { ...answer(state, pid, remote), major, minor, ino: BigInt(ino) };
      if (recs !== undefined) a.records = recs;
      return a;
    }
    const path = paths[i];
    return systemError(errno, syscall, typeof path === 'string' ? path : Buffer.from(path).toString());
  });
}

/** What a query's raw state and pid say. */
export function answer(state: LockAnswer['state'], pid: number, remote: boolean): Pick<LockAnswer, 'state' | 'pid' | 'ofd' | 'remote'> {
  return { state, pid: state !== 'free' && pid > 0 && !remote ? pid : null, ofd: state !== 'free' && pid === -1, remote };
}

/**
 * The holders: the query's state decides; `lines` (the holders /proc/locks shows on the file, or null
 * when it was not read) give pids and further shared holders; a line that disagrees with the query's
 * state is from before it and is left out. Commands are not looked up (null).
 */
export function holdersOf(a: Pick<LockAnswer, 'state' | 'pid' | 'ofd' | 'remote'>, lines: Holder[] | null): Holder[] {
  if (a.state === 'free') return [];
  const asked: Holder = { pid: a.pid, command: null, type: a.ofd ? 'OFDLCK' : 'POSIX', mode: a.state };
  const fitting = (lines ?? []).filter((h) => h.mode === a.state);
  if (a.state === 'exclusive') {
    // One holder. Where the query gives no pid for it (an OFD lock, a network file system) a line of the
    // same kind may name it; a local POSIX one without a pid is in another pid namespace, which no line
    // shows (a line that names a process would be from before the query).
    const same = fitting.filter((h) => (h.type === 'OFDLCK') === a.ofd);
    return a.pid === null && (a.ofd || a.remote) && same.length === 1 ? same : [asked];
  }
  // Shared: the lines list the holders they saw; the one the query found is among them if a line has
  // its pid (OFD: its kind). A local one without a pid is in another pid namespace, which /proc/locks
  // never shows; on a network file system the pid was not the local one and cannot be matched.
  const among = a.ofd
    ? fitting.some((h) => h.type === 'OFDLCK')
    : a.pid !== null
      ? fitting.some((h) => h.pid === a.pid)
      : a.remote && fitting.length > 0;
  return among ? fitting : [...fitting, asked];
}
