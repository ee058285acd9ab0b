#!/usr/bin/env node
'use strict';
// The package's "install" script. npm 11 runs it only for the root project or a dependency the
// user approved (`npm install-scripts approve lockspace`). When the prebuilt binary shipped in the
// package loads on this machine there is nothing to do; otherwise (another platform or libc, a
// checkout without prebuilds/, or LOCKSPACE_BUILD_FROM_SOURCE=1) it builds the addon with node-gyp.
const { spawnSync } = require('child_process');
const fs = require('fs');
const path = require('path');

const root = path.resolve(__dirname, '..');
const prebuilt = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`, 'lockspace.node');

function prebuiltLoads() {
  if (process.env.LOCKSPACE_BUILD_FROM_SOURCE === '1' || !fs.existsSync(prebuilt)) return false;
  // In a child process: a binary for the wrong libc may abort rather than throw.
  const r = spawnSync(process.execPath, ['-e', 'require(process.argv[1])', prebuilt], { stdio: 'ignore' });
  return r.status === 0;
}

if (prebuiltLoads()) {
  console.log(`lockspace: using the prebuilt ${path.relative(root, prebuilt)}`);
  process.exit(0);
}

// The project's own node-gyp (a devDependency in a checkout), else the one npm bundles and names in
// npm_config_node_gyp, else node-gyp on PATH.
let gyp;
try {
  gyp = require.resolve('node-gyp/bin/node-gyp.js', { paths: [root] });
} catch {
  const bundled = process.env.npm_config_node_gyp;
  gyp = bundled && fs.existsSync(bundled) ? bundled : undefined;
}
const r = gyp
  ? spawnSync(process.execPath, [gyp, 'rebuild'], { cwd: root, stdio: 'inherit' })
  : spawnSync('node-gyp', ['rebuild'], { cwd: root, stdio: 'inherit' });
if (r.error) {
  console.error(`lockspace: cannot run node-gyp (${r.error.message}); install it with \`npm install -g node-gyp\``);
  process.exit(1);
}
process.exit(r.status === null ? 1 : r.status);
