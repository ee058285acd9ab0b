#!/usr/bin/env node
'use strict';
// `npm run build-from-source`: builds the addon with node-gyp (python3, make, a C++17 compiler) into
// build/Release/lockspace.node, which lib/native.ts loads before any prebuilt binary. For a platform
// without a prebuilt binary that loads, run it inside the installed package:
//   cd node_modules/lockspace && npm run build-from-source
// In a checkout it is `node-gyp rebuild` of the root binding.gyp. The published package has no root
// binding.gyp (npm would compile at install time), so there it builds from scripts/binding.gyp, the copy
// `npm pack` writes, in build/source/ (inside the package, so binding.gyp finds node-addon-api).
const { spawnSync } = require('child_process');
const fs = require('fs');
const path = require('path');

const root = path.resolve(__dirname, '..');

function fail(message) {
  console.error(`lockspace build-from-source: ${message}`);
  process.exit(1);
}

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
  if (r.error) fail(`cannot run node-gyp (${r.error.message}); install it with \`npm install -g node-gyp\``);
  if (r.status !== 0) fail(`node-gyp ${args.join(' ')} exited with ${r.status ?? r.signal}`);
}

const built = path.join(root, 'build', 'Release', 'lockspace.node');
if (fs.existsSync(path.join(root, 'binding.gyp'))) {
  nodeGyp(['rebuild'], root);
} else {
  const gypCopy = path.join(root, 'scripts', 'binding.gyp');
  if (!fs.existsSync(gypCopy)) fail(`${gypCopy} is missing: this copy of the package cannot be built`);
  const source = path.join(root, 'build', 'source');
  fs.rmSync(source, { recursive: true, force: true });
  fs.mkdirSync(source, { recursive: true });
  fs.copyFileSync(gypCopy, path.join(source, 'binding.gyp'));
  fs.cpSync(path.join(root, 'native'), path.join(source, 'native'), { recursive: true });
  nodeGyp(['rebuild', '--release'], source);
  fs.mkdirSync(path.dirname(built), { recursive: true });
  fs.copyFileSync(path.join(source, 'build', 'Release', 'lockspace.node'), built);
  fs.rmSync(source, { recursive: true, force: true });
}

// It must load here, in a fresh Node.
const check = spawnSync(process.execPath, ['-e', 'require(process.argv[1])', built], { encoding: 'utf8' });
if (check.status !== 0) fail(`the built ${built} does not load: ${check.stderr.trim()}`);
console.log(`lockspace: built ${built}`);
