/* Type tests of the public API (test/types/): `tsc` must accept every use in the files there and
 * reject every line marked `@ts-expect-error` (an unused one is itself an error). `lockspace`
 * resolves through package.json "exports" to the built declarations (npm test builds them first).
 * Three consumers: the usual one (@types/node), one with the DOM library too, and a bare one (no
 * @types/node, no DOM, exactOptionalPropertyTypes, CommonJS without esModuleInterop). */
import * as path from 'path';
import { spawnSync } from 'child_process';

const root = path.join(__dirname, '..');

function tsc(config: string): { output: string; status: number | null } {
  const bin = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  const r = spawnSync(process.execPath, [bin, '-p', path.join(__dirname, 'types', config)], { cwd: root, encoding: 'utf8' });
  return { output: r.stdout + r.stderr, status: r.status };
}

test.each([
  ['public API types: what must compile does, what must not does not (ESM and CommonJS)', 'tsconfig.json'],
  ['the declarations merge with the DOM library beside @types/node', 'tsconfig.dom.json'],
  ['a consumer without @types/node, with exactOptionalPropertyTypes, CommonJS default import without interop', 'tsconfig.bare.json'],
])('%s', (_what, config) => {
  expect(tsc(config)).toEqual({ output: '', status: 0 });
});
