#!/usr/bin/env node
/*
 * lockspace: the operator CLI (package "bin").
 *
 *   lockspace status DIR [--json] [--probe]       who holds what in a lockspace directory
 *   lockspace run [...] DIR|- NAME -- COMMAND     hold a lock while a command runs, like flock(1)
 *   lockspace name PATH [--no-canonicalize]       the resource name resourceNameForPath gives
 *
 * Exit status follows sysexits.h: 64 usage, 66 missing input, 75 busy or timed out, 77 permission,
 * 71 other system errors; `run` exits with the command's status (128+N when killed by signal N),
 * 126/127 when the command cannot be executed / is not found.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { constants as osConstants } from 'node:os';
import * as nodePath from 'node:path';

import type * as Api from './index';

const EX_USAGE = 64;
const EX_NOINPUT = 66;
const EX_SOFTWARE = 70;
const EX_OSERR = 71;
const EX_TEMPFAIL = 75;
const EX_NOPERM = 77;
const EX_CANNOT_EXEC = 126;
const EX_NOT_FOUND = 127;

/* ------------------------------------------------------------------ help */

const MAIN_HELP = `Usage: lockspace <command> [options]

Operator tool for lockspace directories: fcntl locks on byte 0 of one file per resource, the
model of libvirt's virLockSpace (virtlockd's file_lockspace_dir works too).

Commands:
  status DIR [--json] [--probe]
        list every resource file in DIR: free, or locked shared/exclusive, with the holder's
        pid and command name
  run [--shared] [--wait[=SECONDS]] [--auto-create] DIR|- NAME -- COMMAND [ARGS...]
        hold the lock on NAME while COMMAND runs, like flock(1); exit with COMMAND's status
  name PATH [--no-canonicalize]
        print the resource name for PATH (SHA-256 hex, as virtlockd names its files)
  help [COMMAND]
        show this help, or a command's

Options:
  -h, --help      show help (also after a command: lockspace run --help)
  -V, --version   show the version

Exit status: 0 success; 64 usage error; 66 a file or directory is missing; 75 the lock is busy
or --wait timed out; 77 permission denied; 71 other system errors. \`run\` exits with COMMAND's
status instead (128+N if a signal N killed it; 126 cannot execute, 127 not found).
Set NODE_DEBUG=lockspace to log acquisitions, conflicts, waits and releases to stderr.
`;

const STATUS_HELP = `Usage: lockspace status DIR [--json] [--probe]

List every resource (regular file) in the lockspace directory DIR and whether it is locked:
'free', 'shared' or 'exclusive', with each holder's pid, command name and lock type (POSIX, or
OFDLCK for open-file-description locks, whose pid the kernel does not tell), and the processes
waiting for it. Only locks on byte 0 count, as lockspace and libvirt take them.

The kernel's lock list (/proc/locks) is read, so nothing is locked or opened. Locks on network
file systems (NFS, GlusterFS and other FUSE mounts) are not in that list: a resource it shows as
free is asked about with a lock query (F_GETLK through a read-only descriptor, which changes no
lock); a holder on another host shows without pid. Where /proc/locks cannot be
read, or with --probe, each resource is probed by taking and dropping its lock without waiting:
this tells free/shared/exclusive and one POSIX holder's pid, and sees locks held by other hosts
on NFS, but it needs write permission and briefly holds the lock, so another process's
non-waiting acquire can fail meanwhile.

Options:
  --json     print JSON: { directory, source, resources: [{ name, path, state, holders,
             waiters }] } with holders/waiters as [{ pid, command, type, mode }]
  --probe    probe by locking instead of reading /proc/locks
  -h, --help show this help

Exit status: 0 success; 64 usage error; 66 DIR is missing or not a directory; 77 permission
denied (virtlockd's directories are usually readable by root only); 71 other errors.
`;

