/* The multihost harness: a GlusterFS server (glusterd and a one-brick volume) in the root namespaces
 * and simulated hosts, each a network + mount + pid + UTS namespace with its own glusterfs FUSE
 * client mounting the volume at the same path. Everything it creates is recorded in a state file, so
 * that teardown (down) removes it even from another process or after an interrupted run.
 *
 * Addresses: 10.213.255.1 (the server, on a veth pair of its own in the root namespace) and
 * 10.213.N.0/30 per host (root end .1, host end .2). Needs root, glusterfs-server, glusterfs-client
 * and fuse3 (installed by .ci/run). */
'use strict';
const { spawn, spawnSync } = require('child_process');
const fs = require('fs');
const path = require('path');

const BASE = '/run/lockspace-multihost';
const STATE = path.join(BASE, 'state.json');
const MOUNT = path.join(BASE, 'mnt'); // the same path on every host
const VOLUME = 'lsmhvol';
const SERVER_ADDR = '10.213.255.1';
const SERVER_LINK = 'lsmhs0';
const HOSTS = ['a', 'b'];

// Lowered from Gluster's defaults (ping 42 s, TCP timeouts of minutes) so that faults show within
// seconds; client.strict-locks makes a client fail the fds whose locks a brick restart lost instead
// of reopening them silently, unlocked. Client caching stays at Gluster's defaults.
const VOLUME_OPTIONS = [
  ['network.ping-timeout', '10'],
  ['client.strict-locks', 'on'],
  ['client.tcp-user-timeout', '10'],
  ['server.tcp-user-timeout', '10'],
  ['client.keepalive-time', '10'],
  ['client.keepalive-interval', '2'],
  ['client.keepalive-count', '3'],
  ['server.keepalive-time', '10'],
  ['server.keepalive-interval', '2'],
  ['server.keepalive-count', '3'],
];

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function sh(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: opts.timeout ?? 60_000 });
  const out = `${r.stdout ?? ''}${r.stderr ?? ''}`.trim();
  if (r.status !== 0 && !opts.allowFail) {
    throw new Error(`${cmd} ${args.join(' ')} failed (${r.error ? r.error.message : `status ${r.status}`}): ${out}`);
  }
  return { ok: r.status === 0, out };
}

function readState() {
  try {
    return JSON.parse(fs.readFileSync(STATE, 'utf8'));
  } catch {
    return null;
  }
}

function writeState(state) {
  fs.writeFileSync(`${STATE}.tmp`, JSON.stringify(state, null, 2));
  fs.renameSync(`${STATE}.tmp`, STATE);
}

function update(fn) {
  const state = readState();
  if (!state) throw new Error('multihost: no cluster is up');
  fn(state);
  writeState(state);
  return state;
}

function gluster(state, args, opts) {
  return sh('gluster', ['--mode=script', `--glusterd-sock=${state.run}/glusterd.socket`, ...args], opts);
}

function alive(pid) {
  if (!pid) return false;
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // A zombie (exited, not reaped by its parent) counts as gone.
  try {
    return !/^State:\s+Z/m.test(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false;
  }
}

function killPid(pid, signal = 'SIGKILL') {
  try {
    process.kill(pid, signal);
  } catch {
    // gone already
  }
}

async function waitUntil(fn, what, ms = 30_000, step = 100) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`multihost: timed out waiting for ${what}`);
    await sleep(step);
  }
}

function readPidFile(file) {
  try {
    return Number(fs.readFileSync(file, 'utf8').trim()) || 0;
  } catch {
    return 0;
  }
}

function brickPidFile(state) {
  const dir = path.join(state.run, 'vols', VOLUME);
  try {
    const f = fs.readdirSync(dir).find((n) => n.endsWith('.pid'));
    return f ? path.join(dir, f) : null;
  } catch {
    return null;
  }
}

/** The brick process's pid, or 0 when it is not running. */
function brickPid(state = readState()) {
  const file = state && brickPidFile(state);
  const pid = file ? readPidFile(file) : 0;
  return alive(pid) ? pid : 0;
}

