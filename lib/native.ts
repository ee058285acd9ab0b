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
  cancel(request: number): boolean;
  release(lease: number): boolean;
  releaseAsync(lease: number): Promise<number>;
  isHeld(lease: number): boolean;
  releaseByName(dir: DirHandle, name: string, owner: string): undefined | ErrorRecord;
  releaseOwner(dir: DirHandle, owner: string): number;
  create(dir: DirHandle, name: string): undefined | ErrorRecord;
  createAsync(dir: DirHandle, name: string): Promise<undefined | ErrorRecord>;
  remove(dir: DirHandle, name: string, flags: number): undefined | ErrorRecord;
  removeAsync(dir: DirHandle, name: string, flags: number): Promise<undefined | ErrorRecord>;
  resources(dir: DirHandle): [string, string, boolean, boolean, string[]][];
  isRemote(dir: DirHandle, name: string): boolean;
  stats(): NativeStats;
  closeIdleFds(): number;
  setIdleLimit(limit: number): void;
  setDispatcher(fn: (batch: Delivery[]) => void): void;
}

export const SHARED = 1;
export const AUTO_CREATE = 2;
export const OFD = 4;

function load(): Binding {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require('bindings')('lockspace') as Binding;
  } catch (cause) {
    throw new Error(
      'lockspace: the native addon could not be loaded. Build it with `npm rebuild lockspace` ' +
        '(or `npx node-gyp rebuild` in the package directory; needs python3, make and a C++17 compiler).',
      { cause },
    );
  }
}

export const binding: Binding = load();

export function isErrorRecord(value: unknown): value is ErrorRecord {
  return Array.isArray(value);
}
