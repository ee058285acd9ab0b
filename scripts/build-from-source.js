#!/usr/bin/env node
'use strict';
// `npm run build-from-source`: builds the addon with node-gyp (python3, make, a C++17 compiler) into
// build/Release/lockspace.node, which lib/native.ts loads before any prebuilt binary. For a platform
// without a prebuilt binary that loads, run it inside the installed package:
//   cd node_modules/lockspace && npm run build-from-source
// In a checkout it builds the root binding.gyp (the addon and the C++ core test). The published package
// has no root binding.gyp (npm would compile at install time), so there it builds scripts/binding.gyp,
// the copy `npm pack` writes.
//
// A running process may have build/Release/lockspace.node mapped: writing into that file (node-gyp
// rebuild's output, or a copy onto it) kills the process with SIGBUS and frees its locks while its work
// goes on. So node-gyp builds a copy of the sources in a scratch directory, build/source-XXXXXX (inside
// the package, where binding.gyp finds node-addon-api, and on the same file system as build/Release),
// and each result that loads is renamed over its old self: a process keeps the file it mapped, and a
// new one sees the old file or the new one, never a partial one.
const { spawnSync } = require('child_process');
const fs = require('fs');
const path = require('path');

const root = path.resolve(__dirname, '..');
const release = path.join(root, 'build', 'Release');

class Failure extends Error {}

/** The checkout's node-gyp (a devDependency), else the one npm bundles and names to scripts, else PATH's. */
function nodeGyp(args, cwd) {
  let gyp;
  try {
    gyp = require.resolve('node-gyp/bin/node-gyp.js', { paths: [root] });
  } catch {
    const bundled = process.env.npm_config_node_gyp;
    gyp = bundled && fs.existsSync(bundled) ? bundled : undefined;
  }
  const r = gyp
    ? spawnSync(process.execPath, [gyp, ...args], { cwd, stdio: 'inherit' })
    : spawnSync('node-gyp', args, { cwd, stdio: 'inherit' });
  if (r.error) throw new Failure(`cannot run node-gyp (${r.error.message}); install it with \`npm install -g node-gyp\``);
  if (r.status !== 0) throw new Failure(`node-gyp ${args.join(' ')} exited with ${r.status ?? r.signal}`);
}

function build(scratch) {
  const checkoutGyp = path.join(root, 'binding.gyp');
  const gyp = fs.existsSync(checkoutGyp) ? checkoutGyp : path.join(root, 'scripts', 'binding.gyp');
  if (!fs.existsSync(gyp)) throw new Failure(`${gyp} is missing: this copy of the package cannot be built`);
  fs.copyFileSync(gyp, path.join(scratch, 'binding.gyp'));
  // binding.gyp reads the version from package.json and builds native/test (the core test) if present.
  fs.copyFileSync(path.join(root, 'package.json'), path.join(scratch, 'package.json'));
  fs.cpSync(path.join(root, 'native'), path.join(scratch, 'native'), { recursive: true });
  nodeGyp(['rebuild', '--release'], scratch);

  const built = path.join(scratch, 'build', 'Release');
  // It must load, in a fresh Node, before it replaces anything (the holder of bound sets is renamed
  // into place first: the addon that finds it beside itself must never come without it).
  const addon = path.join(built, 'lockspace.node');
  const check = spawnSync(process.execPath, ['-e', 'require(process.argv[1])', addon], { encoding: 'utf8' });
  if (check.status !== 0) throw new Failure(`the built ${addon} does not load: ${check.stderr.trim()}`);

  fs.mkdirSync(release, { recursive: true });
  for (const name of ['lockspace-holder', 'lockspace.node', 'core_test']) {
    if (fs.existsSync(path.join(built, name))) fs.renameSync(path.join(built, name), path.join(release, name));
  }
}

fs.mkdirSync(path.join(root, 'build'), { recursive: true });
const scratch = fs.mkdtempSync(path.join(root, 'build', 'source-'));
try {
  build(scratch);
  console.log(`lockspace: built ${path.join(release, 'lockspace.node')}`);
} catch (err) {
  if (!(err instanceof Failure)) throw err;
  console.error(`lockspace build-from-source: ${err.message}`);
  process.exitCode = 1;
} finally {
  fs.rmSync(scratch, { recursive: true, force: true });
}
