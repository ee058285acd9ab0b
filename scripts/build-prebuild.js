#!/usr/bin/env node
'use strict';
// Builds the prebuilt N-API binary shipped in the npm package: prebuilds/<platform>-<arch>/lockspace.node
// (prebuilds/linux-x64/lockspace.node on the build machine). N-API (NAPI_VERSION 8), so one binary
// serves every Node.js from 18 on; lib/native.ts loads it before a local build/.
//
// The build runs in a scratch copy of binding.gyp and native/, never in ./build, so it neither
// clobbers nor races a developer's `node-gyp rebuild`, and it is always a plain release build
// (LOCKSPACE_ASAN is forced off). `npm pack` / `npm publish` run it from `prepack`, and `postpack`
// runs it again with --clean: a prebuilt binary lying in a checkout would shadow its fresh build/.
//
// usage: node scripts/build-prebuild.js [--out DIR]   write DIR/prebuilds/... (default: the repo)
//        node scripts/build-prebuild.js --clean       remove ./prebuilds
const { spawnSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

const root = path.resolve(__dirname, '..');
const target = `${process.platform}-${process.arch}`;

function fail(message) {
  console.error(`build-prebuild: ${message}`);
  process.exit(1);
}

function run(cmd, args, opts) {
  const r = spawnSync(cmd, args, { stdio: 'inherit', ...opts });
  if (r.error) fail(`${cmd}: ${r.error.message}`);
  if (r.status !== 0) fail(`${path.basename(cmd)} ${args.join(' ')} exited with ${r.status ?? r.signal}`);
}

/** npm passes its `nodedir` setting to scripts as npm_config_nodedir; node-gyp then uses local headers. */
function nodedir() {
  if (process.env.npm_config_nodedir) return process.env.npm_config_nodedir;
  const r = spawnSync('npm', ['config', 'get', 'nodedir'], { encoding: 'utf8' });
  const dir = r.status === 0 ? r.stdout.trim() : '';
  return dir && dir !== 'undefined' && dir !== 'null' ? dir : undefined;
}

function main(argv) {
  let out = root;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--clean') {
      fs.rmSync(path.join(root, 'prebuilds'), { recursive: true, force: true });
      return;
    } else if (argv[i] === '--out' && i + 1 < argv.length) {
      out = path.resolve(argv[++i]);
    } else {
      fail(`unknown argument '${argv[i]}' (usage: build-prebuild.js [--out DIR] | --clean)`);
    }
  }

  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'lockspace-prebuild-'));
  try {
    fs.cpSync(path.join(root, 'binding.gyp'), path.join(scratch, 'binding.gyp'));
    fs.cpSync(path.join(root, 'package.json'), path.join(scratch, 'package.json')); // the version the addon reports
    fs.cpSync(path.join(root, 'native'), path.join(scratch, 'native'), { recursive: true });
    // binding.gyp asks node for node-addon-api's include dir: let it resolve from the scratch dir.
    fs.symlinkSync(path.join(root, 'node_modules'), path.join(scratch, 'node_modules'), 'dir');

    const gyp = require.resolve('node-gyp/bin/node-gyp.js', { paths: [root] });
    const env = { ...process.env, LOCKSPACE_ASAN: '0' };
    const dir = nodedir();
    if (dir) env.npm_config_nodedir = dir;
    run(process.execPath, [gyp, 'rebuild', '--release', '--loglevel=warn', `--jobs=${Math.max(1, os.cpus().length)}`], {
      cwd: scratch,
      env,
      stdio: ['ignore', 'ignore', 'inherit'], // compiler diagnostics only
    });

    const built = path.join(scratch, 'build', 'Release', 'lockspace.node');
    const dest = path.join(out, 'prebuilds', target, 'lockspace.node');
    fs.mkdirSync(path.dirname(dest), { recursive: true });
    fs.copyFileSync(built, dest);
    fs.chmodSync(dest, 0o755);

    // It must load in a fresh Node and be an N-API module with the functions lib/native.ts uses.
    const check = spawnSync(
      process.execPath,
      ['-e', 'const b = require(process.argv[1]); if (typeof b.openDir !== "function") process.exit(2);', dest],
      { encoding: 'utf8' },
    );
    if (check.status !== 0) fail(`the built binary does not load: ${check.stderr.trim() || `status ${check.status}`}`);
    console.log(`build-prebuild: wrote ${dest} (${fs.statSync(dest).size} bytes)`);
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
}

main(process.argv.slice(2));
