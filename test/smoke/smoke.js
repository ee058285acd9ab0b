'use strict';
// Smoke test of an installed lockspace, run by scripts/ci-portability.sh from a fresh project that
// installed the packed tarball, once per Node.js it proves (and with an arm64 Node under qemu).
// Python's fcntl.lockf, another process, checks every lock from outside.
//   node smoke.js LOCKDIR EXPECTED_BINARY   (EXPECTED_BINARY: the prebuilt file that must be loaded)
// Prints one line "smoke ok: ..." and exits 0, or throws.
const assert = require('assert');
const { execFileSync } = require('child_process');
const fs = require('fs');
const path = require('path');
const { Worker } = require('worker_threads');
const { LockSpace, LockspaceError } = require('lockspace');

const [dir, expectedBinary] = process.argv.slice(2);
const PROBE = `import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
try:
    fcntl.lockf(fd, (fcntl.LOCK_SH if sys.argv[2] == 'shared' else fcntl.LOCK_EX) | fcntl.LOCK_NB, 1, 0)
    print('free')
except OSError:
    print('busy')`;
/** 'busy' or 'free': can another process take the lock (exclusive or shared) on byte 0 of file? */
const probe = (file, mode = 'exclusive') =>
  execFileSync(process.env.PYTHON || 'python3', ['-c', PROBE, file, mode], { encoding: 'utf8' }).trim();

async function main() {
  const ls = LockSpace.open(dir);

  // acquire: held against another process
  ls.createSync('r');
  const lease = await ls.acquire('r');
  assert.strictEqual(probe(lease.path), 'busy');

  // EBUSY: a second acquire in this process fails at once, without opening the file again
  assert.throws(
    () => ls.acquireSync('r'),
    (e) => e instanceof LockspaceError && e.code === 'EBUSY' && e.heldByThisProcess === true,
  );

  // release: free for the other process again
  await lease.release();
  assert.strictEqual(lease.released, true);
  assert.strictEqual(probe(path.join(dir, 'r')), 'free');

  // a wait handed off from a worker thread: the worker holds 'w', the main thread waits for it
  ls.createSync('w');
  const worker = new Worker(
    `const { parentPort, workerData } = require('worker_threads');
     const { LockSpace } = require('lockspace');
     const lease = LockSpace.open(workerData).acquireSync('w');
     parentPort.postMessage('held');
     parentPort.once('message', () => { lease.releaseSync(); parentPort.postMessage('released'); });`,
    { eval: true, workerData: dir },
  );
  await new Promise((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  const waiting = ls.acquire('w', { wait: true, timeout: 60_000 });
  worker.postMessage('release');
  const handedOff = await waiting;
  assert.strictEqual(probe(handedOff.path), 'busy');
  await worker.terminate();
  assert.strictEqual(probe(handedOff.path), 'busy'); // the worker's exit did not drop it
  await handedOff.release();
  assert.strictEqual(probe(handedOff.path), 'free');

  // shared: two owners share one lock; another process can share it but not take it exclusively
  const a = await ls.acquire('s', { shared: true, autoCreate: true, owner: 'a' });
  const b = await ls.acquire('s', { shared: true, autoCreate: true, owner: 'b' });
  assert.strictEqual(probe(a.path, 'shared'), 'free');
  assert.strictEqual(probe(a.path), 'busy');
  await a.release();
  assert.strictEqual(probe(b.path), 'busy');
  await b.release();
  assert.strictEqual(fs.existsSync(path.join(dir, 's')), false); // autoCreate: deleted at the last release

  const loaded = Object.keys(require.cache).filter((k) => k.endsWith('.node'));
  assert.deepStrictEqual(loaded, [fs.realpathSync(expectedBinary)]);
  console.log(`smoke ok: Node.js ${process.version} ${process.arch}, ${path.relative(process.cwd(), loaded[0])}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
