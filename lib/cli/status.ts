/* lockspace status DIR: who holds what in a lockspace directory. */
import * as fs from 'node:fs';
import * as nodePath from 'node:path';

import { BoundTo, boundTo, fileKey, findHolders, FoundHolder } from '../bound-holders';
import type * as Api from '../index';
import type * as LockQuery from '../lock-query';
import type * as Records from '../records';
import { absoluteAsKernel } from '../paths';
import { byInode, commandName, devParts, FileLocks, Holder, locksOnFile, readProcLocks, superblockDevice } from '../proc-locks';
import { errCode, Exit, EX_NOINPUT, lib, onePositional, out, parse, systemExit } from './args';
import { escapeControls, escapeName, isUtf8, table } from './text';

export const HELP = `Usage: lockspace status DIR [--json] [--probe]

List every resource (regular file) in the lockspace directory DIR and whether it is locked:
'free', 'shared' or 'exclusive', with each holder's pid, command name and lock type (POSIX, or
OFDLCK for open-file-description locks, whose pid the kernel does not tell), and the processes
waiting for it. Only locks on byte 0 count, as lockspace and libvirt take them.

The kernel is asked about each resource with a lock query (F_GETLK through a read-only
descriptor, from a thread with a descriptor table of its own), so nothing is locked; the state
is the kernel's at that moment, on network file systems too (a holder on another host shows
without pid). The kernel's lock list (/proc/locks, read once) adds the pids of further shared
holders and the waiting processes; alone it can say 'free' wrongly (it is read a page at a time
while locks come and go, and inside a container it leaves out processes the container cannot
see: their locks show as held without pid). A resource the kernel cannot be asked about (not
readable, say) is 'unknown' unless /proc/locks shows a lock on it. With --probe, each resource
is probed by taking and dropping its lock without waiting instead: this needs write permission
and briefly holds the lock, so another process's non-waiting acquire can fail meanwhile.

In the table, control characters in names are escaped (\\n, \\x1b, \\\\) and bytes that are not
UTF-8 are shown as \\xHH.

Holder records: files locked through a lockspace opened with { records: true } (or by
'lockspace run --records') name their holders, on whatever host they run: host, pid on that
host, label, since when, and the generation. A record is shown only while its holder holds
the lock (its record's own lock byte is checked, and locally its process's start time). The
table lists them below the locks.

Options:
  --json     print JSON: { directory, source, resources: [{ name, path, state, holders,
             waiters, records }], bound } with holders/waiters as [{ pid, command, type, mode }]
             (a bound set's holder also has boundTo: { pid, command, holderPid, state }),
             records as [{ host, machineId, pid, label, since, generation, mode }] (since: ISO
             time; generation: decimal string or null), and bound: this directory's bound sets
             (lockspace hold) you may see; a name that is not UTF-8 is given lossily in name and
             path, and exactly in nameBase64
  --probe    probe by locking instead of asking
  -h, --help show this help

Exit status: 0 success; 64 usage error; 66 DIR is missing or not a directory; 77 permission
denied (virtlockd's directories are usually readable by root only); 71 other errors.
`;

export interface ResourceStatus {
  name: string;
  /** Only for a name that is not UTF-8: its bytes (name and path then hold a lossy form). */
  nameBase64?: string;
  path: string;
  state: 'free' | 'shared' | 'exclusive' | 'unknown';
  holders: (Holder & { boundTo?: BoundTo })[];
  waiters: Holder[];
  /** The holder records of its live holders (none with --probe). */
  records: RecordStatus[];
  error?: string;
}

/** A set bound to a process on this host (LockSpace#holdFor, lockspace hold). */
export interface BoundStatus {
  holderPid: number;
  pid: number;
  command: string | null;
  names: string[];
  state: 'held' | 'lost';
  lockType: string;
  onLost: string;
  since: string;
}

/** A holder record as JSON gives it. */
export interface RecordStatus {
  host: string;
  machineId: string;
  pid: number;
  label: string | null;
  since: string;
  generation: string | null;
  mode: 'shared' | 'exclusive';
}

type Probed = Pick<ResourceStatus, 'state' | 'holders' | 'error'>;

function stateOf(holders: Holder[]): ResourceStatus['state'] {
  if (holders.length === 0) return 'free';
  return holders.some((h) => h.mode === 'exclusive') ? 'exclusive' : 'shared';
}

/** Probes one resource by taking its lock without waiting: exclusive, then shared. */
function probe(ls: Api.LockSpace, name: string): Probed {
  const holder = (err: unknown, mode: Holder['mode']): Holder[] => {
    const pid = (err as Api.LockspaceError).holderPid ?? null;
    return [{ pid, command: pid === null ? null : commandName(pid), type: null, mode }];
  };
  let busy: unknown;
  try {
    ls.acquireSync(name).releaseSync();
    return { state: 'free', holders: [] };
  } catch (err) {
    if (errCode(err) !== 'EBUSY') return { state: 'unknown', holders: [], error: (err as Error).message };
    busy = err;
  }
  try {
    ls.acquireSync(name, { shared: true }).releaseSync();
    return { state: 'shared', holders: holder(busy, 'shared') };
  } catch (err) {
    if (errCode(err) !== 'EBUSY') return { state: 'unknown', holders: [], error: (err as Error).message };
    return { state: 'exclusive', holders: holder(err, 'exclusive') };
  }
}

