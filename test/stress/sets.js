#!/usr/bin/env node
'use strict';
// `node test/stress/sets.js [options]`: lock sets taken in opposite orders, proven from outside.
//
// P processes x W worker threads each take the set {A, B} with acquireAll(..., { wait: true }) R times,
// every other worker naming it the other way round ({A, B}, {B, A}); S more workers per process take A
// or B alone (acquire, wait) until that process's sets are done, so a set must take its turn against
// them. A deadlock never ends: the run finishing with every round done is the proof there is none.
// Inside every critical section:
//  - a marker directory per resource (mkdir: EEXIST means another holder is in), in every process;
//  - a counter per resource, read, yielded on and written + 1 (check.js: counter == exclusive sections);
//  - every K-th set round, python's fcntl.lockf from another process probes A and B: both must be busy
//    (the whole set is held, never a part of it);
//  - one journal line per resource (check.js: no exclusive section overlaps another on it).
// Each process checks it leaked no fd and left its lock table empty.
//
// Options: --procs P (1) --workers W (2) --singles S (0) --rounds R (300) --probe-every K (25, 0: none)
//          --auto-create (the lock files come and go with their holders) --keep (keep the temp dir)
// Prints one JSON line; exit status 0 when every round finished and every check passed.
const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawn, spawnSync } = require('child_process');
const { isMainThread, Worker, workerData, parentPort, threadId } = require('worker_threads');

const LIB = path.resolve(__dirname, '../../dist/lib/index.js');
const NAMES = ['A', 'B'];

// Prints "busy" or "free" for each path: can another process take the lock on byte 0 now? (A
// missing file is "free": nobody holds it.)
const PROBE_PY = `
import fcntl, os, sys, errno
out = []
for p in sys.argv[1:]:
    try:
        fd = os.open(p, os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        out.append('free')
        continue
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0)
        out.append('free')
    except OSError as e:
        if e.errno not in (errno.EAGAIN, errno.EACCES):
            raise
        out.append('busy')
    os.close(fd)
print(' '.join(out))
`;

/* ------------------------------------------------------------------ one worker thread */

async function workerMain(cfg) {
  const lib = require(cfg.lib);
  const ls = lib.LockSpace.open(cfg.dir);
  const stop = new Int32Array(cfg.stop);
  const journal = fs.openSync(cfg.journal, 'a');
  const tally = { rounds: 0, probes: 0, violations: { marker: 0, probe: 0 }, examples: [] };
  const violation = (kind, text) => {
    tally.violations[kind]++;
    if (tally.examples.length < 5) tally.examples.push(`${kind}: ${text}`);
  };
  const yieldOnce = () => new Promise((r) => setImmediate(r));
  const options = { wait: true, autoCreate: cfg.autoCreate };

  // The critical section on `names`, held: markers, counters, journal.
  async function section(names, probe) {
    const enter = process.hrtime.bigint();
    const entered = [];
    for (const n of names) {
      try {
        fs.mkdirSync(path.join(cfg.dataDir, `${n}.excl`));
        entered.push(n);
      } catch (e) {
        if (e.code !== 'EEXIST') throw e;
        violation('marker', `${n} held by another holder at once (pid ${process.pid} thread ${threadId})`);
      }
    }
    const counts = names.map((n) => {
      try {
        return Number(fs.readFileSync(path.join(cfg.dataDir, `${n}.count`), 'utf8'));
      } catch (e) {
        if (e.code === 'ENOENT') return 0;
        throw e;
      }
    });
    if (probe) {
      tally.probes++;
      const r = spawnSync(cfg.python, ['-c', PROBE_PY, ...NAMES.map((n) => path.join(cfg.dir, n))], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`probe failed: ${r.stderr}`);
      if (r.stdout.trim() !== 'busy busy') violation('probe', `a set held, python sees A B as: ${r.stdout.trim()}`);
    }
    await yieldOnce();
    names.forEach((n, k) => fs.writeFileSync(path.join(cfg.dataDir, `${n}.count`), String(counts[k] + 1)));
    for (const n of entered) fs.rmdirSync(path.join(cfg.dataDir, `${n}.excl`));
    const exit = process.hrtime.bigint();
    fs.writeSync(journal, names.map((n) => `${n} x ${enter} ${exit} ${process.pid} ${threadId}\n`).join(''));
  }

  if (cfg.single) {
    for (let k = 0; Atomics.load(stop, 0) === 0; k++) {
      const name = NAMES[k % 2];
      const lease = await ls.acquire(name, options);
      await section([name], false);
      await lease.release();
      tally.rounds++;
    }
  } else {
    const order = cfg.index % 2 === 0 ? NAMES : [...NAMES].reverse();
    for (let r = 0; r < cfg.rounds; r++) {
      const set = await ls.acquireAll(order, options);
      await section(NAMES, cfg.probeEvery > 0 && r % cfg.probeEvery === 0);
      await set.release();
      tally.rounds++;
    }
  }
  fs.closeSync(journal);
  parentPort.postMessage(tally);
}