const RUN_HELP = `Usage: lockspace run [--shared] [--wait[=SECONDS]] [--auto-create] DIR|- NAME [--] COMMAND [ARGS...]

Acquire the lock on resource NAME of the lockspace directory DIR (created 0700 if missing), run
COMMAND while holding it, release it when COMMAND exits, and exit with COMMAND's status. With
DIR '-', NAME is the path of the file to lock (path mode; a relative path is taken from the
current directory). Like flock(1), but the lock is lockspace's: fcntl on byte 0, length 1, so
it excludes libvirt's virtlockd and Python's fcntl.lockf(fd, LOCK_EX, 1, 0) on the same file.

Options:
  -s, --shared         take a shared lock (default: exclusive)
  --wait[=SECONDS]     wait until the lock is free (at most SECONDS, decimals allowed)
                       instead of failing at once
  --auto-create        create the resource file (mode 0600) if missing, and delete it after
                       COMMAND exits unless another process still holds it
  -h, --help           show this help

The lock is held by this lockspace process, not by COMMAND: lock descriptors are close-on-exec
and never inherited. SIGINT, SIGTERM and SIGHUP are forwarded to COMMAND; while waiting for the
lock they cancel the wait instead (exit 128+N, COMMAND not run). If this process is killed
with SIGKILL, the lock is gone while COMMAND may still run.

Exit status: COMMAND's status, or 128+N if signal N killed it; 75 the lock is busy (or --wait
timed out), with a one-line message; 64 usage error (bad option, bad NAME); 66 the resource
file does not exist (pass --auto-create); 77 permission denied; 126 COMMAND cannot be executed;
127 COMMAND not found; 71 other system errors.
`;

const NAME_HELP = `Usage: lockspace name PATH [--no-canonicalize]

Print the resource name for the file PATH: the lowercase SHA-256 hex of the path, the name
virtlockd gives a disk's lock file in its file_lockspace_dir (resourceNameForPath in the API).

Options:
  --no-canonicalize  hash PATH exactly as given (virtlockd hashes the disk path as configured
                     in the domain XML); by default symlinks, '.' and '..' are resolved first,
                     and a relative PATH is taken from the current directory
  -h, --help         show this help

Exit status: 0 success; 64 usage error; 66 PATH's directory does not exist; 71 other errors.
`;

const HELP: Record<string, string> = { status: STATUS_HELP, run: RUN_HELP, name: NAME_HELP };

/* ------------------------------------------------------------------ errors and arguments */

/** Ends the command with a message on stderr and an exit status. */
class Exit extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly command?: string,
  ) {
    super(message);
  }
}

function usage(command: string | undefined, message: string): Exit {
  return new Exit(message, EX_USAGE, command);
}

type OptKind = 'flag' | 'optional' | 'value';
interface OptSpec {
  kind: OptKind;
  short?: string;
}
interface Parsed {
  options: Map<string, string | true>;
  positionals: string[];
  /** `run`: the command and its arguments. */
  rest: string[];
  help: boolean;
}

/**
 * Parses `args` against `spec`. Options may come before, between and after positionals; `--` ends
 * them. With `commandAfter` (run), the first non-option after that many positionals, or whatever
 * follows `--` once they are there, starts the command, whose own arguments are left alone.
 */
function parse(command: string, args: string[], spec: Record<string, OptSpec>, commandAfter?: number): Parsed {
  const parsed: Parsed = { options: new Map(), positionals: [], rest: [], help: false };
  const byShort = new Map(Object.entries(spec).flatMap(([long, s]) => (s.short ? [[s.short, long]] : [])));
  let i = 0;
  let optionsDone = false;
  for (; i < args.length; i++) {
    const arg = args[i];
    const commandStarts = commandAfter !== undefined && parsed.positionals.length >= commandAfter;
    if (!optionsDone && arg === '--') {
      if (commandStarts) {
        i++;
        break;
      }
      optionsDone = true;
      continue;
    }
    if (optionsDone || arg === '-' || !arg.startsWith('-')) {
      if (commandStarts) break;
      parsed.positionals.push(arg);
      continue;
    }
    if (arg === '-h' || arg === '--help') {
      parsed.help = true;
      continue;
    }
    let long: string;
    let value: string | undefined;
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      long = eq < 0 ? arg.slice(2) : arg.slice(2, eq);
      value = eq < 0 ? undefined : arg.slice(eq + 1);
    } else {
      if (arg.length !== 2 || !byShort.has(arg[1])) throw usage(command, `unknown option '${arg}'`);
      long = byShort.get(arg[1])!;
    }
    const s = spec[long];
    if (!s) throw usage(command, `unknown option '${arg.split('=')[0]}'`);
    if (s.kind === 'flag' && value !== undefined) throw usage(command, `option '--${long}' takes no value`);
    if (s.kind === 'value' && value === undefined) {
      if (i + 1 >= args.length) throw usage(command, `option '--${long}' needs a value`);
      value = args[++i];
    }
    parsed.options.set(long, value ?? true);
  }
  parsed.rest = args.slice(i);
  return parsed;
}

