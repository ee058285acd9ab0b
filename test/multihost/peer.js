/* A test program run inside a simulated host (node peer.js, through nsenter): it drives the built
 * library on the host's mount by JSON lines on stdin, one reply line per request on stdout, and
 * reports lost leases (lease.signal aborts) as event lines as they happen. */
'use strict';
const readline = require('readline');
const path = require('path');

const lockspace = require(path.join(__dirname, '../../dist/lib/index.js'));
const { _debug } = require(path.join(__dirname, '../../dist/lib/internal.js'));

const spaces = new Map();
const leases = new Map();
let nextId = 1;

function send(obj) {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

function errorJson(err) {
  if (!err || typeof err !== 'object') return { message: String(err) };
  const out = { name: err.name, code: err.code, message: err.message, path: err.path, holderPid: err.holderPid };
  if (err.cause) out.cause = errorJson(err.cause);
  return out;
}

function lease(id) {
  const l = leases.get(id);
  if (!l) throw new Error(`no lease ${id}`);
  return l;
}

const ops = {
  open({ dir, options }) {
    const id = nextId++;
    spaces.set(id, lockspace.LockSpace.open(dir, options));
    return id;
  },
  async acquire({ space, name, options = {}, abortAfter }) {
    const opts = { ...options };
    if (abortAfter !== undefined) {
      const ac = new AbortController();
      setTimeout(() => ac.abort(), abortAfter);
      opts.signal = ac.signal;
    }
    if (typeof opts.ifGeneration === 'string') opts.ifGeneration = BigInt(opts.ifGeneration);
    const l = await spaces.get(space).acquire(name, opts);
    const id = nextId++;
    leases.set(id, l);
    if (l.signal) {
      l.signal.addEventListener('abort', () => send({ event: 'lost', lease: id, at: Date.now(), error: errorJson(l.signal.reason) }), {
        once: true,
      });
    }
    return { lease: id, at: Date.now(), generation: l.generation === null ? null : String(l.generation) };
  },
  /** Acquires (waiting) and releases at once: the lease's generation (holder records). */
  async cycle({ space, name, options = {} }) {
    const l = await spaces.get(space).acquire(name, { ...options, wait: true });
    const generation = String(l.generation);
    await l.release();
    return generation;
  },
  /** Releases a lease and acquires the same name again at once: the race of a hand-off. */
  async handoff({ lease: id, space, name, options = {} }) {
    await lease(id).release();
    leases.delete(id);
    try {
      return await ops.acquire({ space, name, options });
    } catch (err) {
      return { error: errorJson(err) };
    }
  },
  async release({ lease: id }) {
    await lease(id).release();
    leases.delete(id);
    return Date.now();
  },
  async verify({ lease: id }) {
    await lease(id).verify();
    return true;
  },
  lost({ lease: id }) {
    const l = lease(id);
    return l.signal.aborted ? errorJson(l.signal.reason) : null;
  },
  async inspect({ space, name }) {
    // bigints (holder records' generations) as decimal strings: JSON has no bigint.
    return JSON.parse(JSON.stringify(await spaces.get(space).inspect(name), (k, v) => (typeof v === 'bigint' ? String(v) : v)));
  },
  async create({ space, name }) {
    await spaces.get(space).create(name);
  },
  async delete({ space, name }) {
    await spaces.get(space).delete(name);
  },
  stats() {
    return _debug.stats();
  },
  pid() {
    return process.pid;
  },
  exit() {
    setImmediate(() => process.exit(0));
  },
};

readline.createInterface({ input: process.stdin }).on('line', async (line) => {
  const { id, op, ...args } = JSON.parse(line);
  try {
    const fn = ops[op];
    if (!fn) throw new Error(`unknown op ${op}`);
    const value = await fn(args);
    send({ id, ok: true, value: value === undefined ? null : value });
  } catch (err) {
    send({ id, ok: false, error: errorJson(err) });
  }
});
send({ ready: true, pid: process.pid });