/* ------------------------------------------------------------------ hosts */

function hostIndex(name) {
  return HOSTS.indexOf(name);
}

function links(name) {
  return { outer: `lsmh${name}0`, inner: `lsmh${name}1`, ns: `lsmh-${name}`, net: `10.213.${hostIndex(name)}` };
}

function createNetwork(name) {
  const l = links(name);
  sh('ip', ['netns', 'add', l.ns]);
  sh('ip', ['link', 'add', l.outer, 'type', 'veth', 'peer', 'name', l.inner, 'netns', l.ns]);
  sh('ip', ['addr', 'add', `${l.net}.1/30`, 'dev', l.outer]);
  sh('ip', ['link', 'set', l.outer, 'up']);
  sh('ip', ['-n', l.ns, 'link', 'set', 'lo', 'up']);
  sh('ip', ['-n', l.ns, 'addr', 'add', `${l.net}.2/30`, 'dev', l.inner]);
  sh('ip', ['-n', l.ns, 'link', 'set', l.inner, 'up']);
  sh('ip', ['-n', l.ns, 'route', 'add', 'default', 'via', `${l.net}.1`]);
}

// Runs as the host's pid 1: names the host, mounts the volume, then sleeps. SIGKILL of it ends every
// process of the host (its FUSE client too), like a crash.
const HOST_INIT = `
set -e
hostname "$1"
mount --make-rprivate /
glusterfs --volfile-server=${SERVER_ADDR} --volfile-id=${VOLUME} --log-file="$2" ${MOUNT}
for i in $(seq 100); do mountpoint -q ${MOUNT} && stat ${MOUNT} >/dev/null 2>&1 && break; sleep 0.1; done
mountpoint -q ${MOUNT}
echo up
exec sleep infinity
`;

/** Starts host `name` (its network must exist): pid 1 of its namespaces, mounted. */
async function startHost(name) {
  const state = readState();
  const l = links(name);
  const log = path.join(state.base, `client-${name}.log`);
  const child = spawn(
    'ip',
    ['netns', 'exec', l.ns, 'unshare', '--mount', '--pid', '--uts', '--fork', '--kill-child', '--mount-proc', 'sh', '-c', HOST_INIT, 'init', name, log],
    { stdio: ['ignore', 'pipe', 'pipe'], detached: true },
  );
  child.unref();
  let output = '';
  child.stdout.on('data', (d) => (output += d));
  child.stderr.on('data', (d) => (output += d));
  update((s) => {
    s.hosts[name] = { unshare: child.pid, init: 0 };
  });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const up = waitUntil(() => output.includes('up\n'), `host ${name} to mount the volume`, 30_000, 50);
  const result = await Promise.race([up.then(() => 'up'), exited.then(() => 'exited')]);
  child.stdout.destroy();
  child.stderr.destroy();
  if (result !== 'up') throw new Error(`multihost: host ${name} did not come up: ${output.trim()}`);
  const init = Number(fs.readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8').trim().split(/\s+/)[0]);
  update((s) => {
    s.hosts[name] = { unshare: child.pid, init };
  });
  return init;
}

function hostInit(name) {
  const h = readState().hosts[name];
  if (!h || !alive(h.init)) throw new Error(`multihost: host ${name} is not running`);
  return h.init;
}

/** Root-namespace pids of the processes in host `name`'s pid namespace. */
function hostPids(name) {
  const init = hostInit(name);
  const ns = fs.readlinkSync(`/proc/${init}/ns/pid`);
  const pids = [];
  for (const p of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      if (fs.readlinkSync(`/proc/${p}/ns/pid`) === ns) pids.push(Number(p));
    } catch {
      // gone
    }
  }
  return pids;
}

function commandLine(pid) {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  } catch {
    return [];
  }
}

/** The command and arguments that run `argv` inside host `name`. */
function onHost(name, argv) {
  return ['nsenter', ['-t', String(hostInit(name)), '-n', '-m', '-p', '-u', '--', ...argv]];
}