/* ------------------------------------------------------------------ helpers */

let api: typeof Api | undefined;
/** The library, loaded on first use: help and usage errors work even without the native addon. */
function lib(): typeof Api {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (api ??= require('./index') as typeof Api);
}

function out(text: string): void {
  process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
}

function errCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null ? ((err as { code?: unknown }).code as string | undefined) : undefined;
}

/** The exit status for a system error. */
function statusFor(code: string | undefined): number {
  switch (code) {
    case 'ENOENT':
    case 'ENOTDIR':
      return EX_NOINPUT;
    case 'EACCES':
    case 'EPERM':
    case 'EROFS':
      return EX_NOPERM;
    case 'EBUSY':
    case 'ETIMEDOUT':
    case 'EDEADLK':
    case 'EAGAIN':
      return EX_TEMPFAIL;
    default:
      return EX_OSERR;
  }
}

function systemExit(err: unknown): Exit {
  const message = err instanceof Error ? err.message : String(err);
  return new Exit(message, statusFor(errCode(err)));
}

/** Reports bad-argument TypeErrors of the library (ERR_INVALID_ARG_*) as usage errors. */
function rethrowArgError(command: string, err: unknown, what: string): never {
  const code = errCode(err);
  if (err instanceof TypeError && (code === 'ERR_INVALID_ARG_VALUE' || code === 'ERR_INVALID_ARG_TYPE')) {
    const reason = /^The argument '[^']*' (.*?)\. Received /.exec(err.message)?.[1] ?? err.message;
    throw usage(command, `invalid ${what}: ${reason}`);
  }
  throw systemExit(err);
}

function commandName(pid: number): string | null {
  try {
    return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim() || null;
  } catch {
    return null;
  }
}

/* ------------------------------------------------------------------ /proc/locks */

export interface Holder {
  /** null when the kernel does not tell (OFD locks show pid -1). */
  pid: number | null;
  command: string | null;
  /** 'POSIX' or 'OFDLCK' (from /proc/locks); null when probing. */
  type: string | null;
  mode: 'shared' | 'exclusive';
}

interface ProcLock {
  blocked: boolean;
  type: string;
  mode: 'shared' | 'exclusive';
  pid: number | null;
  major: number;
  minor: number;
  ino: bigint;
  start: bigint;
}

const PROC_LOCKS = '/proc/locks';
const LOCK_LINE = /^\d+:\s+(->\s+)?(\S+)\s+\S+\s+(\S+)\s+(-?\d+)\s+([0-9a-f]+):([0-9a-f]+):(\d+)\s+(\d+)\s+(\d+|EOF)\s*$/;

