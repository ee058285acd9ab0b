/* Two copies of the package in one process (npm installs two when two dependencies need different
 * versions). A temp project gets three installed copies: A (this checkout's build), B (built from
 * source under another version: same table format) and C (built with another table format). Each
 * scenario runs in a child process that loads them (main thread and workers) and checks exclusion
 * from outside with python's fcntl.lockf: one table for A and B, a clear refusal for C. */
import * as fs from 'fs';
import * as path from 'path';
import { execFileSync, spawn } from 'child_process';
import { binding } from '../lib/native';
import { mkTmpDir, python, rmTmpDir, FIXTURES } from './helpers';

const ROOT = path.join(__dirname, '..');
const GYP = require.resolve('node-gyp/bin/node-gyp.js', { paths: [ROOT] });

let project = '';
let locks = '';
const copies = { a: '', b: '', c: '', d: '' };
const versions = { a: '', b: '0.1.1-copy', c: '9.9.9-format' };

/** Installs the package's files (what `npm pack` ships) as project/node_modules/<dep>/node_modules/lockspace. */
function install(dep: string, version: string): string {
  const dir = path.join(project, 'node_modules', dep, 'node_modules', 'lockspace');
  fs.mkdirSync(path.join(dir, 'dist'), { recursive: true });
  fs.cpSync(path.join(ROOT, 'dist', 'lib'), path.join(dir, 'dist', 'lib'), { recursive: true });
  fs.cpSync(path.join(ROOT, 'lib', 'index.mjs'), path.join(dir, 'lib', 'index.mjs'));
  fs.cpSync(path.join(ROOT, 'binding.gyp'), path.join(dir, 'binding.gyp'));
  fs.cpSync(path.join(ROOT, 'native', 'core'), path.join(dir, 'native', 'core'), { recursive: true });
  fs.cpSync(path.join(ROOT, 'native', 'holder'), path.join(dir, 'native', 'holder'), { recursive: true });
  fs.cpSync(path.join(ROOT, 'native', 'binding.cc'), path.join(dir, 'native', 'binding.cc'));
  fs.cpSync(path.join(ROOT, 'native', 'binding'), path.join(dir, 'native', 'binding'), { recursive: true });
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
  pkg.version = version;
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify(pkg, null, 2));
  return fs.realpathSync(dir);
}

/** node-gyp in the installed copy, against npm's nodedir headers (never downloaded). */
function build(dir: string, env: Record<string, string>, nodedir: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [GYP, 'rebuild', '--jobs=1', `--nodedir=${nodedir}`], {
      cwd: dir,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let err = '';
    child.stderr.setEncoding('utf8').on('data', (d) => (err += d));
    child.on('error', reject);
    child.on('close', (status) => (status === 0 ? resolve() : reject(new Error(`build of ${dir} failed: ${err}`))));
  });
}

beforeAll(async () => {
  project = mkTmpDir('lockspace-copies-');
  locks = path.join(project, 'locks');
  fs.mkdirSync(locks);
  for (const dep of ['bindings', 'file-uri-to-path', 'node-addon-api'])
    fs.cpSync(path.join(ROOT, 'node_modules', dep), path.join(project, 'node_modules', dep), { recursive: true });
  versions.a = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')).version;
  copies.a = install('dep-a', versions.a);
  fs.mkdirSync(path.join(copies.a, 'build', 'Release'), { recursive: true });
  // Copy A's binary is the one under test: LOCKSPACE_BINARY (a shipped one), or this checkout's build.
  const binaryUnderTest = process.env.LOCKSPACE_BINARY ?? path.join(ROOT, 'build', 'Release', 'lockspace.node');
  fs.cpSync(binaryUnderTest, path.join(copies.a, 'build', 'Release', 'lockspace.node'));
  copies.d = install('dep-d', versions.a); // byte for byte copy A, at another path
  fs.mkdirSync(path.join(copies.d, 'build', 'Release'), { recursive: true });
  fs.cpSync(path.join(copies.a, 'build', 'Release', 'lockspace.node'), path.join(copies.d, 'build', 'Release', 'lockspace.node'));
  copies.b = install('dep-b', versions.b);
  copies.c = install('dep-c', versions.c);
  const nodedir = execFileSync('npm', ['config', 'get', 'nodedir'], { encoding: 'utf8' }).trim();
  await Promise.all([
    build(copies.b, {}, nodedir),
    build(copies.c, { LOCKSPACE_TEST_TABLE_FORMAT: '99' }, nodedir),
  ]);
}, 600000);

afterAll(() => rmTmpDir(project));

/** Each copy loads its own binary in the children: no LOCKSPACE_BINARY. */
const { LOCKSPACE_BINARY: _chosen, ...childEnv } = process.env;

function run(scenario: string, arg?: string, b = copies.b): Promise<any> {
  const cfg = { scenario, arg, dir: locks, a: copies.a, b, c: copies.c };
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(FIXTURES, 'copies-child.js'), JSON.stringify(cfg)], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...childEnv, LOCKSPACE_PYTHON: python() },
    });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d) => (err += d));
    child.on('error', reject);
    child.on('close', (status, signal) => {
      try {
        expect({ status, signal, stderr: err }).toEqual({ status: 0, signal: null, stderr: '' });
        resolve(JSON.parse(out.trim().split('\n').pop()!));
      } catch (e) {
        reject(e);
      }
    });
  });
}

