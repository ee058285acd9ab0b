/*
 * Holder records (LockSpace.open(dir, { records: true })): who holds a lock file, as its holders wrote
 * it into the file, on any host that sees the file. The format, how a record is written under the lock
 * and how a reader knows a record's holder still holds it are in native/core/holder_record.h; here the
 * native rows become what inspect and the CLI show.
 */
import type { HolderRecordRow, RecordsRecord } from './native';

export interface HolderRecord {
  /** The holder's host name (uname). */
  host: string;
  /** Its host's /etc/machine-id ('' when it has none). */
  machineId: string;
  /** The holder's pid on its own host (in its own pid namespace). */
  pid: number;
  /** The label of its grant (`acquire(name, { label })`), or null. */
  label: string | null;
  /** When it was granted (the holder's clock). */
  since: Date;
  /** Exclusive: its grant's generation; shared: the last exclusive holder's when it was granted (null:
   *  none was counted then). */
  generation: bigint | null;
  mode: 'shared' | 'exclusive';
}

export function holderRecord(row: HolderRecordRow): HolderRecord {
  const [exclusive, generation, since, pid, host, machineId, label] = row;
  return { host, machineId, pid, label: label === '' ? null : label, since: new Date(since), generation: generation === 0n ? null : generation, mode: exclusive ? 'exclusive' : 'shared' };
}

/** The live holders' records, newest grant first; none for a file that is not held. */
export function liveRecords(r: RecordsRecord | undefined, state: string): HolderRecord[] {
  if (r === undefined || r.errno !== 0 || state === 'free') return [];
  return r.live.map(holderRecord).sort((x, y) => y.since.getTime() - x.since.getTime());
}

/** The last exclusive generation counted in the file, or null when none is (or it was not read). */
export function lastGeneration(r: RecordsRecord | undefined): bigint | null {
  return r === undefined || r.errno !== 0 || r.generation === 0n ? null : r.generation;
}