/** Fault: kill host `name`'s glusterfs FUSE client (its mount then fails with ENOTCONN). */
function killFuseClient(name) {
  const pid = hostPids(name).find((p) => path.basename(commandLine(p)[0] ?? '') === 'glusterfs');
  if (!pid) throw new Error(`multihost: no FUSE client on host ${name}`);
  killPid(pid);
  return pid;
}

/** Fault: crash host `name` (SIGKILL its pid 1: every process of it dies, its mount with it). */
async function crashHost(name) {
  const h = readState().hosts[name];
  killPid(h.init);
  await waitUntil(() => !alive(h.init) && !alive(h.unshare), `host ${name} to die`, 10_000, 20);
}

/** Starts host `name` again after a crash or a killed FUSE client. */
async function restartHost(name) {
  const h = readState().hosts[name];
  if (h && alive(h.init)) await crashHost(name);
  return startHost(name);
}

/** Fault: cut host `name`'s link (a partition: packets are dropped both ways). */
function cutLink(name) {
  sh('ip', ['link', 'set', links(name).outer, 'down']);
}

function healLink(name) {
  const l = links(name);
  sh('ip', ['link', 'set', l.outer, 'up']);
  // Bringing the link up again restores its prefix route; the host's own route never went away.
}

/* ------------------------------------------------------------------ brick */

/** Fault: kill the brick process (the server side of every lock). */
async function killBrick() {
  const pid = brickPid();
  if (!pid) throw new Error('multihost: the brick is not running');
  killPid(pid);
  await waitUntil(() => !alive(pid), 'the brick to die', 10_000, 20);
  return pid;
}

/** Starts the brick again. A restart right after a kill can fail with "already running" while
 *  glusterd has not noticed the death yet: wait and retry. */
async function startBrick() {
  const state = readState();
  const end = Date.now() + 60_000;
  for (;;) {
    const r = gluster(state, ['volume', 'start', VOLUME, 'force'], { allowFail: true });
    if (r.ok && brickPid(state)) break;
    if (Date.now() > end) throw new Error(`multihost: brick did not restart: ${r.out}`);
    await sleep(500);
  }
  await waitUntil(
    () => / Y +\d+\s*$/m.test(gluster(state, ['volume', 'status', VOLUME], { allowFail: true }).out),
    'the brick to be online',
    30_000,
    200,
  );
  return brickPid(state);
}

/** Waits until host `name`'s client serves the mount again (after a brick restart it reconnects
 *  on its own timer, a few seconds). */
async function waitMount(name, ms = 30_000) {
  await waitUntil(
    () => spawnSync(...onHost(name, ['stat', '-f', MOUNT + '/.']), { timeout: 15_000 }).status === 0 &&
      spawnSync(...onHost(name, ['ls', MOUNT]), { timeout: 15_000 }).status === 0,
    `host ${name} to reach the volume`,
    ms,
    200,
  );
}

/* ------------------------------------------------------------------ up / down */

function glusterdVolfile(state) {
  return `volume management
    type mgmt/glusterd
    option working-directory ${state.work}
    option run-directory ${state.run}
    option glusterd-sockfile ${state.run}/glusterd.socket
    option transport-type socket
    option transport.socket.bind-address ${SERVER_ADDR}
    option transport.socket.keepalive-time 10
    option transport.socket.keepalive-interval 2
    option transport.socket.listen-port 24007
    option ping-timeout 0
    option event-threads 1
end-volume
`;
}

