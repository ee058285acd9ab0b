// ESM half of the smoke test (see smoke.js): `import` from the installed package gives the same
// module instance as `require`, and its lock is seen from another process.
//   node smoke.mjs LOCKDIR
import assert from 'node:assert';
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { LockSpace, LockspaceError, resourceNameForPath } from 'lockspace';

const require = createRequire(import.meta.url);
assert.strictEqual(require('lockspace').LockSpace, LockSpace);
assert.strictEqual(require('lockspace').LockspaceError, LockspaceError);

const lease = await LockSpace.open(process.argv[2]).acquire(resourceNameForPath('/disk.img', { canonicalize: false }), {
  autoCreate: true,
});
const probe = `import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
try:
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0)
    print('free')
except OSError:
    print('busy')`;
assert.strictEqual(execFileSync(process.env.PYTHON || 'python3', ['-c', probe, lease.path], { encoding: 'utf8' }).trim(), 'busy');
await lease.release();
console.log(`smoke esm ok: Node.js ${process.version} ${process.arch}`);
