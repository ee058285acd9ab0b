import * as os from 'node:os';
import * as util from 'node:util';

/** Error record produced by the native binding: [errno, syscall, path, detail, busyHere, holderPid]. */
export type SysRecord = [number, string, string, string, boolean, number];
export type NotHeldRecord = ['ERR_LOCK_NOT_HELD', string];
export type ErrorRecord = SysRecord | NotHeldRecord;

const errorMap: Map<number, [string, string]> = util.getSystemErrorMap();
// libuv's map lacks a few errors that fcntl locks can report, network file systems above all
// (Linux numbers where os.constants lacks the name).
for (const [code, linuxErrno, description] of [
  ['EDEADLK', 35, 'resource deadlock would occur'],
  ['ENOLCK', 37, 'no locks available'],
  ['ESTALE', 116, 'stale file handle'],
  ['EBADFD', 77, 'file descriptor in bad state'],
  ['ENOTCONN', 107, 'transport endpoint is not connected'],
  ['EIO', 5, 'input/output error'],
] as const) {
  const errnum = (os.constants.errno as Record<string, number>)[code] ?? (process.platform === 'linux' ? linuxErrno : undefined);
  if (errnum !== undefined && !errorMap.has(-errnum)) errorMap.set(-errnum, [code, description]);
}

/** errno names for numbers libuv's map still lacks. */
const ERRNO_NAMES = new Map(Object.entries(os.constants.errno).map(([name, n]) => [n, name]));

/** The system error codes a LockspaceError can carry (Linux errno names; EUNKNOWN for any other). */
const SYSTEM_CODES = [
  'E2BIG', 'EACCES', 'EADDRINUSE', 'EADDRNOTAVAIL', 'EAFNOSUPPORT', 'EAGAIN', 'EALREADY', 'EBADF', 'EBADFD', 'EBADMSG',
  'EBUSY', 'ECANCELED', 'ECHILD', 'ECONNABORTED', 'ECONNREFUSED', 'ECONNRESET', 'EDEADLK', 'EDESTADDRREQ',
  'EDOM', 'EDQUOT', 'EEXIST', 'EFAULT', 'EFBIG', 'EHOSTUNREACH', 'EIDRM', 'EILSEQ', 'EINPROGRESS', 'EINTR',
  'EINVAL', 'EIO', 'EISCONN', 'EISDIR', 'ELOOP', 'EMFILE', 'EMLINK', 'EMSGSIZE', 'EMULTIHOP', 'ENAMETOOLONG',
  'ENETDOWN', 'ENETRESET', 'ENETUNREACH', 'ENFILE', 'ENOBUFS', 'ENODATA', 'ENODEV', 'ENOENT', 'ENOEXEC',
  'ENOLCK', 'ENOLINK', 'ENOMEM', 'ENOMSG', 'ENOPROTOOPT', 'ENOSPC', 'ENOSR', 'ENOSTR', 'ENOSYS', 'ENOTCONN',
  'ENOTDIR', 'ENOTEMPTY', 'ENOTSOCK', 'ENOTSUP', 'ENOTTY', 'ENXIO', 'EOPNOTSUPP', 'EOVERFLOW', 'EPERM', 'EPIPE',
  'EPROTO', 'EPROTONOSUPPORT', 'EPROTOTYPE', 'ERANGE', 'EROFS', 'ESPIPE', 'ESRCH', 'ESTALE', 'ETIME',
  'ETIMEDOUT', 'ETXTBSY', 'EWOULDBLOCK', 'EXDEV', 'ECHARSET', 'ENONET', 'ESHUTDOWN', 'EOF', 'EHOSTDOWN',
  'EREMOTEIO', 'EFTYPE', 'ESOCKTNOSUPPORT', 'EUNATCH', 'EUNKNOWN',
] as const;

/** The package's own codes: a release (or verify) of what is not held, a lease known lost, the
 *  causes of a loss when the lease's name reaches another file now, or when this process's own lock is
 *  gone (a descriptor of the file closed outside lockspace drops a POSIX lock), an acquire with
 *  `ifGeneration` after another exclusive holder came and went, and a bound set's release refused
 *  while its process runs. */
const PACKAGE_CODES = [
  'ERR_LOCK_NOT_HELD',
  'ERR_LOCK_LOST',
  'ERR_LOCK_FILE_REPLACED',
  'ERR_LOCK_DROPPED',
  'ERR_GENERATION_CHANGED',
  'ERR_BOUND_PROCESS_RUNNING',
] as const;

