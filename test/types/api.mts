// Type tests of the public API through the ESM entry point: what must compile, and (with
// `@ts-expect-error`, which fails the check when the line compiles) what must not.
import lockspace, {
  AbortError,
  BoundSet,
  isLockspaceError,
  Lease,
  LeaseSet,
  LockSpace,
  LockspaceError,
  resourceNameForPath,
  webLockFileName,
  type Lock,
  type LockManagerSnapshot,
  type LockspaceErrorCode,
  type AcquireOptions,
  type AcquireSyncOptions,
  type BoundTo,
  type HoldForOptions,
  type InspectInfo,
  type LockHolder,
  type LockRequest,
  type LockSpaceOptions,
  type LockType,
  type Owner,
  type ResourceInfo,
  type ResourceNameOptions,
  type HolderRecord,
  type AcquireAllOptions,
} from 'lockspace';

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
function expectType<T extends true>(): T | void {}

// The default export is the same module as the named exports (as Node gives for CommonJS).
expectType<Equal<typeof lockspace.LockSpace, typeof LockSpace>>();

async function usage(signal: AbortSignal): Promise<void> {
  const ls = LockSpace.open('/var/lib/myapp/locks');
  const pathMode = LockSpace.open(null, { lockType: 'ofd' });
  expectType<Equal<typeof ls.directory, string | null>>();
  expectType<Equal<typeof ls.lockType, LockType>>();
  expectType<Equal<LockType, 'posix' | 'ofd'>>();
  expectType<Equal<Owner, number | string>>();

  const lease = await ls.acquire('web', { shared: true, autoCreate: true, owner: 'job-1', wait: true, timeout: 5000, signal });
  expectType<Equal<typeof lease, Lease>>();
  expectType<Equal<typeof lease.name, string>>();
  expectType<Equal<typeof lease.path, string>>();
  expectType<Equal<typeof lease.shared, boolean>>();
  expectType<Equal<typeof lease.owner, Owner>>();
  expectType<Equal<typeof lease.released, boolean>>();
  expectType<Equal<ReturnType<typeof lease.release>, Promise<void>>>();
  expectType<Equal<typeof lease.signal, AbortSignal>>();
  expectType<Equal<ReturnType<typeof lease.verify>, Promise<void>>>();
  const info = await ls.inspect('web');
  expectType<Equal<typeof info, InspectInfo>>();
  expectType<Equal<typeof info.state, 'free' | 'shared' | 'exclusive' | 'unknown'>>();
  expectType<Equal<typeof info.error, LockspaceError | undefined>>();
  expectType<Equal<typeof info.holders, LockHolder[]>>();
  expectType<Equal<LockHolder, { pid: number | null; mode: 'shared' | 'exclusive'; kind: LockType; boundTo?: BoundTo }>>();
  expectType<Equal<BoundTo, { pid: number; command: string | null; holderPid: number; state: 'held' | 'lost' }>>();

  const bound = await ls.holdFor(4242, ['disk', { name: 'iso', shared: true }], { wait: true, timeout: 5000, onLost: 'term', graceMs: 1000 });
  expectType<Equal<typeof bound, BoundSet>>();
  expectType<Equal<typeof bound.pid, number>>();
  expectType<Equal<typeof bound.holderPid, number>>();
  expectType<Equal<typeof bound.names, readonly string[]>>();
  expectType<Equal<typeof bound.state, 'held' | 'lost' | 'ended'>>();
  expectType<Equal<ReturnType<typeof bound.release>, Promise<void>>>();
  expectType<Equal<ReturnType<typeof ls.boundSets>, Promise<BoundSet[]>>>();
  await bound.release({ force: true });
  const holdOptions: HoldForOptions = { onLost: 'none', checkInterval: 500, fenceAfter: 2000 };
  void holdOptions;
  // A wait decided at run time (wait a boolean) takes timeout and signal; refused at run time without it.
  const waitNow: boolean = holdOptions.onLost === 'none';
  await ls.holdFor(4242, ['disk'], { wait: waitNow, timeout: 100, signal: new AbortController().signal });
  await ls.holdFor(4242, ['disk'], { wait: true, signal: new AbortController().signal });
  // @ts-expect-error -- timeout only with wait: true, as for acquire
  await ls.holdFor(4242, ['disk'], { timeout: 10 });
  // @ts-expect-error -- signal only with wait: true, as for acquire
  await ls.holdFor(4242, ['disk'], { signal: new AbortController().signal });
  // @ts-expect-error -- timeout only with wait (undefined is no wait)
  await ls.holdFor(4242, ['disk'], { wait: undefined, timeout: 10 });
  const holdNoWait = { onLost: 'none' as const, timeout: 10 };
  // @ts-expect-error -- timeout only with wait, also from a variable
  await ls.holdFor(4242, ['disk'], holdNoWait);
  // @ts-expect-error onLost is 'kill', 'term' or 'none'
  await ls.holdFor(4242, ['disk'], { onLost: 'restart' });
  expectType<Equal<ReturnType<typeof ls.inspectSync>, InspectInfo>>();
  LockSpace.open('/var/lib/myapp/locks', { checkInterval: 0 });
  LockSpace.open('/var/lib/myapp/locks', { deadlockTimeout: Infinity });
  await (await ls.acquire('web', { wait: true, deadlockTimeout: 200 })).release();
  lease.releaseSync();

  const sync = ls.acquireSync('web', { owner: 7 });
  expectType<Equal<typeof sync, Lease>>();
  sync.releaseSync();
  {
    using _held = pathMode.acquireSync('/srv/disk.img');
  }
  {
    await using _held = await ls.acquire('web');
  }

  // Lock sets: names, or names with their own `shared`; acquire's options.
  const set = await ls.acquireAll(['a', { name: 'b', shared: true }], { autoCreate: true, wait: true, timeout: 5000, signal });
  expectType<Equal<typeof set, LeaseSet>>();
  expectType<Equal<typeof set.leases, readonly Lease[]>>();
  expectType<Equal<typeof set.signal, AbortSignal>>();
  expectType<Equal<ReturnType<typeof set.release>, Promise<void>>>();
  set.releaseSync();
  const requests: LockRequest[] = ['a', { name: 'b' }, { name: 'c', shared: undefined }];
  expectType<Equal<ReturnType<typeof ls.acquireAllSync>, LeaseSet>>();
  {
    using _held = ls.acquireAllSync(requests, { owner: 'vm-1' });
  }
  {
    await using _held = await ls.acquireAll(requests);
  }

  expectType<Equal<ReturnType<typeof ls.releaseOwner>, Promise<number>>>();
  expectType<Equal<ReturnType<typeof ls.releaseOwnerSync>, number>>();
  expectType<Equal<ReturnType<typeof ls.resources>, ResourceInfo[]>>();
  expectType<Equal<ResourceInfo['owners'], Owner[]>>();
  expectType<Equal<ReturnType<typeof LockSpace.closeIdleFds>, number>>();
  await ls.create('a');
  ls.createSync('b');
  await ls.delete('a');
  ls.deleteSync('b');
  await ls.release('web', 'job-1');
  ls.releaseSync('web');

  expectType<Equal<ReturnType<typeof resourceNameForPath>, string>>();
  resourceNameForPath('/images/web.qcow2', { canonicalize: false });
  expectType<Equal<ReturnType<typeof webLockFileName>, string>>();
  expectType<Equal<typeof lockspace.webLockFileName, typeof webLockFileName>>();

  const opts: AcquireOptions = { wait: true };
  const syncOpts: AcquireSyncOptions = { shared: true };
  const openOpts: LockSpaceOptions = { lockType: 'posix' };
  const nameOpts: ResourceNameOptions = {};
  void [opts, syncOpts, openOpts, nameOpts];

  try {
    await ls.acquire('web');
  } catch (err) {
    if (err instanceof LockspaceError) {
      expectType<Equal<typeof err.code, LockspaceErrorCode>>();
      if (err.code === 'EBUSY' || err.code === 'ERR_LOCK_NOT_HELD' || err.code === 'ETIMEDOUT') void err;
      expectType<Equal<typeof err.errno, number | undefined>>();
      expectType<Equal<typeof err.syscall, string | undefined>>();
      expectType<Equal<typeof err.path, string | undefined>>();
      expectType<Equal<typeof err.heldByThisProcess, boolean | undefined>>();
      expectType<Equal<typeof err.holderPid, number | undefined>>();
    } else if (err instanceof AbortError) {
      expectType<Equal<typeof err.code, 'ABORT_ERR'>>();
    }
  }
}

