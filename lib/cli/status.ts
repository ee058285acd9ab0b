/* lockspace status DIR: who holds what in a lockspace directory. */
import * as fs from 'node:fs';
import * as nodePath from 'node:path';

import type * as Api from '../index';
import { absoluteAsKernel } from '../paths';
import { commandName, FileLocks, Holder, locksOn, readProcLocks, superblockDevice } from '../proc-locks';
import { errCode, Exit, EX_NOINPUT, lib, onePositional, out, parse, systemExit } from './args';
import { escapeControls, escapeName, isUtf8, table } from './text';

export const HELP = `Usage: lockspace status DIR [--json] [--probe]

List every resource (regular file) in the lockspace directory DIR and whether it is locked:
'free', 'shared' or 'exclusive', with each holder's pid, command name and lock type (POSIX, or
OFDLCK for open-file-description locks, whose pid the kernel does not tell), and the processes
waiting for it. Only locks on byte 0 count, as lockspace and libvirt take them.

The kernel's lock list (/proc/locks) is read, so nothing is locked or opened. On btrfs, where
stat and /proc/locks name devices differently and inode numbers repeat between subvolumes, a
resource that /proc/locks shows locked is confirmed by probing it. Where /proc/locks cannot be
read, or with --probe, each resource is probed by taking and dropping its lock without waiting:
this tells free/shared/exclusive and one POSIX holder's pid, and sees locks held by other hosts
on NFS, but it needs write permission and briefly holds the lock, so another process's
non-waiting acquire can fail meanwhile.

In the table, control characters in names are escaped (\\n, \\x1b, \\\\) and bytes that are not
UTF-8 are shown as \\xHH.

Options:
  --json     print JSON: { directory, source, resources: [{ name, path, state, holders,
             waiters }] } with holders/waiters as [{ pid, command, type, mode }]; a name
             that is not UTF-8 is given lossily in name and path, and exactly in nameBase64
  --probe    probe by locking instead of reading /proc/locks
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
  holders: Holder[];
  waiters: Holder[];
  error?: string;
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

/** The holders inspect finds (a lock query to the server on network file systems); null on error. */
function inspectHolders(ls: Api.LockSpace, name: string): Holder[] | null {
  try {
    return ls.inspectSync(name).holders.map((h) => ({
      pid: h.pid,
      command: h.pid === null ? null : commandName(h.pid),
      type: h.kind === 'ofd' ? 'OFDLCK' : 'POSIX',
      mode: h.mode,
    }));
  } catch {
    return null; // deleted meanwhile, or unreadable: /proc/locks's answer stands
  }
}

/** /proc/locks' answer for one resource; an ambiguous one (btrfs) checked against a probe. */
function fromProcLocks(found: FileLocks, probeIt: () => Probed | undefined): Omit<ResourceStatus, 'name' | 'path'> {
  const state = stateOf(found.holders);
  if (found.ambiguous && state !== 'free') {
    const probed = probeIt();
    // The lines may be another subvolume's file with the same inode number: the probe decides.
    if (probed && probed.state !== 'unknown' && probed.state !== state) return { ...probed, waiters: [] };
    // One exclusive holder at a time: F_GETLK's pid picks it out of the lines.
    const pid = probed?.state === 'exclusive' ? probed.holders[0]?.pid : null;
    if (pid != null) {
      const holders = found.holders.filter((h) => h.pid === pid);
      return { state, holders: holders.length > 0 ? holders : probed!.holders, waiters: found.waiters };
    }
  }
  return { state, holders: found.holders, waiters: found.waiters };
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

  const procLocks = p.options.has('probe') ? null : readProcLocks();
  const sb = procLocks === null ? undefined : superblockDevice(directory);
  let ls: Api.LockSpace | undefined;
  const lockspace = (): Api.LockSpace => (ls ??= lib().LockSpace.open(directory, { checkInterval: 0 }));
  const dirBytes = Buffer.from(`${directory}/`);
  const resources: ResourceStatus[] = [];
  for (const raw of files) {
    const utf8 = isUtf8(raw);
    const name = raw.toString('utf8');
    const path = nodePath.join(directory, name);
    const named = { name, ...(utf8 ? {} : { nameBase64: raw.toString('base64') }), path };
    // The library takes well-formed strings only: a name that is not UTF-8 cannot be probed.
    const probeIt = (): Probed =>
      utf8 ? probe(lockspace(), name) : { state: 'unknown', holders: [], error: 'the name is not UTF-8: cannot be probed' };
    if (procLocks !== null) {
      let st: fs.BigIntStats;
      try {
        st = fs.lstatSync(Buffer.concat([dirBytes, raw]), { bigint: true });
      } catch {
        continue; // deleted meanwhile (an autoCreate resource released)
      }
      if (!st.isFile()) continue;
      const found = locksOn(procLocks, st, sb);
      // Locks a FUSE or NFS client hands to its server are not in /proc/locks: ask the file system.
      if (utf8 && found.holders.length === 0 && found.waiters.length === 0) {
        const holders = inspectHolders(lockspace(), name);
        if (holders && holders.length > 0) {
          resources.push({ ...named, state: stateOf(holders), holders, waiters: [] });
          continue;
        }
      }
      resources.push({ ...named, ...fromProcLocks(found, probeIt) });
    } else {
      const r = probeIt();
      if (r.error?.startsWith('ENOENT')) continue; // deleted meanwhile
      resources.push({ ...named, ...r, waiters: [] });
    }
  }

  const source = procLocks !== null ? 'proc-locks' : 'probe';
  if (p.options.has('json')) {
    out(JSON.stringify({ directory, source, resources }, null, 2));
    return 0;
  }
  if (resources.length === 0) {
    out(`no resources in ${escapeControls(directory)}`);
    return 0;
  }
  const rows: string[][] = [['RESOURCE', 'STATE', 'PID', 'COMMAND', 'TYPE']];
  for (const r of resources) {
    const shown = r.nameBase64 === undefined ? escapeControls(r.name) : escapeName(Buffer.from(r.nameBase64, 'base64'));
    const row = (state: string, h?: Holder): string[] => [
      shown,
      escapeControls(state),
      h ? (h.pid === null ? '-' : String(h.pid)) : '',
      h ? escapeControls(h.command ?? '-') : '',
      h ? (h.type ?? '-') : '',
    ];
    if (r.holders.length === 0) rows.push(row(r.state === 'unknown' ? `unknown (${r.error})` : r.state));
    for (const h of r.holders) rows.push(row(r.state, h));
    for (const w of r.waiters) rows.push(row(`waiting (${w.mode})`, w));
  }
  out(table(rows));
  return 0;
}
