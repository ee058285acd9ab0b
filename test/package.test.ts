/* The package as users get it: `npm pack` (which runs prepack: tsc and the prebuilt N-API binaries) in
 * a scratch copy of this checkout, then `npm install --strict-allow-scripts <tarball>` into a new empty
 * project (it fails if the package has an install script), then require / import / the `lockspace` bin /
 * TypeScript against the installed copy, each taking a real lock that python's fcntl.lockf sees, and
 * `npm run build-from-source` inside it. The install reads npm's cache first and the registry for what
 * the cache lacks (the checkout's `npm ci` caches tarballs but not the registry metadata an install of
 * a new tarball needs). scripts/ci-portability.sh proves the rest: other Node versions, arm64, pnpm, the
 * ELF audit, musl. */
import * as fs from 'fs';
import * as path from 'path';
import { execFileSync, spawn, spawnSync, SpawnSyncReturns } from 'child_process';
import { holderFromChild, mkTmpDir, outsideProbeSync, python, rmTmpDir, sha256hex, spawnPythonHolder } from './helpers';

const ROOT = path.join(__dirname, '..');
const PLATFORM = `${process.platform}-${process.arch}-glibc`; // the CI machines run glibc

let work: string;
let tarball: string;
let consumer: string;
let installed: string;

/** The environment for npm and node children: none of the npm_* variables of an enclosing `npm test`
 *  (npm_config_local_prefix and friends would point the child npm at this checkout), and no
 *  LOCKSPACE_BINARY: the installed package chooses its own binary here. */
function cleanEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^npm_/i.test(k) && k.toLowerCase() !== 'npm_config_nodedir') continue;
    if (k === 'LOCKSPACE_BINARY') continue;
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

/** Packs a scratch copy of what the package is built from, so that packing neither rewrites this
 *  checkout's dist/ under the feet of other tests nor leaves a prebuilt binary in it. */
function pack(): string {
  const src = path.join(work, 'src');
  fs.mkdirSync(src);
  for (const f of ['package.json', 'README.md', 'LICENSE', 'tsconfig.json', 'binding.gyp', 'lib', 'native', 'scripts']) {
    if (fs.existsSync(path.join(ROOT, f))) fs.cpSync(path.join(ROOT, f), path.join(src, f), { recursive: true });
  }
  fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(src, 'node_modules'), 'dir');
  ok(run('npm', ['pack', '--pack-destination', work], src), 'npm pack');
  const tarballs = fs.readdirSync(work).filter((f) => f.endsWith('.tgz'));
  expect(tarballs).toHaveLength(1);
  expect(fs.existsSync(path.join(src, 'prebuilds'))).toBe(false); // postpack cleaned up
  expect(fs.existsSync(path.join(src, 'scripts', 'binding.gyp'))).toBe(false);
  return path.join(work, tarballs[0]);
}

beforeAll(() => {
  work = mkTmpDir('lockspace-pkg-');
  // LOCKSPACE_TARBALL: the tarball under test, packed once by .ci/run for every suite it runs.
  tarball = process.env.LOCKSPACE_TARBALL ? path.resolve(process.env.LOCKSPACE_TARBALL) : pack();

  consumer = path.join(work, 'consumer');
  fs.mkdirSync(consumer);
  fs.writeFileSync(path.join(consumer, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true }));
  const install = ok(
    run('npm', ['install', '--strict-allow-scripts', '--prefer-offline', '--no-audit', '--no-fund', tarball], consumer),
    'npm install',
  );
  expect(install).not.toMatch(/script/i);
  installed = path.join(consumer, 'node_modules', 'lockspace');
}, 900_000);

afterAll(() => rmTmpDir(work));

test('the tarball holds what runs: built JS and types, the ESM wrapper, the prebuilt binaries, sources to rebuild', () => {
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
      'prebuilds/linux-x64-glibc/lockspace.node',
      'prebuilds/linux-x64-glibc/lockspace-holder',
      'prebuilds/linux-arm64-glibc/lockspace.node',
      'prebuilds/linux-arm64-glibc/lockspace-holder',
      'prebuilds/linux-x64-musl/lockspace.node',
      'prebuilds/linux-x64-musl/lockspace-holder',
      'prebuilds/linux-arm64-musl/lockspace.node',
      'prebuilds/linux-arm64-musl/lockspace-holder',
      'scripts/binding.gyp',
      'scripts/build-from-source.js',
      'native/binding.cc',
      'native/core/registry.cc',
      'LICENSE',
    ]),
  );
  // A root binding.gyp would make npm compile at install time; the package runs no install script.
  expect(files).not.toContain('binding.gyp');
  const scripts = Object.keys(JSON.parse(fs.readFileSync(path.join(installed, 'package.json'), 'utf8')).scripts);
  expect(scripts.filter((s) => ['preinstall', 'install', 'postinstall', 'prepare'].includes(s))).toEqual([]);
  const unwanted = files.filter((f) =>
    /^(test|bench|\.ci|build|node_modules|dist\/bench|native\/test)\/|\.map$|^dist\/lib\/demo\.|^lib\/.*\.ts$|^scripts\/(build-prebuilds|ci-|test-|valgrind)|^tsconfig|^eslint|^\.clang-format/.test(f),
  );
  expect(unwanted).toEqual([]);
  // The maps stay in the checkout: no shipped file may point at one.
  const pointing = files.filter((f) => f.endsWith('.js') && fs.readFileSync(path.join(installed, f), 'utf8').includes('sourceMappingURL'));
  expect(pointing).toEqual([]);
});

