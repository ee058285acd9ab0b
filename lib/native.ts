import * as fs from 'fs';
import * as path from 'path';
import { elfDamage } from './elf';
import type { ErrorRecord } from './errors';

/** Opaque handle of a lockspace directory in the native table. */
export interface DirHandle {
  readonly __brand: 'DirHandle';
}

export interface NativeStats {
  resources: number;
  leases: number;
  waiters: number;
  kernelWaits: number;
  idleFds: number;
  spareFds: number;
  pendingInThisThread: number;
  /** Bytes allocated with malloc in the whole process (glibc's mallinfo2); absent where the C library
   *  has no mallinfo2 (glibc before 2.33, musl). */
  heapBytes?: number;
}

/**
 * What an acquire call answers: its one shape, built in one place in native/binding.cc ("an acquire's
 * answer") and told apart only by `isQueued` and `isErrorRecord` below.
 * - a number: granted, the lease id (> 0);
 * - an ErrorRecord: failed;
 * - a Queued: it waits.
 */
export type AcquireAnswer = number | ErrorRecord | Queued;

/**
 * An acquire that waits as request `request` (the id `cancel` and `checkDeadlock` take). Its outcome
 * arrives as a Delivery to the dispatcher; when its first attempt runs on the threadpool, `started`
 * is a Promise of that attempt's answer, which comes first: a Queued one there means the outcome
 * comes otherwise (as a Delivery, or through the `cancel` that took the request off).
 */
export interface Queued {
  readonly request: number;
  readonly started: Promise<AcquireAnswer> | undefined;
}

/** A final answer: granted or failed (an acquire that never waits, a queued one's outcome). */
export type AcquireOutcome = Exclude<AcquireAnswer, Queued>;

/** The outcome of a queued request: [request id, granted or failed]. */
export type Delivery = [number, AcquireOutcome];

/** The numbers native code defines and lib passes or reads back (native/binding.cc's `constants`). */
export interface NativeConstants {
  /** Bits of the flags argument of acquire and remove. */
  flags: { shared: number; autoCreate: number; ofd: number };
  /** What verify found: the first field of a VerifyRecord. */
  leaseCheck: { Held: number; NotHeld: number; Error: number; Conflict: number; Unlinked: number; Replaced: number; Dropped: number };
}

/**
 * The N-API binding (native/binding.cc). Results are numbers/undefined, or an ErrorRecord on failure.
 * Each `<name>Async` is `<name>` run on libuv's threadpool (network file systems), as a Promise.
 */
/** [owner key, path, soft]: see Binding#checkDeadlock. */
export type DeadlockStep = [string, string, boolean];

export interface Binding {
  constants: NativeConstants;
  openDir(path: string | null): { handle: DirHandle; path: string | null; remote: boolean } | ErrorRecord;
  acquire(dir: DirHandle, name: string, flags: number, owner: string): AcquireOutcome;
  acquireAsync(dir: DirHandle, name: string, flags: number, owner: string): Promise<AcquireOutcome>;
  /** `awaitedBy`: owners that await this request while it waits (they wait for what it waits for). */
  acquireWait(dir: DirHandle, name: string, flags: number, owner: string, awaitedBy?: string[]): AcquireAnswer;
  /** Queued at once (announced before it goes to the pool), with `started`. */
  acquireWaitAsync(dir: DirHandle, name: string, flags: number, owner: string, awaitedBy?: string[]): Queued;
  cancel(request: number): boolean;
  /** undefined, or the cycle of waits the queued request was in (it is no longer queued): each step
   *  [owner key, path, soft]: the owner waits for path, held (soft: queued ahead) by the next step's. */
  checkDeadlock(request: number): DeadlockStep[] | undefined;
  release(lease: number): boolean;
  releaseAsync(lease: number): Promise<boolean>;
  isHeld(lease: number): boolean;
  releaseByName(dir: DirHandle, name: string, owner: string): undefined | ErrorRecord;
  releaseByNameAsync(dir: DirHandle, name: string, owner: string): Promise<undefined | ErrorRecord>;
  releaseOwner(dir: DirHandle, owner: string): number;
  releaseOwnerAsync(dir: DirHandle, owner: string): Promise<number>;
  create(dir: DirHandle, name: string): undefined | ErrorRecord;
  createAsync(dir: DirHandle, name: string): Promise<undefined | ErrorRecord>;
  remove(dir: DirHandle, name: string, flags: number): undefined | ErrorRecord;
  removeAsync(dir: DirHandle, name: string, flags: number): Promise<undefined | ErrorRecord>;
  resources(dir: DirHandle): [string, string, boolean, boolean, string[]][];
  /** The requests queued through this directory by every thread, oldest first: [name, shared, owner key]. */
  queued(dir: DirHandle): [string, boolean, string][];
  isRemote(dir: DirHandle, name: string): boolean;
  stats(): NativeStats;
  closeIdleFds(): number;
  setIdleLimit(limit: number): void;
  setForceRemote(on: boolean): void;
  /** logExitReleases: NODE_DEBUG=lockspace in a worker, the addon logs what the worker's exit releases. */
  setDispatcher(fn: (batch: Delivery[]) => void, logExitReleases?: boolean): void;
  verify(leases: number[]): VerifyRecord[];
  /** One threadpool job checking every lease given. */
  verifyAsync(leases: number[]): Promise<VerifyRecord[]>;
  inspect(dir: DirHandle, name: string): InspectRecord | ErrorRecord;
  inspectAsync(dir: DirHandle, name: string): Promise<InspectRecord | ErrorRecord>;
  /** The kernel's answer about byte 0 of each file, from a thread with a descriptor table of its own;
   *  with `records`, each held file's live holder records too. */
  queryLocks(paths: (string | Uint8Array)[], records?: boolean): LockQueryRecord[];
  /** Writes the holder record of a lease just granted (native/core/holder_record.h). */
  writeRecord(lease: number, label: string, ifGeneration: bigint | undefined): WriteRecordResult | ErrorRecord;
  writeRecordAsync(lease: number, label: string, ifGeneration: bigint | undefined): Promise<WriteRecordResult | ErrorRecord>;
}

