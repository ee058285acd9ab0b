#!/usr/bin/env node
'use strict';
// `npm run stress [-- options]`: exclusion under load, proven from a journal.
//
// Phase "mix": P processes x W worker threads on K resources, mixing shared and exclusive, autoCreate
// on, off and both, sync/async/waiting acquires (with timeouts and aborts), posix and ofd lockspaces and
// every release route. Phase "race": P processes x 2 workers hammer ONE autoCreate resource (so its
// file is deleted and created all the time, with deletes thrown in): zero double holders. Phase
// "rename": P processes x 2 workers on two resources whose exclusive holders often rename a new file
// over the name while they hold it (the holder keeps the old file, the name reaches the new one): each
// section is journalled under name@inode, so zero double holders means zero holders of one file.
// Phase "deadlock" (deadlock.js): W worker threads take 100,000 acquisitions (--quick: 10,000) in one
// global order with a 1 ms deadlockTimeout: zero EDEADLK, as no cycle of waits can close.
// After each phase check.js proves from the journals that no exclusive section overlapped another
// section on the same resource and that the counters kept under the locks are exact; each process
// proves it leaked no fd (/proc/self/fd before and after) and left its lock table empty.
//
// Options: --procs P (3) --workers W (4) --resources K (8) --ops N (4000 per worker) --race-ops N (3000)
//          --seed S (random) --quick (ops 250, race-ops 400, deadlock 10000) --json (also print a JSON
//          summary line) --deadlock-acquisitions N (100000: phase "deadlock")
//          --keep (keep the temp directory)
//          --unlocked (negative control: take no locks at all; the checks must then fail)
// Exit status: 0 when every check passed, 1 otherwise.
const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawn, spawnSync } = require('child_process');
const { check } = require('./check');

const LIB = path.resolve(__dirname, '../../dist/lib/index.js');

function parseArgs(argv) {
  const opts = { procs: 3, workers: 4, resources: 8, ops: 4000, raceOps: 3000, seed: undefined, json: false, keep: false, unlocked: false, deadlockAcquisitions: 100000 };
  let quick = false;
  const explicit = new Set();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const num = () => {
      const v = Number(argv[++i]);
      if (!Number.isInteger(v) || v < 0) throw new Error(`${a} needs a non-negative integer`);
      return v;
    };
    switch (a) {
      case '--procs': opts.procs = num(); break;
      case '--workers': opts.workers = num(); break;
      case '--resources': opts.resources = num(); break;
      case '--ops': opts.ops = num(); explicit.add('ops'); break;
      case '--race-ops': opts.raceOps = num(); explicit.add('raceOps'); break;
      case '--seed': opts.seed = num(); break;
      case '--deadlock-acquisitions': opts.deadlockAcquisitions = num(); explicit.add('deadlock'); break;
      case '--quick': quick = true; break;
      case '--json': opts.json = true; break;
      case '--keep': opts.keep = true; break;
      case '--unlocked': opts.unlocked = true; break;
      case '-h':
      case '--help':
        process.stdout.write(
          fs.readFileSync(__filename, 'utf8').split('\n').slice(2).filter((l, i, all) => all.slice(0, i + 1).every((x) => x.startsWith('//')))
            .map((l) => l.replace(/^\/\/ ?/, '')).join('\n') + '\n',
        );
        process.exit(0);
        break;
      default:
        throw new Error(`unknown option ${a} (see --help)`);
    }
  }
  if (quick) {
    if (!explicit.has('ops')) opts.ops = 250;
    if (!explicit.has('raceOps')) opts.raceOps = 400;
    if (!explicit.has('deadlock')) opts.deadlockAcquisitions = 10000;
  }
  if (opts.procs < 1 || opts.workers < 1 || opts.resources < 1) throw new Error('procs, workers and resources must be >= 1');
  if (opts.seed === undefined) opts.seed = (Date.now() ^ (process.pid << 16)) >>> 0;
  return opts;
}