/** fcntl locks (POSIX and OFD) from /proc/locks, or null if it cannot be read. */
function readProcLocks(): ProcLock[] | null {
  let text: string;
  try {
    text = fs.readFileSync(PROC_LOCKS, 'latin1');
  } catch {
    return null;
  }
  const locks: ProcLock[] = [];
  for (const line of text.split('\n')) {
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
function devParts(dev: bigint): { major: number; minor: number } {
  const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn);
  const minor = (dev & 0xffn) | ((dev >> 12n) & ~0xffn);
  return { major: Number(major), minor: Number(minor) };
}

/** The locks on byte 0 of the file with this stat, split into holders and waiters. */
function locksOn(all: ProcLock[], st: fs.BigIntStats): { holders: Holder[]; waiters: Holder[] } {
  const { major, minor } = devParts(st.dev);
  const holders: Holder[] = [];
  const waiters: Holder[] = [];
  const seen = new Set<string>();
  for (const l of all) {
    if (l.ino !== st.ino || l.major !== major || l.minor !== minor || l.start !== 0n) continue;
    const h: Holder = { pid: l.pid, command: l.pid === null ? null : commandName(l.pid), type: l.type, mode: l.mode };
    // /proc/locks is read in chunks while locks come and go, so a line may be read twice. Repeats that
    // cannot be real are dropped: one POSIX lock per process and byte (the kernel merges them), and
    // one held exclusive lock per byte. Identical shared OFD lines can be two open file descriptions.
    const key = `${l.blocked}:${l.type}:${l.mode}:${l.pid}`;
    const impossibleRepeat = l.type === 'POSIX' || (!l.blocked && l.mode === 'exclusive');
    if (impossibleRepeat && seen.has(key)) continue;
    seen.add(key);
    (l.blocked ? waiters : holders).push(h);
  }
  return { holders, waiters };
}

/* ------------------------------------------------------------------ status */

export interface ResourceStatus {
  name: string;
  path: string;
  state: 'free' | 'shared' | 'exclusive' | 'unknown';
  holders: Holder[];
  waiters: Holder[];
  error?: string;
}

function stateOf(holders: Holder[]): ResourceStatus['state'] {
  if (holders.length === 0) return 'free';
  return holders.some((h) => h.mode === 'exclusive') ? 'exclusive' : 'shared';
}

/** Probes one resource by taking its lock without waiting: exclusive, then shared. */
function probe(ls: Api.LockSpace, name: string): Pick<ResourceStatus, 'state' | 'holders' | 'error'> {
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

function status(args: string[]): number {
  const p = parse('status', args, { json: { kind: 'flag' }, probe: { kind: 'flag' } });
  if (p.help) return help('status');
  if (p.positionals.length !== 1) {
    throw usage('status', p.positionals.length === 0 ? 'missing DIR' : `unexpected argument '${p.positionals[1]}'`);
  }
  const json = p.options.has('json');
  const arg = p.positionals[0];
  let directory: string;
  try {
    directory = fs.realpathSync.native(nodePath.resolve(arg));
    if (!fs.statSync(directory).isDirectory()) throw new Exit(`'${arg}' is not a directory`, EX_NOINPUT);
  } catch (err) {
    if (err instanceof Exit) throw err;
    if (errCode(err) === 'ENOENT') throw new Exit(`no such directory '${arg}'`, EX_NOINPUT);
    throw systemExit(err);
  }
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(directory, { withFileTypes: true });
  } catch (err) {
    throw systemExit(err);
  }
  const names = entries.filter((e) => e.isFile()).map((e) => e.name).sort();

  const procLocks = p.options.has('probe') ? null : readProcLocks();
  const ls = names.length > 0 ? lib().LockSpace.open(directory, { checkInterval: 0 }) : undefined;
  const resources: ResourceStatus[] = [];
  for (const name of names) {
    const path = nodePath.join(directory, name);
    if (procLocks !== null) {
      let st: fs.BigIntStats;
      try {
        st = fs.lstatSync(path, { bigint: true });
      } catch {
        continue; // deleted meanwhile (an autoCreate resource released)
      }
      if (!st.isFile()) continue;
      const found = locksOn(procLocks, st);
      const { waiters } = found;
      // Locks a FUSE or NFS client hands to its server are not in /proc/locks: ask the file system.
      const holders = found.holders.length === 0 && waiters.length === 0 ? (inspectHolders(ls!, name) ?? []) : found.holders;
      resources.push({ name, path, state: stateOf(holders), holders, waiters });
    } else {
      const r = probe(ls!, name);
      if (r.error?.startsWith('ENOENT')) continue; // deleted meanwhile
      resources.push({ name, path, ...r, waiters: [] });
    }
  }

  const source = procLocks !== null ? 'proc-locks' : 'probe';
  if (json) {
    out(JSON.stringify({ directory, source, resources }, null, 2));
    return 0;
  }
  if (resources.length === 0) {
    out(`no resources in ${directory}`);
    return 0;
  }
  const rows: string[][] = [['RESOURCE', 'STATE', 'PID', 'COMMAND', 'TYPE']];
  for (const r of resources) {
    if (r.holders.length === 0) rows.push([r.name, r.state === 'unknown' ? `unknown (${r.error})` : r.state, '', '', '']);
    for (const h of r.holders) {
      rows.push([r.name, r.state, h.pid === null ? '-' : String(h.pid), h.command ?? '-', h.type ?? '-']);
    }
    for (const w of r.waiters) {
      rows.push([r.name, `waiting (${w.mode})`, w.pid === null ? '-' : String(w.pid), w.command ?? '-', w.type ?? '-']);
    }
  }
  out(table(rows));
  return 0;
}

function table(rows: string[][]): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return rows.map((r) => r.map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c]))).join('  ').trimEnd()).join('\n');
}

