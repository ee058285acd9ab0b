/* Smoke tests of the package entry points, through package.json "exports" as a user reaches them
 * (`require('lockspace')` / `import 'lockspace'` resolve to this checkout by self-reference), each
 * in a fresh node process that takes a real lock checked from outside by python's fcntl.lockf. */
import * as fs from 'fs';
import * as path from 'path';
import { spawnSync } from 'child_process';
import { mkTmpDir, python, rmTmpDir } from './helpers';

const ROOT = path.join(__dirname, '..');

let dir: string;
beforeEach(() => {
  dir = mkTmpDir('lockspace-esm-');
});
afterEach(() => rmTmpDir(dir));

const PROBE_PY = `import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
try:
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0)
    print('free')
except OSError:
    print('busy')`;

function node(args: string[], cwd = ROOT): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, args, {
    cwd,
    encoding: 'utf8',
    env: { ...process.env, PROBE_PY, PYTHON: python() },
    timeout: 30000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

// Shared body: acquire, ask python whether it can lock (it must not), release, ask again.
const BODY = `
const probe = (p) => execFileSync(process.env.PYTHON, ['-c', process.env.PROBE_PY, p], { encoding: 'utf8' }).trim();
const ls = LockSpace.open(process.argv[1]);
const lease = await ls.acquire('r', { autoCreate: true });
const whileHeld = probe(lease.path);
const file = lease.path;
await lease.release();
console.log(JSON.stringify({ whileHeld, afterRelease: fs.existsSync(file) ? probe(file) : 'deleted', name: resourceNameForPath('/x', { canonicalize: false }) }));
`;

test('CommonJS: require("lockspace") takes a real lock', () => {
  const r = node([
    '-e',
    `const { execFileSync } = require('child_process'); const fs = require('fs');
     const { LockSpace, resourceNameForPath } = require('lockspace');
     (async () => { ${BODY} })().catch((e) => { console.error(e); process.exit(1); });`,
    dir,
  ]);
  expect(r.stderr).toBe('');
  expect(JSON.parse(r.stdout)).toEqual({
    whileHeld: 'busy',
    afterRelease: 'deleted',
    name: 'b3d1db318671a024a7e4b433389f8820d6ca466e2cf700afc29f37ed64f2fa0d',
  });
});

test('ESM: import { LockSpace } from "lockspace" takes a real lock', () => {
  const r = node([
    '--input-type=module',
    '-e',
    `import { execFileSync } from 'node:child_process'; import fs from 'node:fs';
     import { LockSpace, resourceNameForPath } from 'lockspace';
     ${BODY}`,
    dir,
  ]);
  expect(r.stderr).toBe('');
  expect(JSON.parse(r.stdout).whileHeld).toBe('busy');
});

test('ESM and CommonJS share one module instance and export the same names', () => {
  const r = node([
    '--input-type=module',
    '-e',
    `import * as esm from 'lockspace';
     import lockspace from 'lockspace';
     import { createRequire } from 'node:module';
     const cjs = createRequire(import.meta.url)('lockspace');
     const named = Object.keys(esm).filter((k) => k !== 'default').sort();
     console.log(JSON.stringify({
       named, cjs: Object.keys(cjs).sort(),
       same: named.every((k) => esm[k] === cjs[k]), defaultIsCjs: lockspace === cjs,
       instance: new esm.LockspaceError('x', { code: 'EBUSY' }) instanceof cjs.LockspaceError,
     }));`,
  ]);
  expect(r.stderr).toBe('');
  const out = JSON.parse(r.stdout);
  expect(out.named).toEqual(out.cjs);
  expect(out.named).toEqual(expect.arrayContaining(['LockSpace', 'Lease', 'LockspaceError', 'AbortError', 'resourceNameForPath']));
  expect(out).toMatchObject({ same: true, defaultIsCjs: true, instance: true });
});

test('dynamic import() from CommonJS', () => {
  const r = node(['-e', `import('lockspace').then((m) => console.log(typeof m.LockSpace.open, m.LockSpace === require('lockspace').LockSpace))`]);
  expect(r.stderr).toBe('');
  expect(r.stdout).toBe('function true\n');
});

test('"exports" hides internals; package.json stays reachable', () => {
  const r = node(['-e', `try { require('lockspace/dist/lib/native.js'); console.log('reachable'); } catch (e) { console.log(e.code); }
    console.log(require('lockspace/package.json').name);`]);
  expect(r.stdout).toBe('ERR_PACKAGE_PATH_NOT_EXPORTED\nlockspace\n');
});

test('package.json: entry points, types, bin and files exist as declared', () => {
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
  const targets = [
    pkg.main,
    pkg.types,
    pkg.bin.lockspace,
    pkg.exports['.'].import.types,
    pkg.exports['.'].import.default,
    pkg.exports['.'].require.types,
    pkg.exports['.'].require.default,
  ];
  for (const t of targets) expect(fs.existsSync(path.join(ROOT, t))).toBe(true);
  expect(pkg.exports['.'].require.default).toBe(`./${pkg.main}`);
  expect(pkg.engines.node).toBe('>=20'); // the oldest Node scripts/ci-portability.sh runs
});