/** `LockspaceError#code`: a system error code, or one of the package's own (PACKAGE_CODES). */
export type LockspaceErrorCode = (typeof SYSTEM_CODES)[number] | (typeof PACKAGE_CODES)[number];

const KNOWN_CODES: ReadonlySet<string> = new Set<string>([...SYSTEM_CODES, ...PACKAGE_CODES]);

/** `code` as a LockspaceErrorCode: an unknown one becomes EUNKNOWN (libuv's name for it). */
function knownCode(code: string): LockspaceErrorCode {
  return KNOWN_CODES.has(code) ? (code as LockspaceErrorCode) : 'EUNKNOWN';
}

/**
 * Every failure lockspace reports, in the shape of Node's fs errors: `code` (e.g. `'EBUSY'`),
 * `errno` (negative, as in Node), `syscall` and `path` where they apply. (Bad arguments are
 * TypeErrors with Node's ERR_INVALID_ARG_TYPE / ERR_INVALID_ARG_VALUE codes, and
 * an abort is an AbortError, as in Node's own APIs.)
 */
export class LockspaceError extends Error {
  /** `'EBUSY'`, `'ENOENT'`, ... or `'ERR_LOCK_NOT_HELD'`. */
  readonly code: LockspaceErrorCode;
  // `declare`: a field that does not apply is no own property at all (`'holderPid' in err` is
  // false), as in Node's fs errors; a plain field declaration would define each as undefined.
  /** Negative errno, as Node reports it; absent for `ERR_LOCK_NOT_HELD`. */
  declare readonly errno?: number;
  declare readonly syscall?: string;
  declare readonly path?: string;
  /** EBUSY: true when the holder is this process (the lock table), false for another process. */
  declare readonly heldByThisProcess?: boolean;
  /** EBUSY: pid of the other process holding a POSIX lock (from F_GETLK), when the kernel tells it. */
  declare readonly holderPid?: number;
  /** ERR_GENERATION_CHANGED: the last exclusive generation now (0n: none counted in the file). */
  declare readonly generation?: bigint;

  constructor(
    message: string,
    props: {
      /** A LockspaceErrorCode; a new code must be added to that union. */
      code: LockspaceErrorCode | string;
      errno?: number;
      syscall?: string;
      path?: string;
      heldByThisProcess?: boolean;
      holderPid?: number;
      cause?: unknown;
    },
  ) {
    super(message, props.cause === undefined ? undefined : { cause: props.cause });
    this.name = 'LockspaceError';
    this.code = props.code as LockspaceErrorCode;
    if (props.errno !== undefined) this.errno = props.errno;
    if (props.syscall !== undefined) this.syscall = props.syscall;
    if (props.path !== undefined) this.path = props.path;
    if (props.heldByThisProcess !== undefined) this.heldByThisProcess = props.heldByThisProcess;
    if (props.holderPid !== undefined) this.holderPid = props.holderPid;
  }
}

/** True when `err` is a LockspaceError (with this `code`, if given): a type guard for catch blocks. */
export function isLockspaceError(err: unknown): err is LockspaceError;
export function isLockspaceError<C extends LockspaceErrorCode>(err: unknown, code: C): err is LockspaceError & { readonly code: C };
export function isLockspaceError(err: unknown, code?: LockspaceErrorCode): boolean {
  return err instanceof LockspaceError && (code === undefined || err.code === code);
}

/** A Node-style system error: `CODE: description, syscall 'path' (detail)`. */
export function systemError(errnum: number, syscall: string, path?: string, detail?: string): LockspaceError {
  const [name, description] = errorMap.get(-errnum) ?? [ERRNO_NAMES.get(errnum) ?? 'EUNKNOWN', 'unknown error'];
  const code = knownCode(name);
  let message = `${code}: ${description}, ${syscall}`;
  if (path !== undefined && path !== '') message += ` '${path}'`;
  if (detail) message += ` (${detail})`;
  return new LockspaceError(message, { code, errno: -errnum, syscall, path: path || undefined });
}

