// ls.inspect(): who holds a resource, from the kernel's view (a lock query that sees every owner on
// local file systems, with /proc/locks for the other shared holders' pids; a lock query to the server
// on network ones) and this process's table; with the holder records of the live holders (records.ts)
// and, for a bound set's holder, the process it holds for (bound-holders.ts).
import { BoundTo, boundTo, fileKey, findHolders } from './bound-holders';
import { LockspaceError, systemError } from './errors';
import { answer, holdersOf } from './lock-query';
import type { LockType } from './options';
import type { InspectRecord } from './native';
import { Holder, locksOnFile, readProcLocks } from './proc-locks';
import { HolderRecord, lastGeneration, liveRecords } from './records';
import { ownerFromKey, Owner } from './validate';

export interface LockHolder {
  /** null when unknown (OFD locks, a process this pid namespace cannot see) or on another host. */
  pid: number | null;
  mode: 'shared' | 'exclusive';
  kind: LockType;
  /** When the holder is a bound set's holder on this host (`holdFor`): the process it holds for. */
  boundTo?: BoundTo;
}

export interface InspectInfo {
  name: string;
  path: string;
  /** 'unknown' when the kernel could not be asked (see `error`) and /proc/locks shows no lock on it. */
  state: 'free' | 'shared' | 'exclusive' | 'unknown';
  holders: LockHolder[];
  /** This process's owners of it. */
  owners: Owner[];
  /** How many requests of this process wait for it. */
  waiters: number;
  /** Only with state 'unknown': why the kernel could not be asked. */
  error?: LockspaceError;
  /** The holder records of the holders that hold it now (records: true), on any host; newest first. */
  records: HolderRecord[];
  /** The last exclusive generation counted in the file (records), or null. */
  generation: bigint | null;
}

const lockHolder = (h: Holder): LockHolder => ({ pid: h.pid, mode: h.mode, kind: h.type === 'OFDLCK' ? 'ofd' : 'posix' });

function stateOf(holders: LockHolder[]): 'free' | 'shared' | 'exclusive' {
  return holders.some((h) => h.mode === 'exclusive') ? 'exclusive' : holders.length > 0 ? 'shared' : 'free';
}

/** Names the bound process of each holder that holds the file for a bound set (on this host, as far
 *  as this user may see): an OFD lock's holder gets its pid from there. */
function withBound(info: InspectInfo, r: InspectRecord): InspectInfo {
  if (!info.holders.some((h) => h.pid !== process.pid)) return info;
  const key = fileKey(r.major, r.minor, r.ino);
  const holding = findHolders().filter((h) => h.files.has(key));
  if (holding.length === 0) return info;
  for (const h of info.holders) {
    const found = holding.find((f) => f.holderPid === h.pid) ?? (h.pid === null ? holding[0] : undefined);
    if (found === undefined) continue;
    h.pid = found.holderPid;
    h.boundTo = boundTo(found);
  }
  return info;
}

export function inspectInfo(name: string, r: InspectRecord): InspectInfo {
  const info = withBound(inspectState(name, r), r);
  info.records = liveRecords(r.records, info.state);
  info.generation = lastGeneration(r.records);
  return info;
}

function inspectState(name: string, r: InspectRecord): InspectInfo {
  const base = { name, path: r.path, owners: r.owners.map(ownerFromKey), waiters: r.waiters, records: [], generation: null };
  if (r.remote) {
    const holders: LockHolder[] = [];
    // The server does not tell this process's own locks (they do not conflict with themselves).
    if (r.held) holders.push({ pid: process.pid, mode: r.heldShared ? 'shared' : 'exclusive', kind: r.heldOfd ? 'ofd' : 'posix' });
    if (r.otherHeld) holders.push({ pid: null, mode: r.otherShared ? 'shared' : 'exclusive', kind: r.otherOfd ? 'ofd' : 'posix' });
    return { ...base, state: stateOf(holders), holders };
  }
  const lines = (): Holder[] | null => {
    const all = readProcLocks(new Set([BigInt(r.ino)]));
    return all && locksOnFile(all, { major: r.major, minor: r.minor }, BigInt(r.ino), undefined, () => null).holders;
  };
  if (r.queryErrno === 0) {
    const a = answer(r.lockState, r.lockPid, false);
    // An exclusive lock has one holder, which the query names: /proc/locks only for shared ones.
    return { ...base, state: a.state, holders: holdersOf(a, a.state === 'shared' ? lines() : null).map(lockHolder) };
  }
  // The kernel could not be asked: a line of /proc/locks proves a lock, no line proves nothing.
  const seen = (lines() ?? []).map(lockHolder);
  if (seen.length > 0) return { ...base, state: stateOf(seen), holders: seen };
  const error = systemError(r.queryErrno, r.querySyscall, r.path, 'cannot ask the kernel who holds it');
  return { ...base, state: 'unknown', holders: [], error };
}
