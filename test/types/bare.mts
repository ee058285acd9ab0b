// A consumer without @types/node or the DOM library, with exactOptionalPropertyTypes: the declarations
// must compile on their own (checked with skipLibCheck off), and options accept undefined explicitly.
import lockspace, { isLockspaceError, LockSpace, resourceNameForPath, type AcquireOptions } from 'lockspace';

export async function bare(timeout: number | undefined): Promise<void> {
  const ls = LockSpace.open('/d', { lockType: undefined });
  const lease = await ls.acquire('x', { wait: true, timeout, signal: undefined, owner: undefined, shared: undefined });
  await lease.release();
  const options: AcquireOptions = { wait: true, timeout: undefined };
  await ls.acquire('x', options);
  const built = { wait: true, timeout: 5_000 };
  await ls.acquire('x', built);
  // @ts-expect-error -- timeout only with wait
  await ls.acquire('x', { timeout: 5_000 });
  ls.acquireSync('x', { autoCreate: undefined }).releaseSync();
  resourceNameForPath('/x', { canonicalize: undefined });
  lockspace.LockSpace.open(null).acquireSync('/x').releaseSync();
  await ls.locks.request('x', { mode: undefined, ifAvailable: undefined }, () => undefined);
  try {
    ls.acquireSync('x');
  } catch (err) {
    if (isLockspaceError(err, 'EBUSY')) void err.holderPid;
  }
}
