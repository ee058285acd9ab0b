import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

// The plain C++ core, tested without Node (native/test/core_test.cc, built by binding.gyp).
const binary = join(__dirname, '..', 'build', 'Release', 'core_test');

describe('C++ core (core_test)', () => {
  it('is built alongside the addon', () => {
    expect(existsSync(binary)).toBe(true);
  });

  it('passes every scenario', () => {
    const run = spawnSync(binary, { encoding: 'utf8', timeout: 120_000 });
    if (run.status !== 0) console.error(run.stdout, run.stderr);
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(/^0 failures$/m);
    for (const scenario of ['exclusive', 'shared autoCreate', 'inode identity', 'kernel wait', 'threads']) {
      expect(run.stdout).toMatch(new RegExp(`^ok +${scenario}$`, 'm'));
    }
  });
});