const busyHere = { code: 'EBUSY', message: expect.stringContaining('in this process') };

beforeEach(() => {
  for (const f of ['r', 'x', 'h', 'w', 'w2', 'g', 'g2', 'z', 'i']) fs.writeFileSync(path.join(locks, f), '');
});

test.each([
  ['plain', 'b'],
  ['global', 'b'],
  ['plain', 'd'],
])('two copies in the main thread work through one table (%s, copy %s)', async (how, other) => {
  const out = await run('main', how, other === 'b' ? copies.b : copies.d);
  expect(out).toEqual({
    joinedLeases: [2, 2], // each copy sees both leases: one table
    afterBRelease: { aHeld: true, outside: 'busy' }, // B's release kept A's kernel lock
    afterARelease: 'locked',
    bOnA: busyHere,
    aOnB: busyHere,
    outsideWhileB: 'busy',
    waitersWhileQueued: [1, 1],
    handedOff: { bHeld: true, outside: 'busy' },
    afterHandOff: 'locked',
    leasesAtEnd: [0, 0],
  });
});

test('a cycle of waits through two copies: one waiter fails with EDEADLK naming both, the other goes on', async () => {
  const out = await run('deadlock');
  expect(out).toEqual({
    first: {
      code: 'EDEADLK',
      message: expect.stringMatching(/owner "a" waits for '.*\/z', held by owner "b"; owner "b" waits for '.*\/x', held by owner "a"/),
      isCopyAError: true, // the older wait, copy A's, looked first
    },
    second: { held: true, outside: 'busy' },
    leasesAtEnd: [0, 0],
    waitersAtEnd: 0,
  });
});

test.each(['main', 'worker'])('a copy loaded only in a worker shares the table (%s loads first)', async (first) => {
  const out = await run('worker', first);
  expect(out).toEqual({
    worker: { held: true, leases: 1 },
    mainOnWorker: busyHere,
    mainSeesLeases: 1,
    workerReleased: { released: true },
    afterWorker: 'locked',
    mainHolds: { held: true, outside: 'busy' },
    secondWorker: { held: true, leases: 2 },
    mainOnSecondWorker: busyHere,
    afterTerminate: 'locked',
    leasesAtEnd: 0,
  });
});

test('a copy that owns the table from a worker keeps it after that worker exits', async () => {
  const out = await run('workerGone');
  expect(out).toEqual({
    worker: { held: true, leases: 1 },
    mainHolds: { held: true, outside: 'busy' },
    secondWorker: { held: true, leases: 2 },
    mainOnSecondWorker: busyHere,
    afterTerminate: 'locked',
    afterRelease: 'locked',
    leasesAtEnd: 0,
  });
});

test('two copies loading at the same moment on two threads elect one owner', async () => {
  for (let i = 0; i < 5; i++) {
    expect(await run('race')).toEqual({
      worker: 'held',
      mainOnWorker: busyHere,
      released: 'released',
      mainHolds: { held: true, outside: 'busy' },
    });
  }
});

test.each(['a', 'c'])('a copy with another table format refuses to load, naming both (%s loads first)', async (first) => {
  const out = await run('incompatible', first);
  const [loaded, refused] = first === 'a' ? ['a', 'c'] : ['c', 'a'];
  const node = (k: 'a' | 'b' | 'c') => path.join(copies[k], 'build', 'Release', 'lockspace.node');
  const format = (k: string) => (k === 'c' ? 99 : 6);
  expect(out.refused.code).toBe('ERR_LOCKSPACE_INCOMPATIBLE_COPY');
  expect(out.refused.message).toContain(
    `cannot load ${node(refused as 'a' | 'c')} (version ${versions[refused as 'a' | 'c']}, table format ${format(refused)})`,
  );
  expect(out.refused.message).toContain(
    `${node(loaded as 'a' | 'c')} (version ${versions[loaded as 'a' | 'c']}, table format ${format(loaded)})`,
  );
  expect(out.firstStillWorks).toEqual({ held: true, outside: 'busy' });
  expect(out.afterRelease).toBe('locked');
});

// A copy that joins runs the owner's binding under its own lib/, so the binding's interface is part
// of the table format. A tripwire for one part of it, the export names: when they change, update this
// list, and bump LOCKSPACE_TABLE_FORMAT (native/core/shared_table.h) if a released version had the old one.
test('the binding exports what table format 6 promises', () => {
  expect(Object.keys(binding).filter((k) => k !== 'path' /* set by `bindings` */).sort()).toEqual([
    'acquire',
    'acquireAsync',
    'acquireWait',
    'acquireWaitAsync',
    'cancel',
    'checkDeadlock',
    'closeIdleFds',
    'constants',
    'create',
    'createAsync',
    'inspect',
    'inspectAsync',
    'isHeld',
    'isRemote',
    'openDir',
    'queryLocks',
    'queued',
    'release',
    'releaseAsync',
    'releaseByName',
    'releaseByNameAsync',
    'releaseOwner',
    'releaseOwnerAsync',
    'remove',
    'removeAsync',
    'resources',
    'setDispatcher',
    'setForceRemote',
    'setIdleLimit',
    'stats',
    'verify',
    'verifyAsync',
    'writeRecord',
    'writeRecordAsync',
  ]);
});