/** Sets the whole cluster up; on failure tears down what it made. */
async function up() {
  down(); // whatever an interrupted run left
  fs.mkdirSync(MOUNT, { recursive: true });
  const state = {
    base: BASE,
    work: path.join(BASE, 'glusterd'),
    run: path.join(BASE, 'run'),
    brick: path.join(BASE, 'brick'),
    mount: MOUNT,
    volume: VOLUME,
    glusterd: 0,
    brickLog: '',
    hosts: {},
    links: [],
  };
  for (const d of [state.work, state.run, state.brick]) fs.mkdirSync(d, { recursive: true });
  writeState(state);
  try {
    update((s) => s.links.push(SERVER_LINK));
    sh('ip', ['link', 'add', SERVER_LINK, 'type', 'veth', 'peer', 'name', 'lsmhs1']);
    sh('ip', ['addr', 'add', `${SERVER_ADDR}/32`, 'dev', SERVER_LINK]);
    sh('ip', ['link', 'set', SERVER_LINK, 'up']);
    sh('ip', ['link', 'set', 'lsmhs1', 'up']);

    const volfile = path.join(BASE, 'glusterd.vol');
    fs.writeFileSync(volfile, glusterdVolfile(state));
    sh('glusterd', ['-f', volfile, '-p', `${state.run}/glusterd.pid`, '-l', path.join(BASE, 'glusterd.log')]);
    update((s) => (s.glusterd = readPidFile(`${state.run}/glusterd.pid`)));
    await waitUntil(() => gluster(state, ['volume', 'list'], { allowFail: true }).ok, 'glusterd', 20_000, 100);

    const brickDir = path.join(state.brick, 'b0');
    update((s) => (s.brickLog = `/var/log/glusterfs/bricks/${brickDir.slice(1).replace(/\//g, '-')}.log`));
    gluster(state, ['volume', 'create', VOLUME, `${SERVER_ADDR}:${brickDir}`, 'force']);
    for (const [key, value] of VOLUME_OPTIONS) gluster(state, ['volume', 'set', VOLUME, key, value]);
    gluster(state, ['volume', 'start', VOLUME]);
    await waitUntil(() => brickPid(state), 'the brick', 20_000, 100);

    for (const name of HOSTS) {
      update((s) => s.links.push(links(name).outer));
      createNetwork(name);
      await startHost(name);
    }
  } catch (err) {
    down();
    throw err;
  }
  return readState();
}

/** Tears everything down that the state file records. Safe to call at any point, repeatedly. */
function down() {
  const state = readState();
  if (!state) return;
  const errors = [];
  const attempt = (what, fn) => {
    try {
      fn();
    } catch (err) {
      errors.push(`${what}: ${err.message}`);
    }
  };
  // Hosts first: killing each pid 1 ends its processes and FUSE client; the mounts go with their
  // mount namespaces.
  for (const [name, h] of Object.entries(state.hosts ?? {})) {
    attempt(`host ${name}`, () => {
      killPid(h.init);
      killPid(h.unshare);
      const end = Date.now() + 10_000;
      while ((alive(h.init) || alive(h.unshare)) && Date.now() < end) spawnSync('sleep', ['0.05']);
    });
    attempt(`netns ${name}`, () => sh('ip', ['netns', 'del', links(name).ns], { allowFail: true }));
  }
  for (const link of state.links ?? []) sh('ip', ['link', 'del', link], { allowFail: true });
  if (state.glusterd && alive(state.glusterd)) {
    gluster(state, ['volume', 'stop', VOLUME, 'force'], { allowFail: true, timeout: 30_000 });
    gluster(state, ['volume', 'delete', VOLUME], { allowFail: true, timeout: 30_000 });
  }
  attempt('brick', () => {
    const pid = brickPid(state);
    if (pid) killPid(pid);
  });
  if (state.glusterd) killPid(state.glusterd);
  const end = Date.now() + 10_000;
  while ((alive(state.glusterd) || brickPid(state)) && Date.now() < end) spawnSync('sleep', ['0.05']);
  // A mount left in the root namespace (never made by the harness, but be sure) would pin the dir.
  sh('umount', ['-l', state.mount ?? MOUNT], { allowFail: true });
  if (state.brickLog) fs.rmSync(state.brickLog, { force: true });
  fs.rmSync(state.base ?? BASE, { recursive: true, force: true });
  if (errors.length) process.stderr.write(`multihost teardown: ${errors.join('; ')}\n`);
}

module.exports = {
  MOUNT,
  HOSTS,
  readState,
  up,
  down,
  onHost,
  hostInit,
  hostPids,
  killFuseClient,
  crashHost,
  restartHost,
  cutLink,
  healLink,
  killBrick,
  startBrick,
  brickPid,
  waitMount,
  waitUntil,
  sleep,
};
