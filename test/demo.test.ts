/* `npm run demo` (lib/demo.ts) shows the problem and the fix, as another process sees them: a
 * worker's open and close of the file drops another worker's plain fcntl lock, and through lockspace
 * the lock stays held until its holder releases it. The demo's "outside" column is python's
 * fcntl.lockf in another process. */
import * as path from 'path';
import { spawnSync } from 'child_process';

test('the demo shows the lock lost without lockspace and kept with it, in under 25 lines', () => {
  const r = spawnSync(process.execPath, [path.join(__dirname, '../dist/lib/demo.js')], { encoding: 'utf8', timeout: 60000 });
  expect({ status: r.status, stderr: r.stderr }).toEqual({ status: 0, stderr: '' });
  const lines = r.stdout.trimEnd().split('\n');
  expect(lines.length).toBeLessThan(25);
  const part2 = lines.findIndex((l) => l.startsWith('2. With lockspace'));
  expect(part2).toBeGreaterThan(0);
  const seen = (from: number, to: number) =>
    lines.slice(from, to).flatMap((l) => {
      const m = /^ {2}(worker \d) {2}(.*?) {2,}.*outside: (\w+)$/.exec(l);
      return m ? [`${m[1]} ${m[2]}: ${m[3]}`] : [];
    });
  expect(seen(0, part2)).toEqual(['worker 1 locks it (fcntl, byte 0): held', 'worker 2 opens it and closes it: free']);
  expect(lines.slice(0, part2).join('\n')).toContain('The lock is gone, yet worker 1 never released it');
  expect(seen(part2, lines.length)).toEqual([
    'worker 1 acquire(file): held',
    'worker 2 acquire(file): held',
    'worker 2 acquire(file, { wait: true }): held',
    'worker 1 release(): held',
    'worker 2 release(): free',
  ]);
  expect(r.stdout).toContain('EBUSY: held in this process');
  expect(r.stdout).toContain('released, worker 2 granted');
});
