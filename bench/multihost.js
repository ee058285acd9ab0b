#!/usr/bin/env node
/* npm run bench:multihost (root): the cost of locks on shared storage, as ratios within one run.
 * Sets up the multihost GlusterFS cluster (test/multihost/cluster.js), then on host a measures a raw
 * fcntl lock+unlock (python3), a lockspace acquire+release, lease.verify() and ls.inspect(), on the
 * Gluster mount and on the local file system, and tears the cluster down. */
'use strict';
const { spawnSync } = require('child_process');
const path = require('path');
const cluster = require('../test/multihost/cluster');

const ROUNDS_REMOTE = 2000;
const ROUNDS_LOCAL = 200000;

const RAW_PY = `
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600); n = int(sys.argv[2])
for i in range(50): fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0); fcntl.lockf(fd, fcntl.LOCK_UN, 1, 0)
t = time.perf_counter()
for i in range(n): fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0); fcntl.lockf(fd, fcntl.LOCK_UN, 1, 0)
print((time.perf_counter() - t) / n * 1e9)
`;

const LOCKSPACE_JS = `
const { LockSpace } = require(${JSON.stringify(path.join(__dirname, '../dist/lib/index.js'))});
const [dir, n] = [process.argv[1], Number(process.argv[2])];
const ls = LockSpace.open(dir, { checkInterval: 0 });
try { ls.createSync('r'); } catch {}
const ns = (fn, k) => { const t = process.hrtime.bigint(); for (let i = 0; i < k; i++) fn(); return Number(process.hrtime.bigint() - t) / k; };
(async () => {
  ns(() => ls.acquireSync('r').releaseSync(), 50);
  const cycle = ns(() => ls.acquireSync('r').releaseSync(), n);
  const l = ls.acquireSync('r');
  let t = process.hrtime.bigint();
  for (let i = 0; i < n / 10; i++) await l.verify();
  const verify = Number(process.hrtime.bigint() - t) / (n / 10);
  l.releaseSync();
  const inspect = ns(() => ls.inspectSync('r'), n / 10);
  console.log(JSON.stringify({ cycle, verify, inspect }));
})();
`;

function onA(argv) {
  const [cmd, args] = cluster.onHost('a', argv);
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 600_000 });
  if (r.status !== 0) throw new Error(`${argv.join(' ')}: ${r.stderr}`);
  return r.stdout.trim();
}

async function main() {
  if (process.getuid() !== 0) throw new Error('needs root');
  process.on('exit', () => cluster.down());
  for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(130));
  await cluster.up();
  const remoteDir = path.join(cluster.MOUNT, 'bench');
  const localDir = `/tmp/lockspace-bench-${process.pid}`;
  onA(['mkdir', '-p', remoteDir, localDir]);
  try {
    const raw = {
      remote: Number(onA(['python3', '-c', RAW_PY, `${remoteDir}/raw`, String(ROUNDS_REMOTE)])),
      local: Number(onA(['python3', '-c', RAW_PY, `${localDir}/raw`, String(ROUNDS_LOCAL)])),
    };
    const remote = JSON.parse(onA([process.execPath, '-e', LOCKSPACE_JS, remoteDir, String(ROUNDS_REMOTE)]));
    const local = JSON.parse(onA([process.execPath, '-e', LOCKSPACE_JS, localDir, String(ROUNDS_LOCAL)]));
    const us = (x) => (x / 1000).toFixed(x < 10_000 ? 2 : 0).padStart(8);
    const rows = [
      ['raw fcntl lock+unlock (python3)', raw.remote, raw.local],
      ['lockspace acquire+release', remote.cycle, local.cycle],
      ['lease.verify()', remote.verify, local.verify],
      ['ls.inspect()', remote.inspect, local.inspect],
    ];
    console.log(`${'µs per operation'.padEnd(34)} ${'Gluster'.padStart(8)} ${'local'.padStart(8)}  ratio`);
    for (const [what, r, l] of rows) console.log(`${what.padEnd(34)} ${us(r)} ${us(l)}  ${(r / l).toFixed(0)}x`);
    console.log(`lockspace cycle on Gluster / raw lock+unlock on Gluster: ${(remote.cycle / raw.remote).toFixed(2)}`);
  } finally {
    onA(['rm', '-rf', localDir]);
  }
}

main().catch((err) => {
  console.error(err.stack || err.message);
  process.exitCode = 1;
});