let lockQuery: typeof LockQuery | undefined;
/** The lock queries, loaded on first use like the library (they need the native addon). */
function queries(): typeof LockQuery {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (lockQuery ??= require('../lock-query') as typeof LockQuery);
}

let records: typeof Records | undefined;
function recordsOf(a: LockQuery.LockAnswer): RecordStatus[] {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  records ??= require('../records') as typeof Records;
  return records.liveRecords(a.records, a.state).map((r) => ({ ...r, since: r.since.toISOString(), generation: r.generation === null ? null : String(r.generation) }));
}

function openDirectory(arg: string): string {
  try {
    const directory = fs.realpathSync.native(absoluteAsKernel(arg)); // link/.. as the kernel means it
    if (!fs.statSync(directory).isDirectory()) throw new Exit(`'${arg}' is not a directory`, EX_NOINPUT);
    return directory;
  } catch (err) {
    if (err instanceof Exit) throw err;
    if (errCode(err) === 'ENOENT') throw new Exit(`no such directory '${arg}'`, EX_NOINPUT);
    throw systemExit(err);
  }
}

function named(directory: string, raw: Buffer): Pick<ResourceStatus, 'name' | 'nameBase64' | 'path'> {
  const name = raw.toString('utf8');
  return { name, ...(isUtf8(raw) ? {} : { nameBase64: raw.toString('base64') }), path: nodePath.join(directory, name) };
}

/** Every regular file asked about with a lock query (one native thread for all), /proc/locks read once. */
function askAll(directory: string, files: Buffer[]): ResourceStatus[] {
  const dirBytes = Buffer.from(`${directory}/`);
  const paths = files.map((raw) => Buffer.concat([dirBytes, raw]));
  const { holdersOf, queryLocks } = queries();
  const answers = queryLocks(paths, true);
  const procLocks = readProcLocks(new Set(answers.flatMap((a) => (a instanceof Error ? [] : [a.ino]))));
  const index = procLocks && byInode(procLocks);
  const sb = procLocks === null ? undefined : superblockDevice(directory);
  const names = new Map<number, string | null>();
  const command = (pid: number): string | null => {
    if (!names.has(pid)) names.set(pid, commandName(pid));
    return names.get(pid)!;
  };
  const linesOn = (dev: { major: number; minor: number }, ino: bigint): FileLocks | null =>
    index && locksOnFile(index.get(ino) ?? [], dev, ino, sb, command);
  const bound = findHolders();
  const resources: ResourceStatus[] = [];
  paths.forEach((path, i) => {
    const a = answers[i];
    const file = named(directory, path.subarray(dirBytes.length));
    if (a instanceof Error) {
      // Gone, replaced by something that is not a regular file, or a symlink: not a resource now.
      if (a.code === 'ENOENT' || a.code === 'EINVAL' || a.code === 'ELOOP') return;
      // Not asked: a line of /proc/locks proves a lock (unless it may be another btrfs subvolume's
      // file); no line proves nothing.
      let found: FileLocks | null = null;
      try {
        const st = fs.lstatSync(path, { bigint: true });
        found = linesOn(devParts(st.dev), st.ino);
      } catch {
        // not there to match
      }
      if (found && found.holders.length > 0 && !found.ambiguous) {
        resources.push({ ...file, state: stateOf(found.holders), holders: found.holders, waiters: found.waiters, records: [] });
      } else {
        resources.push({ ...file, state: 'unknown', holders: [], waiters: [], records: [], error: a.message });
      }
      return;
    }
    const found = linesOn(a, a.ino);
    const holders = holdersOf(a, found?.holders ?? null).map((h) => ({ ...h, command: h.pid === null ? null : (h.command ?? command(h.pid)) }));
    markBound(holders, fileKey(a.major, a.minor, a.ino), bound);
    // A waiter of a free lock is being granted it: its line is already out of date.
    resources.push({ ...file, state: a.state, holders, waiters: a.state === 'free' ? [] : (found?.waiters ?? []), records: recordsOf(a) });
  });
  return resources;
}

/** The holders that hold the file for a bound set get its bound process (an OFD lock's holder, whose
 *  pid the kernel does not tell, gets the holder's pid from there). */
function markBound(holders: ResourceStatus['holders'], key: string, bound: FoundHolder[]): void {
  const holding = bound.filter((h) => h.files.has(key));
  for (const h of holders) {
    const found = holding.find((f) => f.holderPid === h.pid) ?? (h.pid === null ? holding[0] : undefined);
    if (found === undefined) continue;
    h.pid = found.holderPid;
    h.command = 'lockspace-hold';
    h.boundTo = boundTo(found);
  }
}

