'use strict';
// One stress worker thread. Acquires resources at random (shared or exclusive, autoCreate on or off,
// sync, async, waiting with and without timeout or abort, posix and ofd lockspaces, default and named
// owners), runs a critical section that is checked three ways, and releases by a random route.
//
// Checks inside every critical section:
//  - in-process: a SharedArrayBuffer of [exclusive, shared] holder counts per resource (Atomics);
//  - cross-process marker: an exclusive holder mkdir()s data/<r>.excl (EEXIST = someone else is in),
//    a shared holder checks it is absent;
//  - counter: an exclusive holder reads data/<r>.count, yields, writes it + 1; a shared holder reads
//    it twice across a yield and must see the same value.
// Every section is appended to this worker's journal (see check.js) for the after-the-fact proof.
//
// workerData: { lib, dir, dataDir, journal, names, autoKinds, ops, seed, sab, mode, pid, unlocked }
const fs = require('fs');
const path = require('path');
const { workerData, parentPort, threadId } = require('worker_threads');

const cfg = workerData;
const lib = require(cfg.lib);
const spaces = [lib.LockSpace.open(cfg.dir), lib.LockSpace.open(cfg.dir, { lockType: 'ofd' })];
const counts = new Int32Array(cfg.sab);
const journal = fs.openSync(cfg.journal, 'a');

let state = cfg.seed >>> 0 || 1;
function rand() {
  // xorshift32
  state ^= state << 13;
  state >>>= 0;
  state ^= state >>> 17;
  state ^= state << 5;
  state >>>= 0;
  return state / 0x100000000;
}
const pick = (list) => list[Math.floor(rand() * list.length)];

const tally = {
  ops: 0,
  sections: 0,
  exclusive: 0,
  shared: 0,
  deletes: 0,
  renames: 0,
  errors: {}, // expected failures by code
  violations: { inProcess: 0, marker: 0, sharedRead: 0, released: 0 },
  examples: [],
};

function violation(kind, text) {
  tally.violations[kind]++;
  if (tally.examples.length < 5) tally.examples.push(`${kind}: ${text}`);
}

const yieldOnce = () => new Promise((r) => setImmediate(r));
const pause = () => (rand() < 0.1 ? new Promise((r) => setTimeout(r, 1)) : yieldOnce());

function readCounter(file) {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (e) {
    if (e.code === 'ENOENT') return '0';
    throw e;
  }
}

// Phase "rename": the file a name reaches changes while held, so a section belongs to name@inode (the
// inode the name reached at the grant: only the exclusive holder of that file renames it, once).
const renaming = cfg.mode === 'rename';

function sectionKey(name) {
  if (!renaming) return name;
  try {
    return `${name}@${fs.statSync(path.join(cfg.dir, name)).ino}`;
  } catch (e) {
    if (e.code !== 'ENOENT' || !cfg.unlocked) throw e; // held: the name reaches our file
    return `${name}@absent`;
  }
}

function renameOver(name) {
  const fresh = path.join(cfg.dataDir, `fresh-${cfg.pid}-${threadId}`);
  fs.writeFileSync(fresh, '');
  fs.renameSync(fresh, path.join(cfg.dir, name));
  tally.renames++;
}

async function criticalSection(k, shared) {
  const name = cfg.names[k];
  const enter = process.hrtime.bigint();
  const key = sectionKey(name);
  const marker = path.join(cfg.dataDir, `${key}.excl`);
  const counter = path.join(cfg.dataDir, `${key}.count`);
  // Holders of one name but different files may overlap in this process: the journal checks them.
  const inProcess = !renaming;
  if (!shared && renaming && rand() < 0.3) renameOver(name);
  if (shared) {
    Atomics.add(counts, 2 * k + 1, 1);
    if (inProcess && Atomics.load(counts, 2 * k) !== 0) violation('inProcess', `${name}: shared entered while exclusive held`);
    if (fs.existsSync(marker)) violation('marker', `${name}: shared entered while an exclusive marker exists`);
    const before = readCounter(counter);
    await pause();
    const after = readCounter(counter);
    if (before !== after) violation('sharedRead', `${name}: counter changed under a shared lock: ${before} -> ${after}`);
    if (fs.existsSync(marker)) violation('marker', `${name}: exclusive marker appeared under a shared lock`);
    Atomics.sub(counts, 2 * k + 1, 1);
    tally.shared++;
  } else {
    if (Atomics.add(counts, 2 * k, 1) !== 0 && inProcess) violation('inProcess', `${name}: two exclusive holders in this process`);
    if (inProcess && Atomics.load(counts, 2 * k + 1) !== 0) violation('inProcess', `${name}: exclusive entered while shared held`);
    let marked = true;
    try {
      fs.mkdirSync(marker);
    } catch (e) {
      if (e.code !== 'EEXIST') throw e;
      marked = false;
      violation('marker', `${name}: exclusive entered while another exclusive marker exists`);
    }
    const n = Number(readCounter(counter));
    await pause();
    fs.writeFileSync(counter, String(n + 1));
    if (marked) fs.rmdirSync(marker);
    Atomics.sub(counts, 2 * k, 1);
    tally.exclusive++;
  }
  const exit = process.hrtime.bigint();
  fs.writeSync(journal, `${key} ${shared ? 's' : 'x'} ${enter} ${exit} ${cfg.pid} ${threadId}\n`);
  tally.sections++;
}

