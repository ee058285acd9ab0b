#!/usr/bin/env node
/* npm run test:multihost: sets up the GlusterFS cluster (test/multihost/cluster.js), runs the
 * multihost Jest project against it, and tears the cluster down whatever happens: test failure,
 * Jest crash, SIGINT/SIGTERM/SIGHUP, or a run over its time limit. Extra arguments go to Jest. */
'use strict';
const { spawn, spawnSync } = require('child_process');
const path = require('path');
const cluster = require('./cluster');

const ROOT = path.join(__dirname, '../..');
const LIMIT_MS = 20 * 60_000; // the suite takes 6-8 minutes; a hang must not hold CI forever

function fail(message) {
  process.stderr.write(`test:multihost: ${message}\n`);
  process.exit(1);
}

async function main() {
  if (process.getuid() !== 0) fail('needs root (network, mount and pid namespaces, FUSE mounts, glusterd)');
  for (const tool of ['glusterd', 'gluster', 'glusterfs', 'ip', 'unshare', 'nsenter', 'python3']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) {
      fail(`${tool} not found (install glusterfs-server glusterfs-client fuse3 iproute2 util-linux python3)`);
    }
  }
  let torn = false;
  const teardown = () => {
    if (torn) return;
    torn = true;
    cluster.down();
  };
  process.on('exit', teardown);
  let jest;
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(sig, () => {
      if (jest) jest.kill('SIGKILL');
      teardown();
      process.exit(130);
    });
  }
  const started = Date.now();
  try {
    await cluster.up();
  } catch (err) {
    teardown();
    fail(`cluster setup failed: ${err.stack || err.message}`);
  }
  process.stdout.write(`multihost: cluster up in ${Date.now() - started} ms\n`);
  const jestBin = require.resolve('jest/bin/jest', { paths: [ROOT] });
  jest = spawn(process.execPath, [jestBin, '--config', 'test/multihost/jest.config.js', '--runInBand', ...process.argv.slice(2)], {
    cwd: ROOT,
    stdio: 'inherit',
  });
  const timer = setTimeout(() => {
    process.stderr.write(`test:multihost: over ${LIMIT_MS / 60000} minutes, stopping\n`);
    jest.kill('SIGKILL');
  }, LIMIT_MS);
  const status = await new Promise((resolve) => jest.on('exit', (code, signal) => resolve(signal ? 1 : (code ?? 1))));
  clearTimeout(timer);
  teardown();
  process.exit(status);
}

main();