test('installing compiles nothing: no build/ directory, the prebuilt binary is there', () => {
  expect(fs.existsSync(path.join(installed, 'build'))).toBe(false);
  expect(fs.statSync(path.join(installed, 'prebuilds', PLATFORM, 'lockspace.node')).isFile()).toBe(true);
  // The holder of bound sets must stay executable through npm's packing and unpacking.
  expect(fs.statSync(path.join(installed, 'prebuilds', PLATFORM, 'lockspace-holder')).mode & 0o111).toBe(0o111);
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

/** A copy of the installed project without prebuilds/; returns its package directory. */
function copyWithoutPrebuilds(name: string): string {
  const copy = path.join(work, name);
  fs.cpSync(path.join(consumer, 'node_modules'), path.join(copy, 'node_modules'), { recursive: true, verbatimSymlinks: true });
  const pkg = path.join(copy, 'node_modules', 'lockspace');
  fs.rmSync(path.join(pkg, 'prebuilds'), { recursive: true });
  return pkg;
}

test('without a binary that loads, the error names each file tried and how to build from source', () => {
  const broken = path.join(work, 'broken');
  const pkg = copyWithoutPrebuilds('broken'); // and nothing in build/
  const r = run(process.execPath, ['-e', "require('lockspace')"], broken);
  expect(r.status).not.toBe(0);
  const message = r.stderr.slice(r.stderr.indexOf('Error: lockspace:') + 'Error: '.length, r.stderr.indexOf('\n    at '));
  expect(message).toBe(
    `lockspace: no native addon loads on ${PLATFORM} (Node.js ${process.version}).\n` +
      `  prebuilt binary ${path.join(pkg, 'prebuilds', PLATFORM, 'lockspace.node')}: not found\n` +
      `  local build ${path.join(pkg, 'build', 'Release', 'lockspace.node')}: not found\n` +
      'Prebuilt binaries cover linux-x64 and linux-arm64 with glibc 2.28 or later, or musl. ' +
      'To build the addon from source (needs python3, make and a C++17 compiler), run: ' +
      `cd ${pkg} && npm run build-from-source`,
  );

  // A prebuilt file that exists but does not load is reported with the loader's reason.
  fs.mkdirSync(path.join(pkg, 'prebuilds', PLATFORM), { recursive: true });
  fs.writeFileSync(path.join(pkg, 'prebuilds', PLATFORM, 'lockspace.node'), 'not an ELF file');
  const r2 = run(process.execPath, ['-e', "require('lockspace')"], broken);
  expect(r2.status).not.toBe(0);
  expect(r2.stderr).toMatch(/prebuilt binary .*lockspace\.node: .*lockspace\.node: (file too short|invalid ELF header)\n/);
});

test('the binary is chosen by the running C library: with no glibc in the report, the musl one', () => {
  // Node's report names the glibc it runs on; a preload that hides it makes this process look like
  // musl's. The musl binary is then the one tried, and here (glibc) it cannot load.
  const preload = path.join(work, 'as-musl.js');
  fs.writeFileSync(
    preload,
    `const real = process.report.getReport.bind(process.report);
     process.report.getReport = (...a) => { const r = real(...a); delete r.header.glibcVersionRuntime; return r; };`,
  );
  const r = run(process.execPath, ['-r', preload, '-e', "require('lockspace')"], consumer);
  expect(r.status).not.toBe(0);
  const musl = `${process.platform}-${process.arch}-musl`;
  expect(r.stderr).toContain(`lockspace: no native addon loads on ${musl} (Node.js ${process.version}).`);
  expect(r.stderr).toContain(`prebuilt binary ${path.join(fs.realpathSync(installed), 'prebuilds', musl, 'lockspace.node')}: `);
  expect(r.stderr).not.toMatch(/prebuilt binary [^\n]*: not found/);
});

const builtFile = () => path.join(fs.realpathSync(installed), 'build', 'Release', 'lockspace.node');

test('`npm run build-from-source` in the installed package builds build/Release, which is then loaded first', () => {
  const built = ok(run('npm', ['run', 'build-from-source'], installed), 'npm run build-from-source');
  expect(built).toContain(`lockspace: built ${builtFile()}`);
  // The scratch tree is gone, the package has no core test to build, and the holder of bound sets is
  // built beside the addon.
  expect(fs.readdirSync(path.join(installed, 'build'))).toEqual(['Release']);
  expect(fs.readdirSync(path.join(installed, 'build', 'Release'))).toEqual(['lockspace-holder', 'lockspace.node']);
  expect(lockFromConsumer(false)).toEqual({ whileHeld: 'busy', natives: [builtFile()] });
}, 600_000);

// Takes a lock through build/Release/lockspace.node and prints "locked <pid>"; on a line from stdin it
// calls into the addon again (verify, a second lock), prints what it found, releases and exits.
const HOLD_THROUGH_REBUILD = `
const { LockSpace } = require('lockspace');
const ls = LockSpace.open(process.argv[1]);
const lease = ls.acquireSync('held', { autoCreate: true });
const natives = Object.keys(require.cache).filter((k) => k.endsWith('.node'));
process.stdout.write(JSON.stringify({ natives, path: lease.path }) + '\\nlocked ' + process.pid + '\\n');
process.stdin.once('data', async () => {
  await lease.verify();
  const other = ls.acquireSync('other', { autoCreate: true });
  const resources = ls.resources().map((r) => r.name).sort();
  await other.release();
  await lease.release();
  process.stdout.write(JSON.stringify({ verified: true, resources }) + '\\n');
  process.exit(0);
});`;

test('a process holding a lock through build/Release keeps running and keeps its lock while `npm run build-from-source` replaces the file', async () => {
  const child = spawn(process.execPath, ['-e', HOLD_THROUGH_REBUILD, path.join(work, 'locks-rebuild')], {
    cwd: consumer,
    env: cleanEnv(),
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (d) => (out += d));
  const holder = await holderFromChild(child, 'lockspace holder');
  try {
    const first = JSON.parse(out.split('\n')[0]);
    expect(first.natives).toEqual([builtFile()]);
    expect(outsideProbeSync(first.path)).toBe('busy');
    const inode = fs.statSync(builtFile()).ino;

    ok(run('npm', ['run', 'build-from-source'], installed), 'npm run build-from-source');
    expect(fs.statSync(builtFile()).ino).not.toBe(inode); // a new file took the name: the mapped one is untouched
    expect(outsideProbeSync(first.path)).toBe('busy');

    await holder.release();
    expect({ code: child.exitCode, signal: child.signalCode }).toEqual({ code: 0, signal: null });
    expect(JSON.parse(out.trim().split('\n').pop()!)).toEqual({ verified: true, resources: ['held', 'other'] });
  } finally {
    await holder.kill();
  }
}, 600_000);

test('a truncated build/Release/lockspace.node is passed over for the prebuilt binary, and named when nothing loads', () => {
  // A real binary cut short: dlopen of either cut raises SIGBUS in glibc.
  const prebuilt = path.join(fs.realpathSync(installed), 'prebuilds', PLATFORM, 'lockspace.node');
  const whole = fs.readFileSync(prebuilt);
  fs.mkdirSync(path.dirname(builtFile()), { recursive: true });
  for (const size of [4096, Math.floor(whole.length / 2)]) {
    fs.writeFileSync(builtFile(), whole.subarray(0, size));
    expect(lockFromConsumer(false)).toEqual({ whileHeld: 'busy', natives: [prebuilt] });

    const pkg = copyWithoutPrebuilds(`truncated-${size}`);
    const local = path.join(pkg, 'build', 'Release', 'lockspace.node');
    const r = run(process.execPath, ['-e', "require('lockspace')"], path.dirname(path.dirname(pkg)));
    expect({ status: r.status, signal: r.signal }).toEqual({ status: 1, signal: null });
    expect(r.stderr).toContain(`prebuilt binary ${path.join(pkg, 'prebuilds', PLATFORM, 'lockspace.node')}: not found\n`);
    expect(r.stderr).toContain(
      `  local build ${local}: ${local}: truncated: ${size} bytes of the ${whole.length} its ELF headers describe\n`,
    );
  }
  fs.rmSync(path.join(installed, 'build'), { recursive: true });
});