/** What writeRecord did (an object: error records are arrays). */
export interface WriteRecordResult {
  /** Exclusive: this grant's generation; shared: the last exclusive one's. */
  generation: bigint;
  /** ifGeneration is not the last exclusive generation: nothing was written. */
  changed: boolean;
  /** The last exclusive generation before this grant (0n: none counted). */
  last: bigint;
  /** false: every record slot is taken by other holders (the grant stands, without a record). */
  recorded: boolean;
}

/** [exclusive, generation, since (ms after the epoch), pid, host, machineId, label, startTime] */
export type HolderRecordRow = [boolean, bigint, number, number, string, string, string, bigint];

/** The holder records read from a file: the live ones, and the last exclusive generation (0n: none). */
export interface RecordsRecord {
  errno: number;
  syscall: string;
  generation: bigint;
  live: HolderRecordRow[];
}

/** [errno (0: asked), syscall that failed, state, pid of the lock found (0: not visible here, -1: OFD),
 *  major, minor, ino of the file opened, on a network file system, its records (when asked)] */
export type LockQueryRecord = [
  number,
  string,
  'free' | 'shared' | 'exclusive',
  number,
  number,
  number,
  string,
  boolean,
  RecordsRecord?,
];

/** [check (a constants.leaseCheck value), errno (error), syscall (error), path of the lease's name] */
export type VerifyRecord = [number, number, string, string];

/** The native inspect result: the file the name reaches, the kernel's answer to a lock query (local
 *  file systems: lock*, or queryErrno when it could not be asked; network ones: other*), and this
 *  process's table view. */
export interface InspectRecord {
  path: string;
  major: number;
  minor: number;
  ino: string;
  remote: boolean;
  queryErrno: number;
  querySyscall: string;
  lockState: 'free' | 'shared' | 'exclusive';
  /** 0: a process this pid namespace cannot see; -1: an OFD lock. */
  lockPid: number;
  otherHeld: boolean;
  otherShared: boolean;
  otherOfd: boolean;
  held: boolean;
  heldShared: boolean;
  heldOfd: boolean;
  owners: string[];
  waiters: number;
  records: RecordsRecord;
}

type BindingsOptions = { bindings: string; module_root: string; prebuild?: string; try: string[][] };
type Bindings = ((opts: BindingsOptions) => Binding) & { getRoot(file: string): string };

/** The C library this process runs on: Node's report names the glibc it loaded, and nothing on musl. */
function runningLibc(): 'glibc' | 'musl' {
  // excludeNetwork (Node >= 20.13) skips the report's slow socket scan: only its header is read here.
  const report = process.report as NodeJS.ProcessReport & { excludeNetwork?: boolean };
  const excludeNetwork = report.excludeNetwork;
  if (typeof excludeNetwork === 'boolean') report.excludeNetwork = true;
  try {
    const header = (report.getReport() as { header?: { glibcVersionRuntime?: string } }).header;
    return header?.glibcVersionRuntime ? 'glibc' : 'musl';
  } finally {
    if (typeof excludeNetwork === 'boolean') report.excludeNetwork = excludeNetwork;
  }
}

/** Another copy of lockspace in this process owns the lock table and this one cannot join it: no
 *  other binary of this copy would do better (native/core/shared_table.h). */
function incompatibleCopy(err: unknown): void {
  if ((err as { code?: unknown }).code === 'ERR_LOCKSPACE_INCOMPATIBLE_COPY') throw err;
}

