/* ls.inspect() never says 'free' while another process holds the lock: not on a busy host (where
 * /proc/locks changes while it is read), not inside a pid namespace (where /proc/locks leaves out
 * the locks of processes the namespace cannot see), not when /proc/locks is empty or unreadable.
 * Holders are python fcntl.lockf processes; namespaces need root and unshare(1). */
import * as fs from 'fs';
import * as path from 'path';
import { spawn, spawnSync } from 'child_process';
import { LockSpace } from '../lib';
import { AS_NOBODY, FIXTURES, Holder, holderFromChild, IN_PID_NAMESPACE, procLocksReplacedBy, python, socketFile, spawnPythonHolder, useTmpDir } from './helpers';
import { cli } from './cli-helpers';

const tmp = useTmpDir();
const holders: Holder[] = [];
afterEach(async () => {
  await Promise.all(holders.splice(0).map((h) => h.kill()));
});

async function hold(paths: string | string[], mode: 'exclusive' | 'shared' = 'exclusive'): Promise<Holder> {
  const h = await spawnPythonHolder(paths, mode);
  holders.push(h);
  return h;
}

// Locks and unlocks its files in a loop until killed.
const CHURN_PY = `
import fcntl, os, sys
fds = [os.open(p, os.O_RDWR) for p in sys.argv[1:]]
print('locked %d' % os.getpid(), flush=True)
while True:
    for fd in fds:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0)
    for fd in fds:
        fcntl.lockf(fd, fcntl.LOCK_UN, 1, 0)
`;

function files(dir: string, prefix: string, n: number): string[] {
  fs.mkdirSync(dir, { recursive: true });
  return Array.from({ length: n }, (_, i) => {
    const p = path.join(dir, `${prefix}${i}`);
    fs.writeFileSync(p, '');
    return p;
  });
}

