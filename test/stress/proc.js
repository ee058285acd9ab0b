'use strict';
// One stress process: W worker threads on the shared lockspace directory. Counts this process's fds
// before the workers start and after they have all exited (after LockSpace.closeIdleFds()), checks the
// lock table is empty, and prints one JSON line with the tallies.
// argv[2]: JSON { lib, dir, dataDir, journalDir, names, autoKinds, workers, ops, seed, mode, index, unlocked }
const fs = require('fs');
const path = require('path');
const { Worker } = require('worker_threads');

const cfg = JSON.parse(process.argv[2]);
const lib = require(cfg.lib);
const { _debug } = require(path.join(path.dirname(cfg.lib), 'internal.js'));

// The open fds, without the one readdirSync used to list them (closed by the time we look) and
// without /dev/null, which Node opens for itself when the first worker starts.
function fdList() {
  lib.LockSpace.closeIdleFds();
  return fs
    .readdirSync('/proc/self/fd')
    .filter((fd) => {
      try {
        return fs.readlinkSync(`/proc/self/fd/${fd}`) !== '/dev/null';
      } catch {
        return false;
      }
    })
    .map(Number)
    .sort((a, b) => a - b);
}

function runWorker(w, sab) {
  return new Promise((resolve) => {
    let result = null;
    const worker = new Worker(path.join(__dirname, 'worker.js'), {
      workerData: {
        lib: cfg.lib,
        dir: cfg.dir,
        dataDir: cfg.dataDir,
        journal: path.join(cfg.journalDir, `p${cfg.index}-w${w}.journal`),
        names: cfg.names,
        autoKinds: cfg.autoKinds,
        ops: cfg.ops,
        seed: (cfg.seed + cfg.index * 7919 + w * 104729) >>> 0,
        sab,
        mode: cfg.mode,
        pid: process.pid,
        unlocked: cfg.unlocked === true,
      },
    });
    worker.on('message', (m) => (result = m));
    worker.on('error', (e) => (result = { crash: `worker error: ${(e && e.stack) || e}` }));
    worker.on('exit', (code) => {
      if (!result) result = { crash: `worker exited with code ${code} without a report` };
      resolve(result);
    });
  });
}

// A kernel wait cancelled by the last operations ends on its own thread a moment later (the thread
// unwinds and closes its entry): give it a bounded while to, then look. Not a timing check: whatever
// is left after it is reported.
async function settled() {
  const deadline = Date.now() + 5000;
  for (;;) {
    lib.LockSpace.closeIdleFds();
    const s = _debug.stats();
    if ((s.resources === 0 && s.kernelWaits === 0) || Date.now() > deadline) return;
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function main() {
  // Load the addon and touch the table in this thread first, so that the "before" count includes
  // what the addon itself keeps open for the life of the process.
  lib.LockSpace.open(cfg.dir);
  const before = fdList();
  const sab = new SharedArrayBuffer(4 * 2 * cfg.names.length);
  const results = await Promise.all(Array.from({ length: cfg.workers }, (_, w) => runWorker(w, sab)));
  await settled();
  const after = fdList();
  const stats = _debug.stats();
  const leaked = after.filter((fd) => !before.includes(fd)).map((fd) => {
    let target = '?';
    try {
      target = fs.readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      /* closed meanwhile */
    }
    return `${fd} -> ${target}`;
  });
  const out = {
    pid: process.pid,
    index: cfg.index,
    fdsBefore: before.length,
    fdsAfter: after.length,
    leaked,
    stats,
    holderCounts: Array.from(new Int32Array(sab)),
    workers: results,
  };
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

main().catch((e) => {
  process.stdout.write(`${JSON.stringify({ pid: process.pid, index: cfg.index, crash: String((e && e.stack) || e) })}\n`);
  process.exitCode = 1;
});