function runProc(cfg) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [path.join(__dirname, 'proc.js'), JSON.stringify(cfg)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d) => (err += d));
    child.on('close', (code, signal) => {
      const line = out.trim().split('\n').pop() || '';
      let report;
      try {
        report = JSON.parse(line);
      } catch {
        report = { crash: `no report (exit ${code}, signal ${signal}): ${out.slice(-500)}` };
      }
      if (code !== 0 || signal) report.crash = report.crash || `exit code ${code}, signal ${signal}`;
      if (err.trim()) report.stderr = err.trim().slice(-2000);
      resolve(report);
    });
  });
}

async function phase(opts, root, mode) {
  const base = path.join(root, mode);
  const dir = path.join(base, 'locks');
  const dataDir = path.join(base, 'data');
  const journalDir = path.join(base, 'journal');
  for (const d of [dir, dataDir, journalDir]) fs.mkdirSync(d, { recursive: true });
  let names;
  let autoKinds;
  if (mode === 'race') {
    names = ['hot'];
    autoKinds = ['auto'];
  } else if (mode === 'rename') {
    names = ['moved', 'moved-auto'];
    autoKinds = ['plain', 'mixed'];
    fs.writeFileSync(path.join(dir, names[0]), '');
  } else {
    names = Array.from({ length: opts.resources }, (_, k) => `r${k}`);
    autoKinds = names.map((_, k) => ['plain', 'auto', 'mixed'][k % 3]);
    for (let k = 0; k < names.length; k++) if (autoKinds[k] !== 'auto') fs.writeFileSync(path.join(dir, names[k]), '');
  }
  const workers = mode === 'mix' ? opts.workers : 2;
  const ops = mode === 'mix' ? opts.ops : opts.raceOps;
  const started = process.hrtime.bigint();
  const reports = await Promise.all(
    Array.from({ length: opts.procs }, (_, index) =>
      runProc({ lib: LIB, dir, dataDir, journalDir, names, autoKinds, workers, ops, seed: opts.seed + ['mix', 'race', 'rename'].indexOf(mode), mode, index, unlocked: opts.unlocked }),
    ),
  );
  const ms = Number((process.hrtime.bigint() - started) / 1000000n);
  const journal = check(journalDir, dataDir);

  const s = {
    mode,
    processes: opts.procs,
    workers,
    resources: names.length,
    ms,
    ops: 0,
    sections: journal.sections,
    exclusive: journal.exclusive,
    shared: journal.shared,
    deletes: 0,
    renames: 0,
    expectedErrors: {},
    violations: {
      overlap: journal.overlaps.count,
      counter: journal.counterMismatches.length,
      malformedJournal: journal.malformed.length,
      inProcess: 0,
      marker: 0,
      sharedRead: 0,
      released: 0,
    },
    leakedFds: 0,
    tableNotEmpty: 0,
    crashes: [],
    examples: [...journal.overlaps.examples, ...journal.counterMismatches, ...journal.malformed.slice(0, 5)],
  };
  let tallySections = 0;
  for (const r of reports) {
    if (r.crash) s.crashes.push(`process ${r.index ?? '?'} (pid ${r.pid ?? '?'}): ${r.crash}${r.stderr ? `\n${r.stderr}` : ''}`);
    else if (r.stderr) s.crashes.push(`process ${r.index} (pid ${r.pid}) wrote to stderr:\n${r.stderr}`);
    if (!r.workers) continue;
    s.leakedFds += Math.max(r.fdsAfter - r.fdsBefore, r.leaked.length);
    if (r.leaked.length) s.examples.push(`pid ${r.pid} leaked fds: ${r.leaked.join(', ')}`);
    const st = r.stats;
    if (st.resources || st.leases || st.waiters || st.kernelWaits || st.idleFds || st.spareFds) {
      s.tableNotEmpty++;
      s.examples.push(`pid ${r.pid} table after: ${JSON.stringify(st)}`);
    }
    if (r.holderCounts.some((n) => n !== 0)) {
      s.violations.inProcess++;
      s.examples.push(`pid ${r.pid} in-process holder counts after: ${r.holderCounts}`);
    }
    for (const w of r.workers) {
      if (w.crash) s.crashes.push(`process ${r.index} (pid ${r.pid}) worker: ${w.crash}`);
      const t = w.tally;
      if (!t) continue;
      s.ops += t.ops;
      s.deletes += t.deletes;
      s.renames += t.renames;
      tallySections += t.sections;
      for (const [code, n] of Object.entries(t.errors)) s.expectedErrors[code] = (s.expectedErrors[code] || 0) + n;
      for (const [kind, n] of Object.entries(t.violations)) s.violations[kind] += n;
      s.examples.push(...t.examples);
    }
  }
  if (tallySections !== journal.sections) {
    s.violations.malformedJournal++;
    s.examples.push(`workers counted ${tallySections} sections, journals hold ${journal.sections}`);
  }
  s.totalViolations = Object.values(s.violations).reduce((a, b) => a + b, 0);
  s.ok = s.totalViolations === 0 && s.leakedFds === 0 && s.tableNotEmpty === 0 && s.crashes.length === 0;
  return s;
}

