/* Type tests of the public API (test/types/): `tsc` must accept every use in api.mts / cjs.cts and
 * reject every line marked `@ts-expect-error` (an unused one is itself an error). `lockspace`
 * resolves through package.json "exports" to the built declarations (npm test builds them first). */
import * as path from 'path';
import { spawnSync } from 'child_process';

test('public API types: what must compile does, what must not does not (ESM and CommonJS)', () => {
  const root = path.join(__dirname, '..');
  const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  const r = spawnSync(process.execPath, [tsc, '-p', path.join(__dirname, 'types', 'tsconfig.json')], {
    cwd: root,
    encoding: 'utf8',
  });
  expect(r.stdout + r.stderr).toBe('');
  expect(r.status).toBe(0);
});