/* ------------------------------------------------------------------ one process */

function fdList(lib) {
  lib.LockSpace.closeIdleFds();
  return fs
    .readdirSync('/proc/self/fd')
    .filter((fd) => {
      try {
        return fs.readlinkSync(`/proc/self/fd/${fd}`) !== '/dev/null'; // Node opens it for the first worker
      } catch {
        return false;
      }
    })
    .map(Number);
}

async function processMain(cfg) {
  const lib = require(cfg.lib);
  const { _debug } = require(path.join(path.dirname(cfg.lib), 'internal.js'));
  lib.LockSpace.open(cfg.dir);
  const before = fdList(lib);
  const stop = new SharedArrayBuffer(4);
  const run = (index, single) =>
    new Promise((resolve) => {
      let result = null;
      const journal = path.join(cfg.journalDir, `p${cfg.index}-${single ? 's' : 'w'}${index}.journal`);
      const w = new Worker(__filename, { workerData: { ...cfg, index: cfg.index * cfg.workers + index, single, stop, journal } });
      w.on('message', (m) => (result = m));
      w.on('error', (e) => (result = { crash: `worker error: ${(e && e.stack) || e}` }));
      w.on('exit', (code) => resolve(result || { crash: `worker exited with code ${code} without a report` }));
    });
  const singles = Array.from({ length: cfg.singles }, (_, k) => run(k, true));
  const sets = await Promise.all(Array.from({ length: cfg.workers }, (_, k) => run(k, false)));
  Atomics.store(new Int32Array(stop), 0, 1);
  const single = await Promise.all(singles);
  lib.LockSpace.closeIdleFds();
  const after = fdList(lib);
  const leaked = after.filter((fd) => !before.includes(fd));
  process.stdout.write(`${JSON.stringify({ pid: process.pid, sets, singles: single, leaked, stats: _debug.stats() })}\n`);
}

/* ------------------------------------------------------------------ the driver */

function parseArgs(argv) {
  const o = { procs: 1, workers: 2, singles: 0, rounds: 300, probeEvery: 25, autoCreate: false, keep: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const num = () => {
      const v = Number(argv[++i]);
      if (!Number.isInteger(v) || v < 0) throw new Error(`${a} needs a non-negative integer`);
      return v;
    };
    if (a === '--procs') o.procs = num();
    else if (a === '--workers') o.workers = num();
    else if (a === '--singles') o.singles = num();
    else if (a === '--rounds') o.rounds = num();
    else if (a === '--probe-every') o.probeEvery = num();
    else if (a === '--auto-create') o.autoCreate = true;
    else if (a === '--keep') o.keep = true;
    else throw new Error(`unknown option ${a}`);
  }
  return o;
}

