// Type tests through the CommonJS entry point ("require" condition: dist/lib/index.d.ts).
import lockspace = require('lockspace');
import { LockSpace, type Lease } from 'lockspace';

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
function expectType<T extends true>(): T | void {}

expectType<Equal<typeof lockspace.LockSpace, typeof LockSpace>>();

async function usage(): Promise<void> {
  const lease = await LockSpace.open('/locks').acquire('web', { autoCreate: true });
  expectType<Equal<typeof lease, Lease>>();
  await lease.release();
  // @ts-expect-error -- not a function of the package
  lockspace.acquire('web');
}

void usage;
