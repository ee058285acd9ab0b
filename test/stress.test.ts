/* Exclusion under load, shortened for the Jest suite: the stress driver
 * (test/stress/run.js, `npm run stress`) with fewer processes and operations, its negative control
 * (no locks at all: the checks must catch it), and the journal checker on hand-made journals. */
import * as fs from 'fs';
import * as path from 'path';
import { spawn } from 'child_process';
import { mkTmpDir, rmTmpDir } from './helpers';

 
const checker = require('./stress/check.js');

const RUN = path.join(__dirname, 'stress', 'run.js');

function runStress(args: string[]): Promise<{ status: number | null; stdout: string; stderr: string; summary: any }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [RUN, '--json', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (status) => {
      const line = stdout.split('\n').find((l) => l.startsWith('{"seed"'));
      resolve({ status, stdout, stderr, summary: line ? JSON.parse(line) : undefined });
    });
  });
}

const rec = (resource: string, shared: boolean, enter: number, exit: number, pid = 1, thread = 1) =>
  `${resource} ${shared ? 's' : 'x'} ${enter} ${exit} ${pid} ${thread}`;

describe('journal checker', () => {
  test('exclusive sections that overlap anything on the same resource are violations; shared ones may overlap', () => {
    const journal = [
      rec('r', false, 10, 20),
      rec('r', true, 21, 40, 1, 2),
      rec('r', true, 25, 30, 2, 1), // shared with shared: fine
      rec('r', false, 35, 50, 2, 2), // enters while a shared section (21..40) is in: violation
      rec('r', false, 60, 70),
      rec('r', false, 65, 66, 3, 1), // inside another exclusive one: violation
      rec('q', false, 65, 66, 3, 1), // another resource: fine
      rec('r', true, 100, 110),
      rec('r', false, 90, 105, 2, 2), // exclusive holder still in when the shared one enters: violation
    ].join('\n');
    const { records, malformed } = checker.parseJournal(journal);
    expect(malformed).toEqual([]);
    expect(records).toHaveLength(9);
    const { count, examples } = checker.findOverlaps(records);
    expect(count).toBe(3);
    expect(examples).toHaveLength(3);
    expect(checker.findOverlaps(records.filter((r: any) => r.shared || r.enter < 35n)).count).toBe(0);
  });

  test('a counter must equal the number of exclusive sections on its resource', () => {
    const { records } = checker.parseJournal([rec('a', false, 1, 2), rec('a', false, 3, 4), rec('a', true, 5, 6), rec('b', false, 1, 2)].join('\n'));
    expect(checker.checkCounters(records, { a: 2, b: 1 })).toEqual([]);
    expect(checker.checkCounters(records, { a: 1, b: 1 })).toEqual(['a: counter 1, exclusive sections 2']);
    expect(checker.checkCounters(records, { a: 2 })).toEqual(['b: counter 0, exclusive sections 1']);
    expect(checker.checkCounters(records, { a: 2, b: 1, c: 3 })).toEqual(['c: counter 3, exclusive sections 0']);
  });

  test('torn or foreign journal lines are reported, never skipped silently', () => {
    const { records, malformed } = checker.parseJournal(`${rec('a', false, 1, 2)}\na x 3\nb y 1 2 3 4\n`, 'j');
    expect(records).toHaveLength(1);
    expect(malformed).toEqual(['j:2: a x 3', 'j:3: b y 1 2 3 4']);
  });

  test('check() reads journal and counter files from disk', () => {
    const dir = mkTmpDir('lockspace-check-');
    try {
      fs.mkdirSync(path.join(dir, 'j'));
      fs.mkdirSync(path.join(dir, 'd'));
      fs.writeFileSync(path.join(dir, 'j', 'p0-w0.journal'), `${rec('a', false, 1, 5)}\n${rec('a', true, 6, 9)}\n`);
      fs.writeFileSync(path.join(dir, 'j', 'p0-w1.journal'), `${rec('a', false, 4, 8, 1, 2)}\n`);
      fs.writeFileSync(path.join(dir, 'd', 'a.count'), '2');
      const r = checker.check(path.join(dir, 'j'), path.join(dir, 'd'));
      expect(r).toMatchObject({ sections: 3, exclusive: 2, shared: 1, counterMismatches: [], malformed: [] });
      expect(r.overlaps.count).toBe(2);
    } finally {
      rmTmpDir(dir);
    }
  });
});

describe('stress driver (shortened)', () => {
  test('2 processes x 3 workers on 4 resources, the unlink/recreate race, renames over held files: zero violations, no leaked fds', async () => {
    const r = await runStress([
      ...['--procs', '2', '--workers', '3', '--resources', '4', '--ops', '150', '--race-ops', '200'],
      ...['--deadlock-acquisitions', '2000'],
    ]);
    if (r.status !== 0) console.error(r.stdout, r.stderr);
    expect(r.stderr).toBe('');
    expect(r.summary).toBeDefined();
    const [mix, race, rename, deadlock] = r.summary.phases;
    expect(deadlock).toMatchObject({ mode: 'deadlock', ok: true });
    expect(JSON.parse(deadlock.result)).toMatchObject({ deadlocks: 0, violations: 0, tableEmpty: true });
    for (const p of [mix, race, rename]) {
      expect({ mode: p.mode, violations: p.violations, crashes: p.crashes, leakedFds: p.leakedFds, tableNotEmpty: p.tableNotEmpty }).toEqual({
        mode: p.mode,
        violations: Object.fromEntries(Object.keys(p.violations).map((k) => [k, 0])),
        crashes: [],
        leakedFds: 0,
        tableNotEmpty: 0,
      });
      expect(p.ops).toBe(p.mode === 'mix' ? 2 * 3 * 150 : 2 * 2 * 200);
      expect(p.exclusive).toBeGreaterThan(0);
      expect(p.shared).toBeGreaterThan(0);
    }
    expect(mix.mode).toBe('mix');
    expect(race.mode).toBe('race');
    expect(race.resources).toBe(1);
    expect(rename.mode).toBe('rename');
    expect(rename.renames).toBeGreaterThan(0);
    expect(r.summary.ok).toBe(true);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^stress: OK$/m);
    expect(r.stdout).not.toMatch(/^\d+ passed, \d+ failed$/m);
  });

  test('negative control: without locks the same checks report violations and the driver fails', async () => {
    const r = await runStress(['--unlocked', '--procs', '2', '--workers', '2', '--resources', '1', '--ops', '60', '--race-ops', '60']);
    expect(r.status).toBe(1);
    expect(r.summary.ok).toBe(false);
    for (const p of r.summary.phases) {
      expect(p.totalViolations).toBeGreaterThan(0);
      expect(p.violations.overlap).toBeGreaterThan(0);
    }
    expect(r.stdout).toMatch(/^stress: FAILED \(seed \d+\)$/m);
  });
});
