// ls.inspect(): who holds a resource, from the kernel's view (/proc/locks on local file systems, a
// lock query to the server on network ones) and this process's table.
import type { LockType } from './options';
import type { InspectRecord } from './native';
import { locksOnFile, readProcLocks } from './proc-locks';
import { ownerFromKey, Owner } from './validate';

export interface LockHolder {
  /** null when unknown (OFD locks) or on another host. */
  pid: number | null;
  mode: 'shared' | 'exclusive';
  kind: LockType;
}

export interface InspectInfo {
  name: string;
  path: string;
  state: 'free' | 'shared' | 'exclusive';
  holders: LockHolder[];
  /** This process's owners of it. */
  owners: Owner[];
  /** How many requests of this process wait for it. */
  waiters: number;
}

export function inspectInfo(name: string, r: InspectRecord): InspectInfo {
  const holders: LockHolder[] = [];
  if (!r.remote) {
    const found = locksOnFile(readProcLocks() ?? [], { major: r.major, minor: r.minor }, BigInt(r.ino));
    for (const h of found.holders) holders.push({ pid: h.pid, mode: h.mode, kind: h.type === 'OFDLCK' ? 'ofd' : 'posix' });
  } else {
    // The server does not tell this process's own locks (they do not conflict with themselves).
    if (r.held) holders.push({ pid: process.pid, mode: r.heldShared ? 'shared' : 'exclusive', kind: r.heldOfd ? 'ofd' : 'posix' });
    if (r.otherHeld) holders.push({ pid: null, mode: r.otherShared ? 'shared' : 'exclusive', kind: r.otherOfd ? 'ofd' : 'posix' });
  }
  const state = holders.some((h) => h.mode === 'exclusive') ? 'exclusive' : holders.length > 0 ? 'shared' : 'free';
  return { name, path: r.path, state, holders, owners: r.owners.map(ownerFromKey), waiters: r.waiters };
}
