#!/usr/bin/env node
'use strict';
// `node test/stress/deadlock.js [options]`: no false EDEADLK. W worker threads take N acquisitions
// between them, all with `wait`, on R resources of one lockspace whose deadlockTimeout is tiny (so that
// nearly every wait that meets contention runs the deadlock search, many times): chains of 1-3
// resources taken one by one while holding the earlier ones (shared or exclusive), lease sets
// (acquireAll, any order) and nested ls.locks requests (a callback requesting the next name). Every
// worker takes its resources in one global order, so no cycle of waits can ever close: a single
// EDEADLK is a false one. While held, each resource's holders are counted in shared memory (an
// exclusive holder alone, shared holders together).
//
// Options: --workers W (8) --acquisitions N (100000, in all) --resources R (6) --deadlock-timeout MS (1)
//          --seed S (random)
//          --any-order (control: chains and nested requests take their resources in random order, so
//          real deadlocks happen; each must be broken by one EDEADLK, and the run must still finish)
// Prints one JSON line; exit status 0 when no EDEADLK came (with --any-order: some came) and no
// exclusion was broken.
const fs = require('fs');
const os = require('os');
const path = require('path');
const { performance } = require('perf_hooks');
const { isMainThread, Worker, workerData, parentPort, threadId } = require('worker_threads');

const LIB = path.resolve(__dirname, '../../dist/lib/index.js');

function parseArgs(argv) {
  const o = {
    workers: 8,
    acquisitions: 100000,
    resources: 6,
    deadlockTimeout: 1,
    seed: Math.floor(Math.random() * 2 ** 31),
    anyOrder: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const next = () => Number(argv[++i]);
    switch (argv[i]) {
      case '--workers': o.workers = next(); break;
      case '--acquisitions': o.acquisitions = next(); break;
      case '--resources': o.resources = next(); break;
      case '--deadlock-timeout': o.deadlockTimeout = next(); break;
      case '--seed': o.seed = next(); break;
      case '--any-order': o.anyOrder = true; break;
      default: throw new Error(`unknown option ${argv[i]}`);
    }
  }
  return o;
}

