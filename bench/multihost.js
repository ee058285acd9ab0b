#!/usr/bin/env node
/* npm run bench:multihost (root): the cost of locks on shared storage, as ratios within one run.
 * Sets up the multihost GlusterFS cluster (test/multihost/cluster.js), then on host a measures a raw
 * fcntl lock+unlock (python3), a lockspace acquire+release, lease.verify() and ls.inspect(), on the
 * Gluster mount and on the local file system; then how throughput grows from 1 to 8 threads on the
 * mount, for lockspace (worker threads, `await acquire(wait, half shared)` + release on 64 names) and
 * for raw fcntl (python3 threads, lock + stat + unlock, each thread its own file: what the mount itself
 * allows); and tears the cluster down. */
'use strict';
const { spawnSync } = require('child_process');
const path = require('path');
const cluster = require('../test/multihost/cluster');

const ROUNDS_REMOTE = 2000;
const ROUNDS_LOCAL = 200000;
const THREADS = 8;
const THREAD_REPS = 3;
const THREAD_SECONDS = 3;
const THREADS_TARGET = 3; // 8 threads' throughput / 1 thread's on the mount

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

// python3 RAW_THREADS_PY DIR THREADS SECONDS -> ops/s of THREADS threads, each on its own file.
const RAW_THREADS_PY = `
import fcntl, os, sys, time, threading
d, n, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
counts = [0] * n
def work(i):
    path = f"{d}/raw{i}"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    end = time.monotonic() + secs
    while time.monotonic() < end:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0); os.stat(path); fcntl.lockf(fd, fcntl.LOCK_UN, 1, 0)
        counts[i] += 1
threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
for t in threads: t.start()
for t in threads: t.join()
print(sum(counts) / secs)
`;

// node -e LOCKSPACE_THREADS_JS DIR THREADS SECONDS -> ops/s of THREADS worker threads.
const LOCKSPACE_THREADS_JS = `
const { Worker } = require('worker_threads');
const { LockSpace } = require(${JSON.stringify(path.join(__dirname, '../dist/lib/index.js'))});
const [dir, threads, seconds] = [process.argv[1], Number(process.argv[2]), Number(process.argv[3])];
const ls = LockSpace.open(dir, { checkInterval: 0 });
for (let i = 0; i < 64; i++) try { ls.createSync('t' + i); } catch {}
const worker = \`
const { parentPort, workerData } = require('worker_threads');
const { LockSpace } = require(workerData.lib);
const ls = LockSpace.open(workerData.dir, { checkInterval: 0 });
parentPort.once('message', async ({ start, ms }) => {
  while (Date.now() < start);
  let ops = 0;
  while (Date.now() < start + ms) {
    const name = 't' + Math.floor(Math.random() * 64);
    const lease = await ls.acquire(name, { shared: Math.random() < 0.5, wait: true, timeout: 30000 });
    await lease.release();
    ops++;
  }
  parentPort.postMessage(ops);
});
parentPort.postMessage('ready');
\`;
(async () => {
  const lib = ${JSON.stringify(path.join(__dirname, '../dist/lib/index.js'))};
  const workers = await Promise.all(Array.from({ length: threads }, () => new Promise((resolve) => {
    const w = new Worker(worker, { eval: true, workerData: { dir, lib } });
    w.once('message', () => resolve(w));
  })));
  const start = Date.now() + 100;
  const ops = await Promise.all(workers.map((w) => new Promise((resolve) => {
    w.once('message', resolve);
    w.postMessage({ start, ms: seconds * 1000 });
  })));
  console.log(ops.reduce((a, b) => a + b, 0) / seconds);
  await Promise.all(workers.map((w) => w.terminate()));
})();
`;

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

// Per repetition, 1 thread then THREADS threads of each; the ratio is the median of the per-repetition ratios.
function threadScaling(dir) {
  const ratios = { lockspace: [], raw: [] };
  const ops = { lockspace: [], raw: [] };
  for (let rep = 0; rep < THREAD_REPS; rep++) {
    for (const [kind, run] of [
      ['lockspace', (n) => onA([process.execPath, '-e', LOCKSPACE_THREADS_JS, dir, String(n), String(THREAD_SECONDS)])],
      ['raw', (n) => onA(['python3', '-c', RAW_THREADS_PY, dir, String(n), String(THREAD_SECONDS)])],
    ]) {
      const one = Number(run(1));
      const many = Number(run(THREADS));
      ops[kind].push([one, many]);
      ratios[kind].push(many / one);
    }
  }
  return { ratios, ops };
}

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
  onA(['mkdir', '-p', remoteDir, path.join(remoteDir, 'threads'), localDir]);
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
    const scaling = threadScaling(path.join(remoteDir, 'threads'));
    console.log(`\nthroughput on Gluster, ${THREADS} threads / 1 thread (${THREAD_REPS} repetitions of ${THREAD_SECONDS} s; ops/s 1 -> ${THREADS})`);
    for (const kind of ['lockspace', 'raw']) {
      const runs = scaling.ops[kind].map(([one, many]) => `${Math.round(one)} -> ${Math.round(many)}`).join(', ');
      console.log(`${kind.padEnd(10)} ${median(scaling.ratios[kind]).toFixed(2)}x  (${runs})`);
    }
    const measured = median(scaling.ratios.lockspace);
    console.log(
      `target: lockspace ${THREADS} threads / 1 thread >= ${THREADS_TARGET}x: ${measured.toFixed(2)}x ${measured >= THREADS_TARGET ? 'PASS' : 'MISS'}` +
        ` (raw fcntl on the same mount: ${median(scaling.ratios.raw).toFixed(2)}x)`,
    );
  } finally {
    onA(['rm', '-rf', localDir]);
  }
}

main().catch((err) => {
  console.error(err.stack || err.message);
  process.exitCode = 1;
});