function describe(s) {
  const errs = Object.entries(s.expectedErrors).sort().map(([k, v]) => `${k} ${v}`).join(', ') || 'none';
  const v = Object.entries(s.violations).map(([k, n]) => `${k} ${n}`).join(', ');
  const lines = [
    `${s.mode}: ${s.processes} processes x ${s.workers} workers on ${s.resources} resource(s), ${s.ms} ms`,
    `  operations ${s.ops}: critical sections ${s.sections} (exclusive ${s.exclusive}, shared ${s.shared})` +
      (s.mode === 'race' ? `, deletes ${s.deletes}` : '') +
      (s.mode === 'rename' ? `, renamed over while held ${s.renames}` : ''),
    `  expected refusals: ${errs}`,
    `  violations ${s.totalViolations} (${v})`,
    `  leaked fds ${s.leakedFds}, processes with a non-empty table ${s.tableNotEmpty}, crashes ${s.crashes.length}`,
  ];
  for (const e of s.examples.slice(0, 10)) lines.push(`  ! ${e}`);
  for (const c of s.crashes.slice(0, 5)) lines.push(`  ! CRASH ${c}`);
  return lines.join('\n');
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  if (!fs.existsSync(LIB)) throw new Error(`${LIB} is missing: build first (npm run build)`);
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'lockspace-stress-'));
  process.stdout.write(
    `stress: seed ${opts.seed}; ${opts.procs} processes x ${opts.workers} workers, ${opts.resources} resources, ` +
      `${opts.ops} ops per worker; race ${opts.raceOps} ops per worker\n`,
  );
  const phases = [];
  try {
    for (const mode of ['mix', 'race', 'rename']) {
      const s = await phase(opts, root, mode);
      phases.push(s);
      process.stdout.write(`${describe(s)}\n`);
    }
  } finally {
    if (opts.keep) process.stdout.write(`kept ${root}\n`);
    else fs.rmSync(root, { recursive: true, force: true });
  }
  if (!opts.unlocked) {
    const args = ['--workers', String(Math.max(opts.workers, 8)), '--acquisitions', String(opts.deadlockAcquisitions)];
    if (opts.seed !== undefined) args.push('--seed', String(opts.seed));
    const r = spawnSync(process.execPath, [path.join(__dirname, 'deadlock.js'), ...args], { encoding: 'utf8' });
    const line = r.stdout.trim().split('\n').pop();
    const ok = r.status === 0;
    phases.push({ mode: 'deadlock', ok, result: line });
    process.stdout.write(`phase deadlock: ${ok ? 'ok' : 'FAILED'} ${line}${r.stderr ? `\n${r.stderr}` : ''}\n`);
  }
  const ok = phases.every((p) => p.ok);
  if (opts.json) process.stdout.write(`${JSON.stringify({ seed: opts.seed, ok, phases })}\n`);
  process.stdout.write(ok ? 'stress: OK\n' : `stress: FAILED (seed ${opts.seed})\n`);
  process.exitCode = ok ? 0 : 1;
}

main().catch((e) => {
  process.stderr.write(`stress: ${(e && e.stack) || e}\n`);
  process.exitCode = 1;
});