/* ------------------------------------------------------------------ name */

function name(args: string[]): number {
  const p = parse('name', args, { 'no-canonicalize': { kind: 'flag' } });
  if (p.help) return help('name');
  if (p.positionals.length !== 1) {
    throw usage('name', p.positionals.length === 0 ? 'missing PATH' : `unexpected argument '${p.positionals[1]}'`);
  }
  const canonicalize = !p.options.has('no-canonicalize');
  let result: string;
  try {
    result = lib().resourceNameForPath(p.positionals[0], { canonicalize });
  } catch (err) {
    rethrowArgError('name', err, 'PATH');
  }
  out(result);
  return 0;
}

/* ------------------------------------------------------------------ run */

const FORWARDED = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

function signalNumber(signal: NodeJS.Signals): number {
  return (osConstants.signals as Record<string, number>)[signal] ?? 0;
}

function parseWait(value: string | true | undefined): number | undefined | null {
  if (value === undefined) return null; // no waiting
  if (value === true) return undefined; // wait without a limit
  if (!/^(\d+(\.\d*)?|\.\d+)$/.test(value)) throw usage('run', `invalid --wait value '${value}': expected SECONDS (e.g. 10 or 0.5)`);
  return Number(value) * 1000;
}

/** One line describing who holds `path`, from /proc/locks (or the error's F_GETLK pid). */
function describeHolders(path: string, err: unknown): string {
  let holders: Holder[] = [];
  const locks = readProcLocks();
  if (locks !== null) {
    try {
      holders = locksOn(locks, fs.statSync(path, { bigint: true })).holders.filter((h) => h.pid !== process.pid);
    } catch {
      holders = [];
    }
  }
  if (holders.length === 0) {
    const pid = (err as Api.LockspaceError | undefined)?.holderPid;
    // No pid and not in /proc/locks: a network file system's lock (F_GETLK's pid there is one on
    // the holder's own host, so lockspace reports none).
    if (pid === undefined) return ' (held by another host or process)';
    holders = [{ pid, command: commandName(pid), type: 'POSIX', mode: 'exclusive' }];
  }
  const mode = holders.some((h) => h.mode === 'exclusive') ? 'exclusive' : 'shared';
  const who = holders
    .slice(0, 3)
    .map((h) => (h.pid === null ? `an ${h.type} lock (pid unknown)` : `pid ${h.pid}${h.command ? ` ${h.command}` : ''}`))
    .join(', ');
  return ` (${mode} lock held by ${who}${holders.length > 3 ? `, and ${holders.length - 3} more` : ''})`;
}