async function worker() {
  const { LockSpace } = require(LIB);
  const cfg = workerData;
  let seed = (cfg.seed + threadId * 7919) >>> 0;
  const rand = () => {
    seed = (seed + 0x6d2b79f5) >>> 0; // mulberry32
    let t = seed;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const holders = new Int32Array(cfg.holders); // per resource: -1 exclusive, n > 0 shared holders
  const ls = LockSpace.open(cfg.dir, { deadlockTimeout: cfg.deadlockTimeout });
  const names = Array.from({ length: cfg.resources }, (_, i) => `r${i}`);
  const tally = { acquisitions: 0, chains: 0, sets: 0, nested: 0, longWaits: 0, deadlocks: 0, violations: 0, examples: [] };
  const enter = (i, shared) => {
    for (;;) {
      const now = Atomics.load(holders, i);
      if (shared ? now < 0 : now !== 0) {
        tally.violations++;
        if (tally.examples.length < 5) tally.examples.push(`${names[i]} held ${now} when entered ${shared ? 'shared' : 'exclusive'}`);
        return;
      }
      if (Atomics.compareExchange(holders, i, now, shared ? now + 1 : -1) === now) return;
    }
  };
  const leave = (i, shared) => {
    if (shared) Atomics.sub(holders, i, 1);
    else Atomics.store(holders, i, 0);
  };
  const subset = () => {
    const k = 1 + Math.floor(rand() * 3);
    const picked = new Set();
    while (picked.size < k) picked.add(Math.floor(rand() * cfg.resources));
    const ids = [...picked];
    return cfg.anyOrder ? ids : ids.sort((a, b) => a - b);
  };
  const hold = () => (rand() < 0.5 ? Promise.resolve() : new Promise((r) => setImmediate(r)));
  const onError = (err) => {
    if (err && err.code === 'EDEADLK') {
      tally.deadlocks++;
      if (tally.examples.length < 5) tally.examples.push(err.message);
      return;
    }
    throw err;
  };
  const timed = async (p) => {
    const t0 = performance.now();
    const v = await p;
    if (performance.now() - t0 > cfg.deadlockTimeout) tally.longWaits++;
    return v;
  };
  while (tally.acquisitions < cfg.perWorker) {
    const ids = subset();
    const shared = ids.map(() => rand() < 0.35);
    const kind = rand();
    try {
      if (kind < 0.6) {
        tally.chains++;
        const leases = [];
        try {
          for (let j = 0; j < ids.length; j++) {
            leases.push(await timed(ls.acquire(names[ids[j]], { wait: true, shared: shared[j], autoCreate: true })));
            tally.acquisitions++;
            enter(ids[j], shared[j]);
            await hold();
          }
        } finally {
          for (let j = leases.length - 1; j >= 0; j--) {
            leave(ids[j], shared[j]);
            await leases[j].release();
          }
        }
      } else if (kind < 0.8) {
        tally.sets++;
        const order = ids.map((i, j) => ({ name: names[i], shared: shared[j] }));
        if (rand() < 0.5) order.reverse(); // any order: the set takes them in its own
        const set = await timed(ls.acquireAll(order, { wait: true, autoCreate: true }));
        tally.acquisitions += ids.length;
        ids.forEach((i, j) => enter(i, shared[j]));
        await hold();
        ids.forEach((i, j) => leave(i, shared[j]));
        await set.release();
      } else {
        tally.nested++;
        // request(a, () => request(b, () => ...)) with a < b: each callback awaits the next.
        const nest = async (j) => {
          if (j === ids.length) return hold();
          const t0 = performance.now();
          return ls.locks.request(names[ids[j]], { mode: shared[j] ? 'shared' : 'exclusive' }, async () => {
            if (performance.now() - t0 > cfg.deadlockTimeout) tally.longWaits++;
            tally.acquisitions++;
            enter(ids[j], shared[j]);
            try {
              await nest(j + 1);
            } finally {
              leave(ids[j], shared[j]);
            }
          });
        };
        await nest(0);
      }
    } catch (err) {
      onError(err);
    }
  }
  tally.examples = tally.examples.slice(0, 5);
  parentPort.postMessage(tally);
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const { LockSpace } = require(LIB);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lockspace-deadlock-stress-'));
  const started = Date.now();
  try {
    // autoCreate everywhere: ls.locks in a directory creates and deletes its files.
    LockSpace.open(dir);
    const holders = new SharedArrayBuffer(4 * opts.resources);
    const perWorker = Math.ceil(opts.acquisitions / opts.workers);
    const results = await Promise.all(
      Array.from(
        { length: opts.workers },
        () =>
          new Promise((resolve, reject) => {
            const w = new Worker(__filename, { workerData: { ...opts, dir, holders, perWorker } });
            w.once('message', resolve);
            w.once('error', reject);
            w.once('exit', (code) => code !== 0 && reject(new Error(`worker exit ${code}`)));
          }),
      ),
    );
    const sum = (k) => results.reduce((n, r) => n + r[k], 0);
    const out = {
      seed: opts.seed,
      workers: opts.workers,
      deadlockTimeout: opts.deadlockTimeout,
      acquisitions: sum('acquisitions'),
      chains: sum('chains'),
      sets: sum('sets'),
      nested: sum('nested'),
      longWaits: sum('longWaits'),
      deadlocks: sum('deadlocks'),
      violations: sum('violations'),
      ms: Date.now() - started,
      examples: results.flatMap((r) => r.examples).slice(0, 5),
    };
    const stats = require(path.resolve(__dirname, '../../dist/lib/internal.js'))._debug.stats();
    out.tableEmpty = stats.leases === 0 && stats.waiters === 0;
    process.stdout.write(`${JSON.stringify(out)}\n`);
    out.anyOrder = opts.anyOrder;
    const deadlocksOk = opts.anyOrder ? out.deadlocks > 0 : out.deadlocks === 0;
    process.exitCode = deadlocksOk && out.violations === 0 && out.tableEmpty ? 0 : 1;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

if (isMainThread) {
  main().catch((e) => {
    process.stderr.write(`deadlock stress: ${(e && e.stack) || e}\n`);
    process.exitCode = 1;
  });
} else {
  worker().catch((e) => {
    process.stderr.write(`deadlock stress worker: ${(e && e.stack) || e}\n`);
    process.exit(1);
  });
}