async function conventions(ls: LockSpace, err: unknown, signal: AbortSignal): Promise<void> {
  if (isLockspaceError(err, 'EBUSY')) expectType<Equal<typeof err.code, 'EBUSY'>>();
  if (isLockspaceError(err)) expectType<Equal<typeof err, LockspaceError>>();
  const result = await ls.locks.request('job', (lock) => {
    expectType<Equal<typeof lock, Lock | null>>();
    return 42;
  });
  expectType<Equal<typeof result, number>>();
  const shared = await ls.locks.request('job', { mode: 'shared', ifAvailable: true }, async (lock) => lock?.mode);
  expectType<Equal<typeof shared, 'exclusive' | 'shared' | undefined>>();
  await ls.locks.request('job', { signal }, () => undefined);
  expectType<Equal<Awaited<ReturnType<typeof ls.locks.query>>, LockManagerSnapshot>>();
  // Options built in a variable: `wait` is `boolean` there, and timeout/signal are checked at run
  // time (a TypeError unless wait is true).
  const built = { wait: true, timeout: 5_000 };
  await ls.acquire('web', built);
  const withSignal = { shared: true, wait: Math.random() > 0.5, signal };
  await ls.acquire('web', withSignal);
  // Options accept undefined explicitly.
  await ls.acquire('web', { wait: true, timeout: undefined, signal: undefined, owner: undefined });
  await ls.acquire('web', { wait: undefined, shared: undefined, autoCreate: undefined });
}

