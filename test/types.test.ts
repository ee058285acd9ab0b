/* Type tests of the public API (test/types/): `tsc` must accept every use in the files there and
 * reject every line marked `@ts-expect-error` (an unused one is itself an error). `lockspace`
 * resolves through package.json "exports" to the built declarations (npm test builds them first).
 * Three consumers: the usual one (@types/node), one with the DOM library too, and a bare one (no
 * @types/node, no DOM, exactOptionalPropertyTypes, CommonJS without esModuleInterop). What the types
 * accept but cannot check (options built in a variable) is checked at run time, below. */
import * as path from 'path';
import { spawnSync } from 'child_process';
import { LockSpace } from '../lib';
import { outsideProbe, useTmpDir } from './helpers';

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

describe('options built in a variable (their wait is a boolean, so they compile)', () => {
  const tmp = useTmpDir();

  test('wait true with a timeout acquires; timeout or signal with wait false is a TypeError', async () => {
    const ls = LockSpace.open(tmp.dir);
    ls.createSync('r');
    const file = path.join(tmp.dir, 'r');
    let wait = true;
    const built = { wait, timeout: 5_000 };
    const lease = await ls.acquire('r', built);
    expect(await outsideProbe(file)).toBe('busy');
    await lease.release();
    wait = false;
    for (const options of [{ wait, timeout: 5_000 }, { wait, signal: new AbortController().signal }]) {
      const err = await ls.acquire('r', options).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(TypeError);
      expect(err).toMatchObject({ code: 'ERR_INVALID_ARG_VALUE', message: expect.stringContaining('sets timeout or signal without wait: true') });
    }
    expect(await outsideProbe(file)).toBe('locked');
  });
});