/** The sets bound in `directory` on this host that this user may see. */
function boundSets(directory: string): BoundStatus[] {
  return findHolders()
    .filter((h) => h.record.directory === directory)
    .map((h) => {
      const to = boundTo(h);
      const r = h.record;
      return { holderPid: h.holderPid, pid: r.pid, command: to.command, names: r.names, state: to.state, lockType: r.lockType, onLost: r.onLost, since: r.since };
    });
}

/** Every file probed by taking its lock without waiting (--probe). */
function probeAll(directory: string, files: Buffer[]): ResourceStatus[] {
  const ls = lib().LockSpace.open(directory, { checkInterval: 0 });
  const resources: ResourceStatus[] = [];
  for (const raw of files) {
    // The library takes well-formed strings only: a name that is not UTF-8 cannot be probed.
    const r: Probed = isUtf8(raw)
      ? probe(ls, raw.toString('utf8'))
      : { state: 'unknown', holders: [], error: 'the name is not UTF-8: cannot be probed' };
    if (r.error?.startsWith('ENOENT')) continue; // deleted meanwhile
    resources.push({ ...named(directory, raw), ...r, waiters: [], records: [] });
  }
  return resources;
}

export function status(args: string[]): number {
  const p = parse('status', args, { json: { kind: 'flag' }, probe: { kind: 'flag' } });
  if (p.help) {
    out(HELP);
    return 0;
  }
  const arg = onePositional('status', p, 'DIR');
  const directory = openDirectory(arg);
  let entries: fs.Dirent<Buffer>[];
  try {
    entries = fs.readdirSync(directory, { withFileTypes: true, encoding: 'buffer' });
  } catch (err) {
    throw systemExit(err);
  }
  const files = entries.filter((e) => e.isFile()).map((e) => e.name).sort(Buffer.compare);

  const resources = p.options.has('probe') ? probeAll(directory, files) : askAll(directory, files);

  const source = p.options.has('probe') ? 'probe' : 'lock-query';
  const bound = boundSets(directory);
  if (p.options.has('json')) {
    out(JSON.stringify({ directory, source, resources, bound }, null, 2));
    return 0;
  }
  if (resources.length === 0) {
    out(`no resources in ${escapeControls(directory)}`);
    return 0;
  }
  const boundColumn = (h?: ResourceStatus['holders'][number]): string =>
    h?.boundTo ? `${h.boundTo.pid} ${escapeControls(h.boundTo.command ?? '-')}${h.boundTo.state === 'lost' ? ' (lost)' : ''}` : '';
  // The BOUND TO column only when a lock here is held for a bound set (holdFor, lockspace hold).
  const anyBound = resources.some((r) => r.holders.some((h) => h.boundTo !== undefined));
  const rows: string[][] = [['RESOURCE', 'STATE', 'PID', 'COMMAND', 'TYPE', ...(anyBound ? ['BOUND TO'] : [])]];
  for (const r of resources) {
    const shown = r.nameBase64 === undefined ? escapeControls(r.name) : escapeName(Buffer.from(r.nameBase64, 'base64'));
    const row = (state: string, h?: ResourceStatus['holders'][number]): string[] => [
      shown,
      escapeControls(state),
      h ? (h.pid === null ? '-' : String(h.pid)) : '',
      h ? escapeControls(h.command ?? '-') : '',
      h ? (h.type ?? '-') : '',
      ...(anyBound ? [boundColumn(h)] : []),
    ];
    if (r.holders.length === 0) rows.push(row(r.state === 'unknown' ? `unknown (${r.error})` : r.state));
    for (const h of r.holders) rows.push(row(r.state, h));
    for (const w of r.waiters) rows.push(row(`waiting (${w.mode})`, w));
  }
  out(table(rows));
  const recorded = resources.filter((r) => r.records.length > 0);
  if (recorded.length > 0) {
    const recs: string[][] = [['RESOURCE', 'MODE', 'HOST', 'PID', 'LABEL', 'GENERATION', 'SINCE']];
    for (const r of recorded) {
      const shown = r.nameBase64 === undefined ? escapeControls(r.name) : escapeName(Buffer.from(r.nameBase64, 'base64'));
      for (const h of r.records) {
        recs.push([shown, h.mode, escapeControls(h.host), String(h.pid), escapeControls(h.label ?? '-'), h.generation ?? '-', h.since]);
      }
    }
    out('');
    out('Holder records:');
    out(table(recs));
  }
  if (bound.length > 0) {
    const sets: string[][] = [['BOUND TO', 'COMMAND', 'HOLDER', 'STATE', 'NAMES']];
    for (const b of bound) sets.push([String(b.pid), escapeControls(b.command ?? '-'), String(b.holderPid), b.state, b.names.map(escapeControls).join(' ')]);
    out(`\nbound sets (ended when their process ends; kill HOLDER releases one):\n${table(sets)}`);
  }
  return 0;
}
