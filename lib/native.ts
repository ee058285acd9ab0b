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
  /** Bytes allocated with malloc in the whole process (glibc mallinfo2). */
  heapBytes: number;
}

/** [request id, lease id (0 on failure), error record or undefined] */
export type Delivery = [number, number, ErrorRecord | undefined];

/** The N-API binding (native/binding.cc). Results are numbers/undefined, or an ErrorRecord on failure. */
export interface Binding {
  openDir(path: string | null): { handle: DirHandle; path: string | null; remote: boolean } | ErrorRecord;
  acquire(dir: DirHandle, name: string, flags: number, owner: string): number | ErrorRecord;
  acquireAsync(dir: DirHandle, name: string, flags: number, owner: string): Promise<number | ErrorRecord>;
  acquireWait(dir: DirHandle, name: string, flags: number, owner: string): number | ErrorRecord;
  /** [request id, lease id | 0 (queued: the outcome comes to the dispatcher) | -1 (cancelled) | error] */
  acquireWaitAsync(
    dir: DirHandle,
    name: string,
    flags: number,
    owner: string,
  ): [number, Promise<number | ErrorRecord>];
  cancel(request: number): boolean;
  release(lease: number): boolean;
  releaseAsync(lease: number): Promise<number>;
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
  isRemote(dir: DirHandle, name: string): boolean;
  stats(): NativeStats;
  closeIdleFds(): number;
  setIdleLimit(limit: number): void;
  setForceRemote(on: boolean): void;
  setDispatcher(fn: (batch: Delivery[]) => void): void;
  verify(lease: number): VerifyRecord;
  /** One threadpool job checking every lease given. */
  verifyAsync(leases: number[]): Promise<VerifyRecord[]>;
  inspect(dir: DirHandle, name: string): InspectRecord | ErrorRecord;
  inspectAsync(dir: DirHandle, name: string): Promise<InspectRecord | ErrorRecord>;
}

/** What verify found (native LeaseCheck). */
export const LeaseCheck = { Held: 0, NotHeld: 1, Error: 2, Conflict: 3, Unlinked: 4, Replaced: 5 } as const;
export type LeaseCheck = (typeof LeaseCheck)[keyof typeof LeaseCheck];

/** [check, errno (Error), syscall (Error), path of the lease's name] */
export type VerifyRecord = [LeaseCheck, number, string, string];

/** The native inspect result: the file the name reaches, a network file system's answer to a lock
 *  query (other*), and this process's table view. */
export interface InspectRecord {
  path: string;
  major: number;
  minor: number;
  ino: string;
  remote: boolean;
  otherHeld: boolean;
  otherShared: boolean;
  otherOfd: boolean;
  held: boolean;
  heldShared: boolean;
  heldOfd: boolean;
  owners: string[];
  waiters: number;
}

export const SHARED = 1;
export const AUTO_CREATE = 2;
export const OFD = 4;

/**
 * Loads the addon through `bindings`, trying the prebuilt N-API binary shipped in the package
 * (`prebuilds/<platform>-<arch>/lockspace.node`, built by scripts/build-prebuild.js) before a local
 * node-gyp build (`build/Release`, `build/Debug`). A prebuilt binary that exists but cannot be loaded
 * here (another libc, say) is passed over for a local build. With neither, the error says how to build.
 */
function load(): Binding {
  type BindingsOptions = { bindings: string; module_root: string; prebuild: string; try: string[][] };
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const bindings = require('bindings') as ((opts: BindingsOptions) => Binding) & { getRoot(file: string): string };
  const moduleRoot = bindings.getRoot(__filename); // the package directory: dist/lib/ and lib/ both lie below it
  const platform = `${process.platform}-${process.arch}`;
  const local = [
    ['module_root', 'build', 'Release', 'bindings'],
    ['module_root', 'build', 'Debug', 'bindings'],
  ];
  const attempt = (tries: string[][]): Binding =>
    bindings({ bindings: 'lockspace', module_root: moduleRoot, prebuild: platform, try: tries });
  let cause: unknown;
  try {
    return attempt([['module_root', 'prebuilds', 'prebuild', 'bindings'], ...local]);
  } catch (err) {
    cause = err;
  }
  // `bindings` stops at the first file that exists but fails to load; give a local build its turn.
  if (!Array.isArray((cause as { tries?: unknown }).tries)) {
    try {
      return attempt(local);
    } catch {
      // report the first failure
    }
  }
  const inPackage = moduleRoot.split(/[\\/]/).includes('node_modules');
  const how = inPackage
    ? `let npm run its install script, which builds it: \`npm install-scripts approve lockspace && npm rebuild lockspace\`, ` +
      `or run that script yourself: \`cd ${moduleRoot} && npm run install\``
    : `run \`npm run build:native\` in ${moduleRoot}`;
  const detail = cause instanceof Error ? cause.message.replace(/\s*\n\s*/g, ' ') : String(cause);
  throw new Error(
    `lockspace: no native addon that loads on ${platform} (Node.js ${process.version}): ${detail}. ` +
      `To build it from source (needs python3, make and a C++17 compiler), ${how}.`,
    { cause },
  );
}

export const binding: Binding = load();

export function isErrorRecord(value: unknown): value is ErrorRecord {
  return Array.isArray(value);
}