async function run(args: string[]): Promise<number> {
  const p = parse(
    'run',
    args,
    { shared: { kind: 'flag', short: 's' }, wait: { kind: 'optional' }, 'auto-create': { kind: 'flag' } },
    2,
  );
  if (p.help) return help('run');
  if (p.positionals.length < 2) throw usage('run', p.positionals.length === 0 ? 'missing DIR and NAME' : 'missing NAME');
  if (p.rest.length === 0) throw usage('run', 'missing COMMAND');
  const waitMs = parseWait(p.options.get('wait'));
  const shared = p.options.has('shared');
  const autoCreate = p.options.has('auto-create');
  const [dirArg, nameArg] = p.positionals;
  const pathMode = dirArg === '-';
  if (nameArg === '') throw usage('run', 'invalid NAME: must not be empty');
  const resource = pathMode ? nodePath.resolve(nameArg) : nameArg;
  if (pathMode && nameArg.endsWith('/')) throw usage('run', `invalid NAME '${nameArg}': must name a file, not end with "/"`);

  const { LockSpace } = lib();
  let ls: Api.LockSpace;
  try {
    ls = LockSpace.open(pathMode ? null : dirArg);
  } catch (err) {
    rethrowArgError('run', err, 'DIR');
  }
  const path = pathMode ? resource : nodePath.join(ls.directory!, resource);

  // A signal before the command starts cancels the wait; once it runs, signals go to the command.
  const controller = new AbortController();
  let received: NodeJS.Signals | undefined;
  let child: ReturnType<typeof spawn> | undefined;
  const onSignal = (signal: NodeJS.Signals): void => {
    received ??= signal;
    if (!child) controller.abort();
    else if (child.exitCode === null && child.signalCode === null) child.kill(signal);
  };
  for (const s of FORWARDED) process.on(s, onSignal);
  try {
    let lease: Api.Lease;
    try {
      lease =
        waitMs === null
          ? await ls.acquire(resource, { shared, autoCreate })
          : await ls.acquire(resource, { shared, autoCreate, wait: true, timeout: waitMs, signal: controller.signal });
    } catch (err) {
      const code = errCode(err);
      if (code === 'ABORT_ERR' && received) return 128 + signalNumber(received);
      if (code === 'EBUSY') throw new Exit(`'${path}' is busy${describeHolders(path, err)}`, EX_TEMPFAIL);
      if (code === 'ETIMEDOUT') {
        const seconds = (waitMs ?? 0) / 1000;
        throw new Exit(`timed out after ${seconds} s waiting for '${path}'${describeHolders(path, undefined)}`, EX_TEMPFAIL);
      }
      if (code === 'ENOENT' && !autoCreate) {
        throw new Exit(`'${path}' does not exist (pass --auto-create to create it)`, EX_NOINPUT);
      }
      rethrowArgError('run', err, 'NAME');
    }
    try {
      if (received) return 128 + signalNumber(received); // signalled just as the lock came
      return await new Promise<number>((resolve) => {
        const [command, ...commandArgs] = p.rest;
        child = spawn(command, commandArgs, { stdio: 'inherit' });
        child.on('error', (err: NodeJS.ErrnoException) => {
          const notFound = err.code === 'ENOENT';
          process.stderr.write(`lockspace: ${command}: ${notFound ? 'command not found' : err.message}\n`);
          resolve(notFound ? EX_NOT_FOUND : EX_CANNOT_EXEC);
        });
        child.on('exit', (code, signal) => {
          resolve(signal ? 128 + signalNumber(signal) : (code ?? EX_SOFTWARE));
        });
      });
    } finally {
      await lease.release();
    }
  } finally {
    for (const s of FORWARDED) process.off(s, onSignal);
  }
}

/* ------------------------------------------------------------------ main */

function help(command?: string): number {
  out(command ? HELP[command] : MAIN_HELP);
  return 0;
}

function version(): string {
  for (let dir = __dirname; ; dir = nodePath.dirname(dir)) {
    try {
      const pkg = JSON.parse(fs.readFileSync(nodePath.join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'lockspace') return pkg.version ?? 'unknown';
    } catch {
      // keep looking
    }
    if (nodePath.dirname(dir) === dir) return 'unknown';
  }
}

const COMMANDS: Record<string, (args: string[]) => number | Promise<number>> = { status, run, name };

export async function main(argv: string[]): Promise<number> {
  const [command, ...args] = argv;
  try {
    if (command === undefined) throw usage(undefined, 'missing command');
    if (command === '-h' || command === '--help') return help();
    if (command === '-V' || command === '--version') {
      out(version());
      return 0;
    }
    if (command === 'help') {
      if (args.length === 0) return help();
      if (!(args[0] in HELP)) throw usage(undefined, `unknown command '${args[0]}'`);
      return help(args[0]);
    }
    const fn = Object.prototype.hasOwnProperty.call(COMMANDS, command) ? COMMANDS[command] : undefined;
    if (!fn) throw usage(undefined, `${command.startsWith('-') ? 'unknown option' : 'unknown command'} '${command}'`);
    return await fn(args);
  } catch (err) {
    if (err instanceof Exit) {
      const where = err.command ? `lockspace ${err.command}` : 'lockspace';
      process.stderr.write(`${where}: ${err.message}\n`);
      if (err.status === EX_USAGE) process.stderr.write(`Try '${where} --help' for more information.\n`);
      return err.status;
    }
    process.stderr.write(`lockspace: internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    return EX_SOFTWARE;
  }
}

if (require.main === module) {
  // `lockspace status DIR | head -1`: a closed pipe ends the output, not in a stack trace.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
    process.exit(process.exitCode ?? 0);
  });
  void main(process.argv.slice(2)).then((status) => {
    process.exitCode = status;
  });
}