async function misuse(ls: LockSpace, lease: Lease): Promise<void> {
  const err = await ls.acquire('web').then(() => undefined, (e: LockspaceError) => e);
  // @ts-expect-error -- no such code: a misspelt code does not compile
  if (err?.code === 'EBSUY') return;
  // @ts-expect-error -- timeout only with wait: true
  await ls.acquire('web', { timeout: 10 });
  // @ts-expect-error -- signal only with wait: true
  await ls.acquire('web', { signal: new AbortController().signal });
  // @ts-expect-error -- deadlockTimeout only with wait: true
  await ls.acquire('web', { deadlockTimeout: 200 });
  // @ts-expect-error -- timeout only with wait (undefined is no wait)
  await ls.acquire('web', { wait: undefined, timeout: 10 });
  const noWait = { timeout: 10 };
  // @ts-expect-error -- timeout only with wait, also from a variable
  await ls.acquire('web', noWait);
  // @ts-expect-error -- not a code lockspace produces
  isLockspaceError(lease, 'EBSUY');
  // @ts-expect-error -- steal is not supported
  await ls.locks.request('job', { steal: true }, () => 1);
  // @ts-expect-error -- Web Locks modes are 'exclusive' and 'shared'
  await ls.locks.request('job', { mode: 'read' }, () => 1);
  // @ts-expect-error -- test hooks are not in the public entry
  lockspace._debug.stats();
  // @ts-expect-error -- the constructor is private: use LockSpace.open
  new LockSpace();
  // @ts-expect-error -- a directory is required (null for path mode)
  LockSpace.open();
  // @ts-expect-error -- unknown lock type
  LockSpace.open('/d', { lockType: 'flock' });
  // @ts-expect-error -- misspelt option
  await ls.acquire('web', { autocreate: true });
  // @ts-expect-error -- acquireSync never waits
  ls.acquireSync('web', { wait: true });
  // @ts-expect-error -- timeout is in milliseconds, a number
  await ls.acquire('web', { wait: true, timeout: '5s' });
  // @ts-expect-error -- owners are numbers or strings
  await ls.acquire('web', { owner: { id: 1 } });
  // @ts-expect-error -- names are strings
  ls.acquireSync(42);
  // @ts-expect-error -- acquire returns a Promise, not a Lease
  (ls.acquire('web') as Lease).releaseSync();
  // @ts-expect-error -- leases are read-only
  lease.name = 'other';
  // @ts-expect-error -- released is a getter only
  lease.released = true;
  // @ts-expect-error -- the directory is fixed
  ls.directory = '/elsewhere';
  // @ts-expect-error -- resourceNameForPath takes a path string
  resourceNameForPath(Buffer.from('/x'));
  // @ts-expect-error -- unknown option
  resourceNameForPath('/x', { canonicalise: false });
  // @ts-expect-error -- acquireAllSync never waits
  ls.acquireAllSync(['a', 'b'], { wait: true });
  // @ts-expect-error -- timeout only with wait: true, as for acquire
  await ls.acquireAll(['a', 'b'], { timeout: 10 });
  // @ts-expect-error -- a request is a name or { name, shared }
  await ls.acquireAll(['a', { name: 'b', mode: 'shared' }]);
  // @ts-expect-error -- the requests are an array
  await ls.acquireAll('a');
  // @ts-expect-error -- a set's members each have a generation of their own
  await ls.acquireAll(['a'], { ifGeneration: 1n });
  // @ts-expect-error -- ifGeneration is a bigint (a lease.generation)
  await ls.acquire('a', { ifGeneration: 1 });
  // @ts-expect-error -- generation is read-only
  lease.generation = 2n;
  // @ts-expect-error -- lease sets come from acquireAll/acquireAllSync only
  new LeaseSet(Symbol('lockspace.leaseSet'), [], []);
  // @ts-expect-error -- leases come from acquire/acquireSync only
  new Lease(Symbol('lockspace.lease'), 1, 'web', '/locks/', false, 0, false);
}