function child(cfg) {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [__filename, '--child', JSON.stringify(cfg)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    c.stdout.setEncoding('utf8').on('data', (d) => (out += d));
    c.stderr.setEncoding('utf8').on('data', (d) => (err += d));
    c.on('close', (code, signal) => {
      let report;
      try {
        report = JSON.parse(out.trim().split('\n').pop());
      } catch {
        report = {};
      }
      if (code !== 0 || signal || err.trim()) report.crash = `exit ${code}, signal ${signal}: ${err.trim().slice(-2000)}`;
      resolve(report);
    });
  });
}

async function driver(o) {
  const { check } = require('./check');
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'lockspace-sets-'));
  const dir = path.join(root, 'locks');
  const dataDir = path.join(root, 'data');
  const journalDir = path.join(root, 'journal');
  for (const d of [dir, dataDir, journalDir]) fs.mkdirSync(d);
  if (!o.autoCreate) for (const n of NAMES) fs.writeFileSync(path.join(dir, n), '');
  const python = spawnSync('python3', ['-c', 'import sys; print(sys.executable)'], { encoding: 'utf8' }).stdout.trim();
  const started = Date.now();
  const reports = await Promise.all(
    Array.from({ length: o.procs }, (_, index) =>
      child({ lib: LIB, dir, dataDir, journalDir, python, index, workers: o.workers, singles: o.singles, rounds: o.rounds, probeEvery: o.probeEvery, autoCreate: o.autoCreate }),
    ),
  );
  const journal = check(journalDir, dataDir);
  const s = {
    processes: o.procs,
    workers: o.workers,
    singles: o.singles,
    autoCreate: o.autoCreate,
    ms: Date.now() - started,
    setRounds: 0,
    singleRounds: 0,
    probes: 0,
    overlaps: journal.overlaps.count,
    counterMismatches: journal.counterMismatches.length,
    malformed: journal.malformed.length,
    violations: { marker: 0, probe: 0 },
    leakedFds: 0,
    tableNotEmpty: 0,
    crashes: [],
    examples: [...journal.overlaps.examples, ...journal.counterMismatches, ...journal.malformed.slice(0, 5)],
  };
  for (const r of reports) {
    if (r.crash) s.crashes.push(`pid ${r.pid ?? '?'}: ${r.crash}`);
    if (!r.sets) continue;
    s.leakedFds += r.leaked.length;
    const st = r.stats;
    if (st.resources || st.leases || st.waiters || st.kernelWaits || st.spareFds) {
      s.tableNotEmpty++;
      s.examples.push(`pid ${r.pid} table after: ${JSON.stringify(st)}`);
    }
    for (const [list, key] of [
      [r.sets, 'setRounds'],
      [r.singles, 'singleRounds'],
    ]) {
      for (const t of list) {
        if (t.crash) {
          s.crashes.push(`pid ${r.pid}: ${t.crash}`);
          continue;
        }
        s[key] += t.rounds;
        s.probes += t.probes;
        for (const [k, n] of Object.entries(t.violations)) s.violations[k] += n;
        s.examples.push(...t.examples);
      }
    }
  }
  s.allRounds = s.setRounds === o.procs * o.workers * o.rounds;
  s.ok =
    s.allRounds && s.overlaps === 0 && s.counterMismatches === 0 && s.malformed === 0 && s.violations.marker === 0 &&
    s.violations.probe === 0 && s.leakedFds === 0 && s.tableNotEmpty === 0 && s.crashes.length === 0;
  if (o.keep) s.root = root;
  else fs.rmSync(root, { recursive: true, force: true });
  return s;
}

if (!isMainThread) {
  workerMain(workerData).catch((e) => {
    throw e;
  });
} else if (process.argv[2] === '--child') {
  processMain(JSON.parse(process.argv[3])).catch((e) => {
    process.stderr.write(`${(e && e.stack) || e}\n`);
    process.exit(1);
  });
} else {
  driver(parseArgs(process.argv.slice(2))).then(
    (s) => {
      process.stdout.write(`${JSON.stringify(s)}\n`);
      process.exit(s.ok ? 0 : 1);
    },
    (e) => {
      process.stderr.write(`sets: ${(e && e.stack) || e}\n`);
      process.exit(2);
    },
  );
}
