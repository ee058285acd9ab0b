/* The package as users get it: `npm pack` (which runs prepack: the prebuilt N-API binary, and
 * prepare: tsc) in a scratch copy of this checkout, then `npm install --offline <tarball>` into a new
 * empty project with npm's defaults (npm 11 blocks a dependency's install scripts, so nothing is
 * compiled there), then require / import / the `lockspace` bin / TypeScript against the installed
 * copy, each taking a real lock that python's fcntl.lockf sees. */
import * as fs from 'fs';
import * as path from 'path';
import { execFileSync, spawnSync, SpawnSyncReturns } from 'child_process';
import { mkTmpDir, python, rmTmpDir, sha256hex, spawnPythonHolder } from './helpers';

const ROOT = path.join(__dirname, '..');
const PLATFORM = `${process.platform}-${process.arch}`;

let work: string;
let tarball: string;
let consumer: string;
let installed: string;

/** The environment for npm and node children: none of the npm_* variables of an enclosing `npm test`
 *  (npm_config_local_prefix and friends would point the child npm at this checkout). */
function cleanEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^npm_/i.test(k) && k.toLowerCase() !== 'npm_config_nodedir') continue;
    env[k] = v;
  }
  return { ...env, ...extra };
}

function run(cmd: string, args: string[], cwd: string, extra: NodeJS.ProcessEnv = {}): SpawnSyncReturns<string> {
  return spawnSync(cmd, args, { cwd, encoding: 'utf8', env: cleanEnv(extra), timeout: 600_000 });
}

function ok(r: SpawnSyncReturns<string>, what: string): string {
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`${what} failed (status ${r.status}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

beforeAll(() => {
  work = mkTmpDir('lockspace-pkg-');
  // A scratch copy of what the package is built from, so packing neither rewrites this checkout's
  // dist/ under the feet of other tests nor leaves a prebuilt binary in it.
  const src = path.join(work, 'src');
  fs.mkdirSync(src);
  for (const f of ['package.json', 'README.md', 'LICENSE', 'tsconfig.json', 'binding.gyp', 'lib', 'native', 'scripts']) {
    if (fs.existsSync(path.join(ROOT, f))) fs.cpSync(path.join(ROOT, f), path.join(src, f), { recursive: true });
  }
  fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(src, 'node_modules'), 'dir');
  ok(run('npm', ['pack', '--pack-destination', work], src), 'npm pack');
  const tarballs = fs.readdirSync(work).filter((f) => f.endsWith('.tgz'));
  expect(tarballs).toHaveLength(1);
  tarball = path.join(work, tarballs[0]);
  expect(fs.existsSync(path.join(src, 'prebuilds'))).toBe(false); // postpack cleaned up

  consumer = path.join(work, 'consumer');
  fs.mkdirSync(consumer);
  fs.writeFileSync(path.join(consumer, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true }));
  ok(run('npm', ['install', '--offline', '--no-audit', '--no-fund', tarball], consumer), 'npm install');
  installed = path.join(consumer, 'node_modules', 'lockspace');
}, 900_000);

afterAll(() => rmTmpDir(work));

test('the tarball holds what runs: built JS and types, the ESM wrapper, the prebuilt binary, sources to rebuild', () => {
  const files = execFileSync('tar', ['-tzf', tarball], { encoding: 'utf8' })
    .split('\n')
    .filter(Boolean)
    .map((f) => f.replace(/^package\//, ''))
    .sort();
  expect(files).toEqual(
    expect.arrayContaining([
      'package.json',
      'README.md',
      'dist/lib/index.js',
      'dist/lib/index.d.ts',
      'dist/lib/lockspace.js',
      'dist/lib/native.js',
      'dist/lib/cli.js',
      'lib/index.mjs',
      'lib/index.d.mts',
      `prebuilds/${PLATFORM}/lockspace.node`,
      'binding.gyp',
      'native/binding.cc',
      'native/core/registry.cc',
      'scripts/install.js',
    ]),
  );
  const unwanted = files.filter((f) =>
    /^(test|bench|\.ci|build|node_modules|dist\/bench)\/|\.map$|^dist\/lib\/demo\.|^lib\/.*\.ts$|^scripts\/build-prebuild|^tsconfig|^eslint|^\.clang-format/.test(f),
  );
  expect(unwanted).toEqual([]);
});

test('installing with npm defaults compiles nothing: no build/ directory, the prebuilt binary is there', () => {
  expect(fs.existsSync(path.join(installed, 'build'))).toBe(false);
  expect(fs.statSync(path.join(installed, 'prebuilds', PLATFORM, 'lockspace.node')).isFile()).toBe(true);
});

const PROBE_PY = `import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
try:
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0)
    print('free')