function expected(e, opts) {
  switch (e.code) {
    case 'EBUSY':
      return !opts.wait;
    case 'ENOENT':
      return !opts.autoCreate;
    case 'ETIMEDOUT':
      return opts.timeout !== undefined;
    case 'ABORT_ERR':
      return opts.signal !== undefined;
    case 'EDEADLK':
      // Two processes each waiting in F_SETLKW for a lock the other process holds (in another of
      // its threads): the kernel sees processes, not threads, and reports it (syscall fcntl). Documented.
      // The table's own EDEADLK (syscall acquire) needs a cycle of waits: one lock at a time has none.
      return opts.wait === true && e.syscall === 'fcntl';
    default:
      return false;
  }
}

async function acquire(ls, name, opts, how) {
  if (how === 'sync') return ls.acquireSync(name, opts);
  if (how === 'abort') {
    const ac = new AbortController();
    const p = ls.acquire(name, { ...opts, signal: ac.signal });
    setImmediate(() => ac.abort());
    return p;
  }
  return ls.acquire(name, opts);
}

async function release(ls, lease, name, owner) {
  switch (Math.floor(rand() * 5)) {
    case 0:
      return lease.release();
    case 1:
      return lease.releaseSync();
    case 2:
      return ls.release(name, owner);
    case 3:
      return ls.releaseSync(name, owner);
    default:
      // every owner name is unique to one acquisition, so this releases exactly this lease
      if (typeof owner === 'string') {
        const n = ls.releaseOwnerSync(owner);
        if (n !== 1) violation('released', `releaseOwner(${owner}) released ${n}`);
        return undefined;
      }
      return lease.release();
  }
}

async function step(i) {
  const k = Math.floor(rand() * cfg.names.length);
  const name = cfg.names[k];
  const kind = cfg.autoKinds[k]; // 'plain' | 'auto' | 'mixed'
  const ls = pick(spaces);
  if (cfg.mode === 'race' && rand() < 0.05) {
    // delete locks the file exclusively first: EBUSY if anyone (here or elsewhere) holds it
    try {
      await ls.delete(name);
      tally.deletes++;
    } catch (e) {
      if (e.code !== 'EBUSY') throw e;
      tally.errors.deleteEBUSY = (tally.errors.deleteEBUSY || 0) + 1;
    }
    return;
  }
  const shared = rand() < (cfg.mode === 'race' ? 0.25 : 0.4);
  const autoCreate = kind === 'auto' || (kind === 'mixed' && rand() < 0.5);
  const how = pick(['sync', 'async', 'wait', 'wait', 'wait', 'timeout', 'abort']);
  const opts = { shared, autoCreate };
  const owner = rand() < 0.5 ? `t${threadId}-${i}` : undefined;
  if (owner !== undefined) opts.owner = owner;
  if (how === 'wait' || how === 'timeout' || how === 'abort') opts.wait = true;
  if (how === 'timeout') opts.timeout = Math.floor(rand() * 3);
  if (how === 'abort') opts.signal = true; // marker for expected(); the real signal is made in acquire()
  const callOpts = { ...opts };
  delete callOpts.signal;
  let lease;
  if (cfg.unlocked) {
    // Negative control (--unlocked): no lock at all. The checks must then report violations.
    await criticalSection(k, shared);
    return;
  }
  try {
    lease = await acquire(ls, name, callOpts, how);
  } catch (e) {
    if (!expected(e, opts)) throw e;
    tally.errors[e.code] = (tally.errors[e.code] || 0) + 1;
    return;
  }
  if (lease.shared !== shared || lease.name !== name) violation('released', `lease mismatch on ${name}`);
  await criticalSection(k, shared);
  await release(ls, lease, name, owner === undefined ? threadId : owner);
  if (!lease.released) violation('released', `${name}: lease not released after release`);
}

async function main() {
  for (let i = 0; i < cfg.ops; i++) {
    tally.ops++;
    await step(i);
  }
  fs.closeSync(journal);
  parentPort.postMessage({ tally });
}

main().catch((e) => {
  parentPort.postMessage({ tally, crash: String((e && e.stack) || e), code: e && e.code });
});