/** Why `bindings` gave up: it found no file (then it lists what it tried), or a file did not load. */
function reason(err: unknown): string {
  if (Array.isArray((err as { tries?: unknown }).tries)) return 'not found';
  return err instanceof Error ? err.message.replace(/\s*\n\s*/g, ' ') : String(err);
}

/**
 * Loads the addon through `bindings`, with the package's own root and try-list: first a local build
 * (`build/Release`, `build/Debug`: a checkout's node-gyp build, or `npm run build-from-source` in an
 * installed package), then the prebuilt binary shipped in the package for this CPU and C library,
 * `prebuilds/linux-<x64|arm64>-<glibc|musl>/lockspace.node` (scripts/build-prebuilds.js). A local build
 * that exists but does not load (built for another Node or libc, say), or is not a whole ELF file
 * (truncated: dlopen would crash the process, see elf.ts), is passed over for the prebuilt one. With
 * neither, the error names each file, why it did not load, and how to build from source.
 */
function load(): Binding {
  const chosen = process.env.LOCKSPACE_BINARY;
  if (chosen) {
    loadedFrom = path.dirname(path.resolve(chosen));
    return loadChosen(chosen);
  }
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const bindings = require('bindings') as Bindings;
  const moduleRoot = bindings.getRoot(__filename); // the package directory: dist/lib/ and lib/ both lie below it
  const attempt = (tries: string[][], prebuild?: string): Binding =>
    bindings({ bindings: 'lockspace', module_root: moduleRoot, prebuild, try: tries });
  const localFailures: string[] = [];
  for (const type of ['Release', 'Debug']) {
    const file = path.join(moduleRoot, 'build', type, 'lockspace.node');
    if (!fs.existsSync(file)) continue;
    const damage = elfDamage(file);
    if (damage) {
      localFailures.push(`${file}: ${damage}`);
      continue;
    }
    try {
      const loaded = attempt([['module_root', 'build', type, 'bindings']]);
      loadedFrom = path.dirname(file);
      return loaded;
    } catch (err) {
      incompatibleCopy(err);
      localFailures.push(reason(err));
    }
  }
  const localFailure = localFailures.join('; ') || 'not found';
  const target = `${process.platform}-${process.arch}-${runningLibc()}`;
  let prebuiltFailure: string;
  try {
    const loaded = attempt([['module_root', 'prebuilds', 'prebuild', 'bindings']], target);
    loadedFrom = path.join(moduleRoot, 'prebuilds', target);
    return loaded;
  } catch (err) {
    incompatibleCopy(err);
    prebuiltFailure = reason(err);
  }
  const file = (...parts: string[]) => path.join(moduleRoot, ...parts, 'lockspace.node');
  throw new Error(
    `lockspace: no native addon loads on ${target} (Node.js ${process.version}).\n` +
      `  prebuilt binary ${file('prebuilds', target)}: ${prebuiltFailure}\n` +
      `  local build ${file('build', 'Release')}: ${localFailure}\n` +
      'Prebuilt binaries cover linux-x64 and linux-arm64 with glibc 2.28 or later, or musl. ' +
      'To build the addon from source (needs python3, make and a C++17 compiler), run: ' +
      `cd ${moduleRoot} && npm run build-from-source`,
  );
}

/**
 * LOCKSPACE_BINARY=FILE loads exactly that addon (a path relative to the working directory, or
 * absolute) and nothing else: the test suites run against a packed tarball's prebuilt binary this way.
 * A file that does not load is an error, never a fall-back to another binary.
 */
function loadChosen(file: string): Binding {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require(path.resolve(file)) as Binding;
  } catch (err) {
    incompatibleCopy(err);
    throw new Error(`lockspace: LOCKSPACE_BINARY=${file} does not load: ${reason(err)}`, { cause: err });
  }
}

/** The directory of the addon loaded: the holder of bound sets (lockspace-holder) is built and shipped
 *  beside it, so the two always come from one build. */
let loadedFrom = '';

/** The binding's exports, copied into a plain object: the addon's exports object is in V8's slow
 *  (dictionary) mode, and every call through it would pay for a slow property load. */
export const binding: Binding = { ...load() };

/** The holder program of bound sets (native/holder), beside the addon loaded. */
export const HOLDER_PROGRAM = path.join(loadedFrom, 'lockspace-holder');

/** The flag bits of acquire and remove. */
export const FLAGS = binding.constants.flags;

/** What verify found (native LeaseCheck). */
export const LeaseCheck = binding.constants.leaseCheck;

export function isErrorRecord(value: unknown): value is ErrorRecord {
  return Array.isArray(value);
}

/** Whether an acquire's answer is queued: neither a number (granted) nor an array (failed). */
export function isQueued(answer: AcquireAnswer): answer is Queued {
  return typeof answer === 'object' && !isErrorRecord(answer);
}