except OSError:
    print('busy')`;

const LOCK_BODY = `
const probe = (p) => execFileSync(process.env.PYTHON, ['-c', process.env.PROBE_PY, p], { encoding: 'utf8' }).trim();
const ls = LockSpace.open(process.argv[1]);
const lease = await ls.acquire('r', { autoCreate: true });
const whileHeld = probe(lease.path);
await lease.release();
const natives = Object.keys(require.cache).filter((k) => k.endsWith('.node'));
console.log(JSON.stringify({ whileHeld, natives }));
`;

function lockFromConsumer(esm: boolean): { whileHeld: string; natives: string[] } {
  const dir = path.join(work, esm ? 'locks-esm' : 'locks-cjs');
  const code = esm
    ? `import { execFileSync } from 'node:child_process'; import { createRequire } from 'node:module';
       import { LockSpace } from 'lockspace';
       const require = createRequire(import.meta.url);
       ${LOCK_BODY}`
    : `const { execFileSync } = require('child_process'); const { LockSpace } = require('lockspace');
       (async () => { ${LOCK_BODY} })().catch((e) => { console.error(e); process.exit(1); });`;
  const args = esm ? ['--input-type=module', '-e', code, dir] : ['-e', code, dir];
  const out = ok(run(process.execPath, args, consumer, { PYTHON: python(), PROBE_PY }), 'node');
  return JSON.parse(out);
}

test("require('lockspace') from the installed package loads the prebuilt binary and locks", () => {
  const r = lockFromConsumer(false);
  expect(r.whileHeld).toBe('busy');
  expect(r.natives).toEqual([path.join(fs.realpathSync(installed), 'prebuilds', PLATFORM, 'lockspace.node')]);
});

test("import { LockSpace } from 'lockspace' works the same", () => {
  const r = lockFromConsumer(true);
  expect(r.whileHeld).toBe('busy');
  expect(r.natives).toEqual([path.join(fs.realpathSync(installed), 'prebuilds', PLATFORM, 'lockspace.node')]);
});

test('the `lockspace` bin shim runs the CLI: name, run, and a conflict with python', async () => {
  const bin = path.join(consumer, 'node_modules', '.bin', 'lockspace');
  const version = run(bin, ['--version'], consumer);
  expect(version.stdout.trim()).toBe(JSON.parse(fs.readFileSync(path.join(installed, 'package.json'), 'utf8')).version);
  expect(run(bin, ['name', '--no-canonicalize', '/disk.img'], consumer).stdout).toBe(`${sha256hex('/disk.img')}\n`);

  const dir = path.join(work, 'locks-bin');
  const held = run(bin, ['run', '--auto-create', dir, 'job', '--', python(), '-c', PROBE_PY, path.join(dir, 'job')], consumer);
  expect(held.stderr).toBe('');
  expect(held.stdout).toBe('busy\n');
  expect(held.status).toBe(0);

  fs.writeFileSync(path.join(dir, 'job'), '');
  const holder = await spawnPythonHolder(path.join(dir, 'job'));
  try {
    const busy = run(bin, ['run', dir, 'job', '--', 'true'], consumer);
    expect(busy.status).toBe(75);
    expect(busy.stderr).toContain(`pid ${holder.pid}`);
    const st = JSON.parse(run(bin, ['status', '--json', dir], consumer).stdout);
    expect(st.resources[0]).toMatchObject({ name: 'job', state: 'exclusive', holders: [{ pid: holder.pid }] });
  } finally {
    await holder.release();
  }
});

test("a TypeScript user's code type-checks against the installed package, ESM and CommonJS", () => {
  const ts = path.join(consumer, 'ts');
  fs.mkdirSync(ts);
  fs.writeFileSync(
    path.join(ts, 'esm.mts'),
    `import { LockSpace, LockspaceError, type Lease } from 'lockspace';
     export async function f(): Promise<Lease> {
       try { return await LockSpace.open('/l').acquire('x', { wait: true, timeout: 10 }); }
       catch (e) { if (e instanceof LockspaceError && e.code === 'EBUSY') throw e; throw e; }
     }
     // @ts-expect-error -- unknown option
     LockSpace.open('/l').acquireSync('x', { wait: true });`,
  );
  fs.writeFileSync(
    path.join(ts, 'cjs.cts'),
    `import { LockSpace, resourceNameForPath } from 'lockspace';
     export const n: string = resourceNameForPath('/x');
     export const l = LockSpace.open(null).acquireSync('/x');`,
  );
  fs.writeFileSync(
    path.join(ts, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        target: 'ES2022',
        lib: ['ES2022', 'ESNext.Disposable'],
        module: 'node16',
        moduleResolution: 'node16',
        strict: true,
        noEmit: true,
        types: ['node'],
        typeRoots: [path.join(ROOT, 'node_modules', '@types')],
      },
      files: ['esm.mts', 'cjs.cts'],
    }),
  );
  const tsc = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  ok(run(process.execPath, [tsc, '-p', path.join(ts, 'tsconfig.json')], ts), 'tsc');
});

test('without a binary that loads, the error says exactly how to build one', () => {
  // A copy of the installed project without prebuilds/ (and nothing in build/).
  const broken = path.join(work, 'broken');
  fs.cpSync(path.join(consumer, 'node_modules'), path.join(broken, 'node_modules'), { recursive: true, verbatimSymlinks: true });
  const pkg = path.join(broken, 'node_modules', 'lockspace');
  fs.rmSync(path.join(pkg, 'prebuilds'), { recursive: true });
  const r = run(process.execPath, ['-e', "require('lockspace')"], broken);
  expect(r.status).not.toBe(0);
  const message = /^Error: (lockspace: .*)$/m.exec(r.stderr)?.[1];
  expect(message).toContain(`lockspace: no native addon that loads on ${PLATFORM}`);
  expect(message).toContain(path.join(pkg, 'prebuilds', PLATFORM, 'lockspace.node'));
  expect(message).toContain(path.join(pkg, 'build', 'Release', 'lockspace.node'));
  expect(message).toContain('needs python3, make and a C++17 compiler');
  expect(message).toContain('`npm install-scripts approve lockspace && npm rebuild lockspace`');
  expect(message).toContain(`\`cd ${pkg} && npm run install\``);

  // A prebuilt file that exists but does not load is reported (and a local build would be tried next).
  fs.mkdirSync(path.join(pkg, 'prebuilds', PLATFORM), { recursive: true });
  fs.writeFileSync(path.join(pkg, 'prebuilds', PLATFORM, 'lockspace.node'), 'not an ELF file');
  const r2 = run(process.execPath, ['-e', "require('lockspace')"], broken);
  expect(r2.status).not.toBe(0);
  expect(r2.stderr).toMatch(/lockspace: no native addon that loads on .*lockspace\.node: (file too short|invalid ELF header)/);
});

test('the install script, when a user approves it, keeps the prebuilt binary instead of compiling', () => {
  const r = run(process.execPath, [path.join(installed, 'scripts', 'install.js')], installed);
  expect(r.status).toBe(0);
  expect(r.stdout).toContain(`using the prebuilt prebuilds/${PLATFORM}/lockspace.node`);
  expect(fs.existsSync(path.join(installed, 'build'))).toBe(false);
});