void usage;
void conventions;
void misuse;

// Holder records: the options, the lease's generation, inspect's records.
async function records(): Promise<void> {
  const ls = LockSpace.open('/locks', { records: true });
  expectType<Equal<typeof ls.records, boolean>>();
  const lease = await ls.acquire('disk', { label: 'vm-42', wait: true, timeout: 1000 });
  expectType<Equal<typeof lease.generation, bigint | null>>();
  const again = ls.acquireSync('disk', { ifGeneration: lease.generation ?? 0n, label: 'vm-42' });
  const set = await ls.acquireAll(['a', 'b'], { label: 'vm-42' } satisfies AcquireAllOptions);
  const info = await ls.inspect('disk');
  const first: HolderRecord | undefined = info.records[0];
  expectType<Equal<typeof info.generation, bigint | null>>();
  if (first) {
    expectType<Equal<typeof first.host, string>>();
    expectType<Equal<typeof first.pid, number>>();
    expectType<Equal<typeof first.label, string | null>>();
    expectType<Equal<typeof first.since, Date>>();
    expectType<Equal<typeof first.generation, bigint | null>>();
  }
  try {
    await ls.acquire('disk', { ifGeneration: 1n });
  } catch (err) {
    if (isLockspaceError(err, 'ERR_GENERATION_CHANGED')) expectType<Equal<typeof err.generation, bigint | undefined>>();
  }
  again.releaseSync();
  set.releaseSync();
}
void records;