/** Runs test/fixtures/inspect-child.js under `wrap` (a command prefix); its inspect result. */
function inspectIn(wrap: string[], dir: string, name: string): any {
  const r = spawnSync(wrap[0], [...wrap.slice(1), process.execPath, path.join(FIXTURES, 'inspect-child.js'), dir, name], {
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`inspect in ${wrap.join(' ')} failed (${r.status}): ${r.stdout} ${r.stderr}`);
  return JSON.parse(r.stdout);
}

test('on a busy host (3,000 locks held, two processes churning 200 files each) a held file is never free', async () => {
  const target = path.join(tmp.dir, 'disk');
  fs.writeFileSync(target, '');
  // The holder of the file asked about locks first, so its line is behind all the others that come and go.
  const h = await hold(target);
  await hold(files(path.join(tmp.dir, 'held'), 'h', 3000));
  for (const c of ['c1', 'c2']) {
    const child = spawn(python(), ['-c', CHURN_PY, ...files(path.join(tmp.dir, c), 'f', 200)], { stdio: ['pipe', 'pipe', 'pipe'] });
    holders.push(await holderFromChild(child, 'churn'));
  }
  const ls = LockSpace.open(tmp.dir, { checkInterval: 0 });
  const seen = new Map<string, number>();
  for (let i = 0; i < 300; i++) {
    const info = ls.inspectSync('disk');
    const key = `${info.state} ${JSON.stringify(info.holders)}`;
    seen.set(key, (seen.get(key) ?? 0) + 1);
  }
  expect([...seen]).toEqual([[`exclusive ${JSON.stringify([{ pid: h.pid, mode: 'exclusive', kind: 'posix' }])}`, 300]]);
  // status too (the directories of the other files are not resources)
  for (let i = 0; i < 10; i++) {
    const st = JSON.parse(cli(['status', tmp.dir, '--json']).stdout);
    expect(st.resources).toEqual([expect.objectContaining({ name: 'disk', state: 'exclusive', holders: [expect.objectContaining({ pid: h.pid })] })]);
  }
});

test('on a busy host every shared holder of a file is listed, every time (/proc/locks can skip a line: it is read again, and fdinfo asked)', async () => {
  const target = path.join(tmp.dir, 'iso');
  fs.writeFileSync(target, '');
  const readers = [await hold(target, 'shared'), await hold(target, 'shared')];
  // Enough locks for /proc/locks to take several reads, released and taken again all the time.
  const child = spawn(python(), ['-c', CHURN_PY, ...files(path.join(tmp.dir, 'c'), 'f', 300)], { stdio: ['pipe', 'pipe', 'pipe'] });
  holders.push(await holderFromChild(child, 'churn'));
  const ls = LockSpace.open(tmp.dir, { checkInterval: 0 });
  const expected = readers.map((r) => ({ pid: r.pid, mode: 'shared', kind: 'posix' })).sort((a, b) => a.pid - b.pid);
  const seen = new Map<string, number>();
  for (let i = 0; i < 300; i++) {
    const info = ls.inspectSync('iso');
    const key = `${info.state} ${JSON.stringify([...info.holders].sort((a, b) => (a.pid ?? 0) - (b.pid ?? 0)))}`;
    seen.set(key, (seen.get(key) ?? 0) + 1);
  }
  expect([...seen]).toEqual([[`shared ${JSON.stringify(expected)}`, 300]]);
});

test('in its own pid namespace, where /proc/locks leaves out the holder, a held file is held', async () => {
  fs.writeFileSync(path.join(tmp.dir, 'disk'), '');
  fs.writeFileSync(path.join(tmp.dir, 'shared'), '');
  fs.writeFileSync(path.join(tmp.dir, 'free'), '');
  await hold(path.join(tmp.dir, 'disk'));
  await hold(path.join(tmp.dir, 'shared'), 'shared');
  // The holder's pid does not exist in that namespace: it cannot be named.
  expect(inspectIn(IN_PID_NAMESPACE, tmp.dir, 'disk')).toMatchObject({ state: 'exclusive', holders: [{ pid: null, mode: 'exclusive', kind: 'posix' }] });
  expect(inspectIn(IN_PID_NAMESPACE, tmp.dir, 'shared')).toMatchObject({ state: 'shared', holders: [{ pid: null, mode: 'shared', kind: 'posix' }] });
  expect(inspectIn(IN_PID_NAMESPACE, tmp.dir, 'free')).toMatchObject({ state: 'free', holders: [] });
});

test('a file this process cannot open for the lock query is unknown, not free, unless /proc/locks shows a lock', async () => {
  fs.chmodSync(tmp.dir, 0o755);
  for (const n of ['disk', 'free']) fs.writeFileSync(path.join(tmp.dir, n), '', { mode: 0o600 });
  const h = await hold(path.join(tmp.dir, 'disk'));
  const free = inspectIn(AS_NOBODY, tmp.dir, 'free');
  expect(free).toMatchObject({ state: 'unknown', holders: [], error: { code: 'EACCES', syscall: 'open' } });
  expect(inspectIn(AS_NOBODY, tmp.dir, 'disk')).toMatchObject({ state: 'exclusive', holders: [{ pid: h.pid, mode: 'exclusive', kind: 'posix' }] });
});

test.each(['empty', 'unreadable'])('with /proc/locks %s the lock query still tells held from free', async (how) => {
  fs.writeFileSync(path.join(tmp.dir, 'disk'), '');
  fs.writeFileSync(path.join(tmp.dir, 'free'), '');
  const h = await hold(path.join(tmp.dir, 'disk'));
  const wrap = procLocksReplacedBy(how === 'empty' ? '/dev/null' : socketFile(tmp.dir));
  expect(inspectIn(wrap, tmp.dir, 'disk')).toMatchObject({ state: 'exclusive', holders: [{ pid: h.pid, mode: 'exclusive', kind: 'posix' }] });
  expect(inspectIn(wrap, tmp.dir, 'free')).toMatchObject({ state: 'free', holders: [] });
});
