'use strict';
// The stress checker: reads the journals the workers wrote and proves, per resource, that no exclusive
// critical section overlapped any other section, and that every counter kept under the lock is exact.
//
// Journal format: one line per critical section, "resource mode enter exit pid thread" where mode is
// "x" (exclusive) or "s" (shared) and enter/exit are CLOCK_MONOTONIC nanoseconds
// (process.hrtime.bigint(), the same clock in every process of the machine). enter is read after the
// acquire returned, exit before the release is called, so two sections that really were serialized
// by the lock always have disjoint [enter, exit] intervals.
const fs = require('fs');
const path = require('path');

/** Parses journal text into records; malformed lines are reported, never skipped silently. */
function parseJournal(text, file = '<journal>') {
  const records = [];
  const malformed = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (line === '') continue;
    const f = line.split(' ');
    if (f.length !== 6 || (f[1] !== 'x' && f[1] !== 's') || !/^\d+$/.test(f[2]) || !/^\d+$/.test(f[3])) {
      malformed.push(`${file}:${i + 1}: ${line}`);
      continue;
    }
    records.push({ resource: f[0], shared: f[1] === 's', enter: BigInt(f[2]), exit: BigInt(f[3]), pid: Number(f[4]), thread: Number(f[5]) });
  }
  return { records, malformed };
}

function readJournals(dir) {
  const records = [];
  const malformed = [];
  for (const name of fs.readdirSync(dir).sort()) {
    if (!name.endsWith('.journal')) continue;
    const r = parseJournal(fs.readFileSync(path.join(dir, name), 'utf8'), name);
    for (const rec of r.records) records.push(rec);
    for (const m of r.malformed) malformed.push(m);
  }
  return { records, malformed };
}

const fmt = (r) => `${r.shared ? 'shared' : 'exclusive'} [${r.enter}, ${r.exit}] pid ${r.pid} thread ${r.thread}`;

/**
 * Overlap check. Sorted by enter, a section conflicts with an earlier-entered one iff it enters before
 * the latest exit of the earlier sections it is incompatible with: any section if it is exclusive,
 * exclusive ones if it is shared. Returns at most `limit` examples and the exact count.
 */
function findOverlaps(records, limit = 10) {
  const byResource = new Map();
  for (const r of records) {
    if (!byResource.has(r.resource)) byResource.set(r.resource, []);
    byResource.get(r.resource).push(r);
  }
  let count = 0;
  const examples = [];
  for (const [resource, list] of byResource) {
    list.sort((a, b) => (a.enter < b.enter ? -1 : a.enter > b.enter ? 1 : 0));
    let lastAny = null; // the earlier section with the latest exit
    let lastExcl = null; // the earlier exclusive section with the latest exit
    for (const r of list) {
      const other = !r.shared ? lastAny : lastExcl;
      if (other && r.enter <= other.exit) {
        count++;
        if (examples.length < limit) examples.push(`${resource}: ${fmt(other)} overlaps ${fmt(r)}`);
      }
      if (!lastAny || r.exit > lastAny.exit) lastAny = r;
      if (!r.shared && (!lastExcl || r.exit > lastExcl.exit)) lastExcl = r;
    }
  }
  return { count, examples };
}

/** Every exclusive section incremented its resource's counter once: final value == exclusive sections. */
function checkCounters(records, counters) {
  const expected = new Map();
  for (const r of records) if (!r.shared) expected.set(r.resource, (expected.get(r.resource) || 0) + 1);
  const mismatches = [];
  const names = new Set([...expected.keys(), ...Object.keys(counters)]);
  for (const name of [...names].sort()) {
    const want = expected.get(name) || 0;
    const got = counters[name] === undefined ? 0 : counters[name];
    if (want !== got) mismatches.push(`${name}: counter ${got}, exclusive sections ${want}`);
  }
  return mismatches;
}

function readCounters(dataDir) {
  const out = {};
  for (const name of fs.readdirSync(dataDir)) {
    if (!name.endsWith('.count')) continue;
    const text = fs.readFileSync(path.join(dataDir, name), 'utf8');
    out[name.slice(0, -'.count'.length)] = /^\d+$/.test(text) ? Number(text) : NaN;
  }
  return out;
}

/** Full check of one phase's journal and data directories. */
function check(journalDir, dataDir) {
  const { records, malformed } = readJournals(journalDir);
  const overlaps = findOverlaps(records);
  const counterMismatches = checkCounters(records, readCounters(dataDir));
  return {
    sections: records.length,
    exclusive: records.filter((r) => !r.shared).length,
    shared: records.filter((r) => r.shared).length,
    overlaps,
    counterMismatches,
    malformed,
  };
}

module.exports = { parseJournal, readJournals, findOverlaps, checkCounters, readCounters, check };