export function fromRecord(record: ErrorRecord, owner?: unknown): LockspaceError {
  if (record[0] === 'ERR_LOCK_NOT_HELD') {
    const path = record[1];
    const who = owner === undefined ? '' : ` by owner ${JSON.stringify(owner)}`;
    return new LockspaceError(`ERR_LOCK_NOT_HELD: lock not held${who}, release '${path}'`, {
      code: 'ERR_LOCK_NOT_HELD',
      path,
    });
  }
  const [errnum, syscall, path, detail, busyHere, holderPid] = record;
  const err = systemError(errnum, syscall, path, describeHolder(errnum, detail, busyHere, holderPid));
  if (errnum === EBUSY) {
    (err as { heldByThisProcess: boolean }).heldByThisProcess = busyHere;
    if (holderPid > 0) (err as { holderPid: number }).holderPid = holderPid;
  }
  return err;
}

function describeHolder(errnum: number, detail: string, busyHere: boolean, holderPid: number): string {
  if (errnum !== EBUSY || busyHere || holderPid <= 0) return detail;
  return `${detail}, pid ${holderPid}`;
}

const EBUSY = 16;

/** acquire with `ifGeneration`: another exclusive holder came and went since that generation. */
export function generationChangedError(path: string, expected: bigint, last: bigint): LockspaceError {
  const err = new LockspaceError(
    `ERR_GENERATION_CHANGED: the lock's generation is ${last}, not ${expected} (another exclusive holder came and went), acquire '${path}'`,
    { code: 'ERR_GENERATION_CHANGED', syscall: 'acquire', path },
  );
  (err as { generation: bigint }).generation = last;
  return err;
}

/**
 * EDEADLK for a wait that closed a cycle of waits in this process's lock table: `cycle` is each
 * owner (as given to acquire), the file it waits for, and whether the next owner holds that file or
 * (soft) has a request queued ahead in a conflicting mode.
 */
export function deadlockError(path: string, cycle: { owner: unknown; path: string; soft: boolean }[]): LockspaceError {
  const who = (owner: unknown) => `owner ${JSON.stringify(owner)}`;
  const steps = cycle.map((step, i) => {
    const next = cycle[(i + 1) % cycle.length].owner;
    const by = step.soft ? `queued ahead by ${who(next)}` : `held by ${who(next)}`;
    return `${who(step.owner)} waits for '${step.path}', ${by}`;
  });
  return new LockspaceError(`EDEADLK: resource deadlock would occur, acquire '${path}' (a cycle of waits: ${steps.join('; ')})`, {
    code: 'EDEADLK',
    errno: -35,
    syscall: 'acquire',
    path,
  });
}

export function timeoutError(path: string, ms: number): LockspaceError {
  return new LockspaceError(`ETIMEDOUT: timed out waiting for the lock, acquire '${path}' (after ${ms} ms)`, {
    code: 'ETIMEDOUT',
    errno: -110,
    syscall: 'acquire',
    path,
  });
}

/** The standard AbortError Node's own APIs reject with (name 'AbortError', code 'ABORT_ERR'). */
export class AbortError extends Error {
  readonly code = 'ABORT_ERR';
  constructor(message = 'The operation was aborted', options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'AbortError';
  }
}

function describe(value: unknown): string {
  if (value === null) return 'Received null';
  if (value === undefined) return 'Received undefined';
  if (typeof value === 'function') return `Received function ${value.name || '<anonymous>'}`;
  if (typeof value === 'object') {
    const ctor = (value as object).constructor?.name;
    return ctor ? `Received an instance of ${ctor}` : `Received ${util.inspect(value, { depth: -1 })}`;
  }
  let shown = util.inspect(value, { colors: false });
  if (shown.length > 28) shown = `${shown.slice(0, 25)}...`;
  return `Received type ${typeof value} (${shown})`;
}

/** Node's ERR_INVALID_ARG_TYPE. */
export function invalidArgType(name: string, expected: string, actual: unknown): TypeError {
  const err = new TypeError(`The "${name}" argument must be ${expected}. ${describe(actual)}`);
  (err as TypeError & { code: string }).code = 'ERR_INVALID_ARG_TYPE';
  return err;
}

/** Node's ERR_INVALID_ARG_VALUE. */
export function invalidArgValue(name: string, value: unknown, reason: string): TypeError {
  let shown = util.inspect(value, { colors: false });
  if (shown.length > 128) shown = `${shown.slice(0, 128)}...`;
  const err = new TypeError(`The argument '${name}' ${reason}. Received ${shown}`);
  (err as TypeError & { code: string }).code = 'ERR_INVALID_ARG_VALUE';
  return err;
}
