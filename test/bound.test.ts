/* Bound sets (LockSpace#holdFor): a VM's locks held for the life of the VM by a holder process of
 * their own, whatever happens to the manager that bound them; fenced when lost. Every claim of
 * exclusion is checked from outside, by python's fcntl.lockf. */
import * as dc from 'diagnostics_channel';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { ChildProcess, spawn, spawnSync } from 'child_process';
import { BoundSet, LockSpace } from '../lib';
import type { FencedMessage } from '../lib';
import { HOLDER_PROGRAM } from '../lib/native';
import { cli, cliAsync, CLI, statusJson } from './cli-helpers';
import {
  AS_NOBODY,
  catchErr,
  DIST_INDEX,
  FIXTURES,
  IN_PID_NAMESPACE,
  outsideProbe,
  outsideProbeSync,
  python,
  sleep,
  spawnPythonHolder,
  useTmpDir,
  waitFor,
} from './helpers';

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

const tmp = useTmpDir();
const children: ChildProcess[] = [];
const holders: number[] = [];

afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const pid of holders.splice(0)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }
});

function alive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
    return stat[stat.lastIndexOf(')') + 2] !== 'Z';
  } catch {
    return false;
  }
}

/** A VM stand-in: a sleeping process this test may kill. */
function startVm(): ChildProcess {
  const vm = spawn('sleep', ['1000'], { stdio: 'ignore' });
  children.push(vm);
  return vm;
}

function exited(child: ChildProcess): Promise<NodeJS.Signals | number | null> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve(child.signalCode ?? child.exitCode);
    else child.once('exit', (code, sig) => resolve(sig ?? code));
  });
}

function disks(names: string[]): string[] {
  return names.map((n) => {
    const p = path.join(tmp.dir, n);
    fs.writeFileSync(p, '');
    return p;
  });
}

async function probes(paths: string[]): Promise<string[]> {
  return Promise.all(paths.map((p) => outsideProbe(p)));
}

/** Every process's descriptors that reach a file under `dir`. */
function descriptorsUnder(dir: string): string[] {
  const found: string[] = [];
  for (const pid of fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    let fds: string[] = [];
    try {
      fds = fs.readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        const target = fs.readlinkSync(`/proc/${pid}/fd/${fd}`);
        if (target.startsWith(`${dir}/`)) found.push(`${pid}: ${target}`);
      } catch {
        // closed meanwhile
      }
    }
  }
  return found;
}

/** Collects 'lockspace:fenced' messages into `into`; returns the unsubscribe. */
function hearFenced(into: FencedMessage[]): () => void {
  const listener = (m: unknown) => into.push(m as FencedMessage);
  dc.subscribe('lockspace:fenced', listener);
  return () => dc.unsubscribe('lockspace:fenced', listener);
}

/** Starts test/fixtures/bind-manager.js; resolves with the VM's and the holder's pids. */
function startManager(cfg: object): Promise<{ manager: ChildProcess; vm: number; holder: number }> {
  const manager = spawn(process.execPath, [path.join(FIXTURES, 'bind-manager.js'), JSON.stringify(cfg)], { stdio: ['pipe', 'pipe', 'inherit'] });
  children.push(manager);
  return new Promise((resolve, reject) => {
    let out = '';
    manager.stdout!.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      const m = /bound (\{.*\})\n/.exec(out);
      if (m) {
        const { vm, holder } = JSON.parse(m[1]) as { vm: number; holder: number };
        holders.push(holder);
        resolve({ manager, vm, holder });
      }
    });
    manager.on('exit', () => reject(new Error(`manager exited: ${out}`)));
  });
}

test.each(['posix', 'ofd'] as const)('a %s set bound to a VM outlives its SIGKILLed manager, and goes when the VM ends', async (lockType) => {
  const paths = disks(['disk1', 'disk2', 'disk3']);
  const { manager, vm, holder } = await startManager({ directory: tmp.dir, names: ['disk1', 'disk2', 'disk3'], lockType });
  manager.kill('SIGKILL');
  await exited(manager);
  // For 30 s and at least 20 probe rounds (a loaded machine runs fewer in 30 s), nobody else can take
  // any of the three, and status names the VM.
  const until = Date.now() + 30_000;
  for (let round = 0; round < 20 || Date.now() < until; round++) {
    expect(await probes(paths)).toEqual(['busy', 'busy', 'busy']);
    await sleep(1000);
  }
  const status = statusJson([tmp.dir]);
  for (const r of status.resources) {
    expect(r.holders).toEqual([expect.objectContaining({ pid: holder, boundTo: expect.objectContaining({ pid: vm, command: 'sleep 1000' }) })]);
  }
  expect(status.bound).toEqual([expect.objectContaining({ pid: vm, holderPid: holder, names: ['disk1', 'disk2', 'disk3'], state: 'held', lockType })]);

  const killedAt = Date.now();
  process.kill(vm, 'SIGKILL');
  await waitFor(async () => (await probes(paths)).every((p) => p === 'locked'), 'all three free');
  process.stdout.write(`bound ${lockType}: the VM killed -> all three free after ${Date.now() - killedAt} ms\n`);
  await waitFor(() => !alive(holder), 'the holder gone');
  expect(descriptorsUnder(tmp.dir)).toEqual([]);
}, 180_000); // 30 s of probes at least, and more on a loaded machine

test('all or nothing: a busy member fails the bind (EBUSY, or ETIMEDOUT with wait), the others stay free, created files go', async () => {
  const [a, b, c] = disks(['a', 'b', 'c']);
  const python = await spawnPythonHolder(c);
  try {
    const ls = LockSpace.open(tmp.dir);
    const vm = startVm();
    const busy = await catchErr(() => ls.holdFor(vm.pid!, ['a', 'b', 'c', 'new'], { autoCreate: true }));
    expect(busy).toMatchObject({ code: 'EBUSY', syscall: 'holdFor', path: c, holderPid: python.pid, heldByThisProcess: false });
    expect(await probes([a, b])).toEqual(['locked', 'locked']);
    const timedOut = await catchErr(() => ls.holdFor(vm.pid!, ['a', 'b', 'c'], { wait: true, timeout: 300 }));
    expect(timedOut).toMatchObject({ code: 'ETIMEDOUT', path: c });
    expect(await probes([a, b])).toEqual(['locked', 'locked']);
    const ac = new AbortController();
    const aborted = catchErr(() => ls.holdFor(vm.pid!, ['a', 'c'], { wait: true, signal: ac.signal }));
    await sleep(100);
    ac.abort();
    expect(await aborted).toMatchObject({ name: 'AbortError' });
    expect(await probes([a])).toEqual(['locked']);
    expect(fs.readdirSync(tmp.dir).sort()).toEqual(['a', 'b', 'c']);
  } finally {
    await python.release();
  }
});

test('a wait for a busy member holds none of the others meanwhile, and binds once it is free', async () => {
  const [a, b] = disks(['a', 'b']);
  const python = await spawnPythonHolder(b);
  const ls = LockSpace.open(tmp.dir);
  const vm = startVm();
  const pending = ls.holdFor(vm.pid!, ['a', 'b'], { wait: true, timeout: 20_000 });
  await sleep(300);
  expect(await probes([a])).toEqual(['locked']); // not held while b is waited for
  await python.release();
  const set = await pending;
  holders.push(set.holderPid);
  expect(await probes([a, b])).toEqual(['busy', 'busy']);
});

test('the second name of one file is checked as the first: replaced, the lock is lost and the VM fenced', async () => {
  const [a] = disks(['a']);
  const link = path.join(tmp.dir, 'a-link');
  fs.linkSync(a, link);
  const ls = LockSpace.open(tmp.dir);
  const vm = startVm();
  const set = await ls.holdFor(vm.pid!, ['a', 'a-link'], { checkInterval: 100 });
  holders.push(set.holderPid);
  // Another file takes the second name: whoever opens a-link now locks the new file.
  fs.writeFileSync(`${link}.new`, '');
  fs.renameSync(`${link}.new`, link);
  expect(await exited(vm)).toBe('SIGKILL');
  await waitFor(() => set.signal.aborted, "the manager's signal");
  expect(set.signal.reason).toMatchObject({ code: 'ERR_LOCK_LOST', path: link });
});

test('two names of one file (a hard link) are one lock, not a conflict with itself', async () => {
  const [a] = disks(['a']);
  fs.linkSync(a, path.join(tmp.dir, 'a-link'));
  const ls = LockSpace.open(tmp.dir);
  const vm = startVm();
  const set = await ls.holdFor(vm.pid!, [{ name: 'a', shared: true }, 'a-link']);
  holders.push(set.holderPid);
  expect(set.names).toEqual(['a', 'a-link']);
  expect(await outsideProbe(a, 'shared')).toBe('busy'); // exclusive: one name asked for it
});

test('a process that ends before the bind completes: ESRCH, nothing held', async () => {
  const [a] = disks(['a']);
  // A zombie: its pid exists (pidfd_open succeeds) but the process has ended.
  const parent = spawn(python(), ['-c', 'import os, sys, time\npid = os.fork()\nif pid == 0: os._exit(0)\nprint(pid, flush=True)\ntime.sleep(60)'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.push(parent);
  const zombie = Number(await new Promise<string>((resolve) => parent.stdout!.setEncoding('utf8').once('data', resolve)));
  await waitFor(() => !alive(zombie), 'the child a zombie');
  const ls = LockSpace.open(tmp.dir);
  expect(await catchErr(() => ls.holdFor(zombie, ['a']))).toMatchObject({ code: 'ESRCH', syscall: 'holdFor' });
  expect(await probes([a])).toEqual(['locked']);
  expect(await catchErr(() => ls.holdFor(2 ** 22, ['a']))).toMatchObject({ code: 'ESRCH' });
});

test("a VM whose command holds ') ' and spaces: the manager and the holder read one start time", async () => {
  const [a] = disks(['a']);
  // The command (field 2 of /proc/PID/stat) is parenthesised but may itself hold ') ': both parses
  // count the fields after the last ')', or the holder would refuse the bind (ESRCH).
  const vm = spawn(python(), ['-c', "open('/proc/self/comm', 'w').write('vm) 1 2 (x) 3')\nprint('ready', flush=True)\nimport time\ntime.sleep(1000)"], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.push(vm);
  await new Promise((resolve) => vm.stdout!.once('data', resolve));
  expect(fs.readFileSync(`/proc/${vm.pid}/comm`, 'latin1')).toBe('vm) 1 2 (x) 3\n');
  const set = await LockSpace.open(tmp.dir).holdFor(vm.pid!, ['a']);
  holders.push(set.holderPid);
  expect(await probes([a])).toEqual(['busy']);
  vm.kill('SIGKILL');
  await waitFor(async () => (await probes([a]))[0] === 'locked', 'a free once the VM ends');
});

test('a bound set never outlives its process when the pid number is reused', () => {
  disks(['a']);
  // In a pid namespace of its own, the next pid can be chosen (ns_last_pid): the VM's pid is given
  // to a new process right after the VM ends.
  const script = `
    const { spawn, spawnSync } = require('child_process');
    const fs = require('fs');
    const { LockSpace } = require(${JSON.stringify(DIST_INDEX)});
    const probe = () => spawnSync(${JSON.stringify(python())}, ['-c', 'import fcntl, os, sys\\nfd = os.open(sys.argv[1], os.O_RDWR)\\ntry:\\n  fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0)\\n  print("locked")\\nexcept OSError:\\n  print("busy")', ${JSON.stringify(path.join(tmp.dir, 'a'))}], { encoding: 'utf8' }).stdout.trim();
    (async () => {
      const vm = spawn('sleep', ['1000'], { stdio: 'ignore' });
      const set = await LockSpace.open(${JSON.stringify(tmp.dir)}).holdFor(vm.pid, ['a']);
      const before = probe();
      vm.kill('SIGKILL');
      await new Promise((r) => vm.once('exit', r));
      fs.writeFileSync('/proc/sys/kernel/ns_last_pid', String(vm.pid - 1));
      const next = spawn('sleep', ['1000'], { stdio: 'ignore' });
      let after = 'busy';
      for (let i = 0; i < 100 && after === 'busy'; i++) { await new Promise((r) => setTimeout(r, 20)); after = probe(); }
      console.log(JSON.stringify({ vm: vm.pid, next: next.pid, before, after, state: set.state }));
      next.kill('SIGKILL');
    })();`;
  const r = spawnSync(IN_PID_NAMESPACE[0], [...IN_PID_NAMESPACE.slice(1), process.execPath, '-e', script], { encoding: 'utf8', timeout: 30_000 });
  expect(r.stderr).toBe('');
  const result = JSON.parse(r.stdout) as { vm: number; next: number; before: string; after: string; state: string };
  expect(result.next).toBe(result.vm); // the pid was reused
  expect(result).toMatchObject({ before: 'busy', after: 'locked', state: 'ended' });
});

test('a restarted manager finds the set, cannot release it while the VM runs, and can force it', async () => {
  const [a, b] = disks(['a', 'b']);
  const { manager, vm, holder } = await startManager({ directory: tmp.dir, names: ['a', { name: 'b', shared: true }] });
  manager.kill('SIGKILL');
  await exited(manager);
  const ls = LockSpace.open(tmp.dir);
  const found = await ls.boundSets();
  expect(found).toHaveLength(1);
  const [set] = found;
  expect(set).toBeInstanceOf(BoundSet);
  expect({ pid: set.pid, holderPid: set.holderPid, names: set.names, state: set.state, lockType: set.lockType, onLost: set.onLost }).toEqual({
    pid: vm,
    holderPid: holder,
    names: ['a', 'b'],
    state: 'held',
    lockType: 'posix',
    onLost: 'kill',
  });
  expect(await LockSpace.open(path.join(tmp.dir, 'other')).boundSets()).toEqual([]);
  expect(await catchErr(() => set.release())).toMatchObject({ code: 'ERR_BOUND_PROCESS_RUNNING' });
  expect(await probes([a])).toEqual(['busy']);
  await set.release({ force: true });
  expect(alive(holder)).toBe(false);
  expect(await probes([a, b])).toEqual(['locked', 'locked']);
  expect(alive(vm)).toBe(true); // a release on purpose fences nothing
  process.kill(vm, 'SIGKILL');
  expect(await ls.boundSets()).toEqual([]);
});

test('a holder that dies takes the locks with it, so its guardian fences the VM and the manager hears it', async () => {
  disks(['a']);
  const ls = LockSpace.open(tmp.dir);
  const vm = startVm();
  const fenced: FencedMessage[] = [];
  const stop = hearFenced(fenced);
  try {
    const set = await ls.holdFor(vm.pid!, ['a']);
    process.kill(set.holderPid, 'SIGKILL');
    expect(await exited(vm)).toBe('SIGKILL');
    await waitFor(() => fenced.length > 0, 'the fenced message');
    expect(fenced[0]).toMatchObject({ pid: vm.pid, holderPid: set.holderPid, names: ['a'], lostName: null, action: 'SIGKILL' });
    expect(set.signal.aborted).toBe(true);
    expect(set.signal.reason).toMatchObject({ code: 'ERR_LOCK_LOST' });
  } finally {
    stop();
  }
});

test('a holder that cannot start its guardian holds nothing: it says why and ends, and the VM runs on unfenced', async () => {
  const [a] = disks(['a']);
  fs.chmodSync(tmp.dir, 0o777);
  fs.chmodSync(a, 0o666);
  const vm = startVm();
  // Run as a user of its own, allowed one process: the holder itself starts, its fork fails (EAGAIN).
  // Nobody would fence the VM if such a holder died, so it must not say "held".
  const asOwnUser = ['setpriv', '--reuid=61907', '--regid=61907', '--clear-groups'];
  const r = spawnSync('prlimit', ['--nproc=1:1', ...asOwnUser, HOLDER_PROGRAM, '--pid', String(vm.pid), '--', `x${a}`], {
    encoding: 'utf8',
    timeout: 5000,
    killSignal: 'SIGKILL',
  });
  expect(r.stdout).toBe(`error ${os.constants.errno.EAGAIN} fork -2\n`);
  expect(r.status).toBe(1);
  expect(await probes([a])).toEqual(['locked']);
  expect(alive(vm.pid!)).toBe(true);
});

test('holdFor given up after the holder took the set (its "held" not read yet): rejects with the abort, nothing stays held, the VM runs on', async () => {
  const [a] = disks(['a']);
  const ls = LockSpace.open(tmp.dir);
  const vm = startVm();
  const ac = new AbortController();
  const bind = ls.holdFor(vm.pid!, ['a'], { wait: true, signal: ac.signal });
  // The event loop stays busy until the holder holds the file and has said so: its "held" waits in
  // the pipe, unread, when the manager gives up.
  while (outsideProbeSync(a) !== 'busy') sleepSync(10);
  sleepSync(300);
  ac.abort();
  expect(await catchErr(() => bind)).toMatchObject({ name: 'AbortError' });
  expect(await probes([a])).toEqual(['locked']);
  expect(alive(vm.pid!)).toBe(true);
  expect(await ls.boundSets()).toEqual([]);
});

test('a holder told to end (SIGTERM) while its VM runs fences the VM first, and holds the locks until it has ended', async () => {
  const [a] = disks(['a']);
  const ls = LockSpace.open(tmp.dir);
  // A VM that says so when it gets SIGTERM and runs on: onLost 'term' gives it graceMs before SIGKILL.
  const vm = spawn(
    python(),
    ['-c', 'import signal, time\nsignal.signal(signal.SIGTERM, lambda *_: print("term", flush=True))\nprint("ready", flush=True)\nwhile True: time.sleep(1)'],
    { stdio: ['ignore', 'pipe', 'ignore'] },
  );
  children.push(vm);
  let said = '';
  vm.stdout!.setEncoding('utf8').on('data', (d: string) => (said += d));
  await waitFor(() => said.includes('ready'), 'the VM to start');
  const fenced: FencedMessage[] = [];
  const stop = hearFenced(fenced);
  try {
    const set = await ls.holdFor(vm.pid!, ['a'], { onLost: 'term', graceMs: 5000 });
    holders.push(set.holderPid);
    process.kill(set.holderPid, 'SIGTERM');
    await waitFor(() => said.includes('term'), 'the VM to get its SIGTERM');
    // Fenced, and running on through the grace time: its lock stays held meanwhile, the manager has
    // heard, and the set shows as lost to anyone who looks.
    expect(await probes([a])).toEqual(['busy']);
    expect(alive(vm.pid!)).toBe(true);
    await waitFor(() => set.signal.aborted, "the manager's signal");
    expect((await ls.boundSets()).map((found) => found.state)).toEqual(['lost']);
    expect(await exited(vm)).toBe('SIGKILL');
    await set.ended();
    expect(await probes([a])).toEqual(['locked']);
    await waitFor(() => fenced.length > 0, 'the fenced message');
    expect(fenced[0]).toMatchObject({ pid: vm.pid, holderPid: set.holderPid, names: ['a'], lostName: null, action: 'SIGTERM,SIGKILL' });
    expect(set.signal.reason).toMatchObject({ code: 'ERR_LOCK_LOST' });
  } finally {
    stop();
  }
});

test("onLost 'none' and a holder told to end (SIGTERM): the locks go and the VM runs on, but the manager hears it", async () => {
  const [a] = disks(['a']);
  const ls = LockSpace.open(tmp.dir);
  const vm = startVm();
  const fenced: FencedMessage[] = [];
  const stop = hearFenced(fenced);
  try {
    const set = await ls.holdFor(vm.pid!, ['a'], { onLost: 'none' });
    holders.push(set.holderPid);
    process.kill(set.holderPid, 'SIGTERM');
    await set.ended();
    expect(await probes([a])).toEqual(['locked']);
    expect(alive(vm.pid!)).toBe(true);
    await waitFor(() => fenced.length > 0, 'the fenced message');
    expect(fenced[0]).toMatchObject({ pid: vm.pid, holderPid: set.holderPid, action: 'none' });
    expect(set.signal.reason).toMatchObject({ code: 'ERR_LOCK_LOST' });
  } finally {
    stop();
  }
});

test.each([
  ['kill', 'SIGKILL'],
  ['term', 'SIGTERM'],
] as const)('a lost lock (its file replaced) fences the VM: onLost %s', async (onLost, signal) => {
  const [, b] = disks(['a', 'b']);
  const ls = LockSpace.open(tmp.dir);
  const vm = startVm();
  const fenced: FencedMessage[] = [];
  const stop = hearFenced(fenced);
  try {
    const set = await ls.holdFor(vm.pid!, ['a', 'b'], { onLost, checkInterval: 100, graceMs: 2000 });
    holders.push(set.holderPid);
    // Another file takes b's name: whoever opens b now locks the new file.
    fs.writeFileSync(`${b}.new`, '');
    fs.renameSync(`${b}.new`, b);
    expect(await exited(vm)).toBe(signal);
    await waitFor(() => fenced.length > 0, 'the fenced message');
    expect(fenced[0]).toMatchObject({ pid: vm.pid, lostName: 'b', action: signal });
    expect(set.signal.reason).toMatchObject({ code: 'ERR_LOCK_LOST', path: b, cause: expect.objectContaining({ code: 'ENOENT' }) });
  } finally {
    stop();
  }
});

test("onLost 'none': the VM runs on, and status shows the set lost", async () => {
  const [a] = disks(['a']);
  const ls = LockSpace.open(tmp.dir);
  const vm = startVm();
  const set = await ls.holdFor(vm.pid!, ['a'], { onLost: 'none', checkInterval: 100 });
  holders.push(set.holderPid);
  fs.writeFileSync(`${a}.new`, '');
  fs.renameSync(`${a}.new`, a);
  await waitFor(() => set.signal.aborted, 'the loss reported');
  await waitFor(() => set.state === 'lost', "the holder's state");
  expect(alive(vm.pid!)).toBe(true);
  const [found] = statusJson([tmp.dir]).bound;
  expect(found).toMatchObject({ pid: vm.pid, state: 'lost', onLost: 'none' });
});

test('nobody else may see, release or fence a set: another user reads no record and signals nothing', async () => {
  const [a] = disks(['a']);
  fs.chmodSync(tmp.dir, 0o755); // even with the directory readable
  const ls = LockSpace.open(tmp.dir);
  const vm = startVm();
  const set = await ls.holdFor(vm.pid!, ['a']);
  holders.push(set.holderPid);
  // The holder listens on nothing: stdin is /dev/null, and its one socket is stdout (Node's pipe to
  // the manager that started it, which it only writes).
  const fds = fs.readdirSync(`/proc/${set.holderPid}/fd`).map((fd) => [fd, fs.readlinkSync(`/proc/${set.holderPid}/fd/${fd}`)]);
  expect(fds.filter(([, t]) => t.startsWith('socket:')).map(([fd]) => fd)).toEqual(['1']);
  expect(fs.readlinkSync(`/proc/${set.holderPid}/fd/0`)).toBe('/dev/null');
  const script = `
    const fs = require('fs');
    const { LockSpace } = require(${JSON.stringify(DIST_INDEX)});
    const out = {};
    out.sets = require(${JSON.stringify(path.join(path.dirname(DIST_INDEX), 'bound-holders.js'))}).findHolders().length;
    LockSpace.open(${JSON.stringify(tmp.dir)}).boundSets().then((s) => {
      out.boundSets = s.length;
      try { fs.readFileSync('/proc/${set.holderPid}/environ'); out.environ = 'read'; } catch (e) { out.environ = e.code; }
      for (const sig of ['SIGTERM', 'SIGKILL', 'SIGSTOP']) {
        try { process.kill(${set.holderPid}, sig); out[sig] = 'sent'; } catch (e) { out[sig] = e.code; }
      }
      try { process.kill(${vm.pid}, 'SIGKILL'); out.vm = 'sent'; } catch (e) { out.vm = e.code; }
      console.log(JSON.stringify(out));
    });`;
  const r = spawnSync(AS_NOBODY[0], [...AS_NOBODY.slice(1), process.execPath, '-e', script], { encoding: 'utf8' });
  expect(r.stderr).toBe('');
  expect(JSON.parse(r.stdout)).toEqual({ sets: 0, boundSets: 0, environ: 'EACCES', SIGTERM: 'EPERM', SIGKILL: 'EPERM', SIGSTOP: 'EPERM', vm: 'EPERM' });
  // `lockspace status` as nobody: no record of the set, nor the bound process.
  const asNobody = spawnSync(AS_NOBODY[0], [...AS_NOBODY.slice(1), process.execPath, CLI, 'status', '--json', tmp.dir], { encoding: 'utf8' });
  const shown = JSON.parse(asNobody.stdout);
  expect(shown.bound).toEqual([]);
  expect(shown.resources[0].holders[0]).not.toHaveProperty('boundTo');
  expect(alive(set.holderPid)).toBe(true);
  expect(await probes([a])).toEqual(['busy']);
  expect(set.state).toBe('held');
});

test("a set found with boundSets(): its signal aborts when the set ends (the VM killed), or when a lock is lost", async () => {
  const [a] = disks(['a', 'b']);
  // Bound by another process (the manager), found here.
  const { vm } = await startManager({ directory: tmp.dir, names: ['a'] });
  const [found] = await LockSpace.open(tmp.dir).boundSets();
  expect(found.signal.aborted).toBe(false);
  process.kill(vm, 'SIGKILL');
  await waitFor(() => found.signal.aborted, "the found set's signal aborted");
  expect(found.signal.reason).toMatchObject({ code: 'ERR_LOCK_NOT_HELD', syscall: 'holdFor' });
  expect(found.state).toBe('ended');
  expect(await probes([a])).toEqual(['locked']);

  // A lost lock (onLost 'none': the VM runs on): ERR_LOCK_LOST, read from the holder's state.
  const other = startVm();
  const set = await LockSpace.open(tmp.dir).holdFor(other.pid!, ['b'], { onLost: 'none', checkInterval: 100 });
  holders.push(set.holderPid);
  const [again] = await LockSpace.open(tmp.dir).boundSets();
  expect(again.signal.aborted).toBe(false);
  const b = path.join(tmp.dir, 'b');
  fs.writeFileSync(`${b}.new`, '');
  fs.renameSync(`${b}.new`, b);
  await waitFor(() => again.signal.aborted, "the found set's signal aborted");
  expect(again.signal.reason).toMatchObject({ code: 'ERR_LOCK_LOST', syscall: 'holdFor' });
  expect(alive(other.pid!)).toBe(true);
});

test('records: true: the holder writes each member\'s holder record, with the label; other processes read it as the holder', async () => {
  const [a, b] = disks(['a', 'b']);
  const ls = LockSpace.open(tmp.dir, { records: true });
  const before = await ls.acquire('a');
  const last = before.generation!;
  await before.release();
  const vm = startVm();
  const set = await ls.holdFor(vm.pid!, ['a', { name: 'b', shared: true }], { label: 'vm-7' });
  holders.push(set.holderPid);
  expect(await probes([a, b])).toEqual(['busy', 'busy']);
  // Another process (the CLI) reads the records: the holder is their holder, exclusive a counted on.
  const byName = (resources: { name: string; records: unknown[] }[]) => Object.fromEntries(resources.map((r) => [r.name, r.records]));
  const seen = byName(statusJson([tmp.dir]).resources);
  const record = { host: os.hostname(), pid: set.holderPid, label: 'vm-7', since: expect.stringMatching(/^\d{4}-/) };
  expect(seen.a).toEqual([expect.objectContaining({ ...record, mode: 'exclusive', generation: String(last + 1n) })]);
  expect(seen.b).toEqual([expect.objectContaining({ ...record, mode: 'shared' })]);
  expect((await ls.inspect('a')).records).toMatchObject([{ pid: set.holderPid, label: 'vm-7', generation: last + 1n }]);
  // The VM ends: the holder and its records go; the next exclusive grant counts on.
  vm.kill('SIGKILL');
  await waitFor(async () => (await probes([a, b])).every((p) => p === 'locked'), 'both free');
  expect(byName(statusJson([tmp.dir]).resources)).toEqual({ a: [], b: [] });
  const after = await ls.acquire('a');
  expect(after.generation).toBe(last + 2n);
  await after.release();
  // A label needs records, as for acquire.
  const vm2 = startVm();
  expect(await catchErr(() => LockSpace.open(tmp.dir).holdFor(vm2.pid!, ['a'], { label: 'x' }))).toMatchObject({ code: 'ERR_INVALID_ARG_VALUE' });
  expect(await probes([a])).toEqual(['locked']);
});

test('bad arguments are TypeErrors and start nothing', async () => {
  disks(['a']);
  const ls = LockSpace.open(tmp.dir);
  const vm = startVm();
  const bad: [unknown, unknown, unknown, string][] = [
    [0, ['a'], undefined, 'ERR_INVALID_ARG_VALUE'],
    [-1, ['a'], undefined, 'ERR_INVALID_ARG_VALUE'],
    [1.5, ['a'], undefined, 'ERR_INVALID_ARG_VALUE'],
    [String(vm.pid), ['a'], undefined, 'ERR_INVALID_ARG_TYPE'],
    [vm.pid, [], undefined, 'ERR_INVALID_ARG_VALUE'],
    [vm.pid, ['../a'], undefined, 'ERR_INVALID_ARG_VALUE'],
    [vm.pid, ['a'], { onLost: 'explode' }, 'ERR_INVALID_ARG_VALUE'],
    [vm.pid, ['a'], { onLost: 9 }, 'ERR_INVALID_ARG_TYPE'],
    [vm.pid, ['a'], { checkInterval: 0 }, 'ERR_INVALID_ARG_VALUE'],
    [vm.pid, ['a'], { checkInterval: 1000, fenceAfter: 500 }, 'ERR_INVALID_ARG_VALUE'],
    [vm.pid, ['a'], { timeout: 5 }, 'ERR_INVALID_ARG_VALUE'],
    [vm.pid, ['a'], { owner: 'x' }, 'ERR_INVALID_ARG_VALUE'],
  ];
  const hold = ls.holdFor.bind(ls) as (...args: unknown[]) => Promise<BoundSet>;
  for (const [pid, requests, options, code] of bad) {
    const err = await catchErr(() => hold(pid, requests, options));
    expect(err).toBeInstanceOf(TypeError);
    expect(err.code).toBe(code);
  }
  expect(await ls.boundSets()).toEqual([]);
  expect(await probes([path.join(tmp.dir, 'a')])).toEqual(['locked']);
});

describe('CLI', () => {
  test('hold: 0 with the holder pid once held, 75 busy, 66 missing, 64 usage; status names the VM', async () => {
    const [a, b] = disks(['a', 'b']);
    const vm = startVm();
    const held = cli(['hold', '--pid', String(vm.pid), tmp.dir, 'a', '--and-shared', 'b']);
    expect(held.status).toBe(0);
    const holder = Number(held.stdout.trim());
    holders.push(holder);
    expect(alive(holder)).toBe(true);
    expect(await outsideProbe(a)).toBe('busy');
    expect(await outsideProbe(b, 'shared')).toBe('locked');
    expect(await outsideProbe(b)).toBe('busy');
    expect(cli(['hold', '--pid', String(vm.pid), tmp.dir, 'a'])).toMatchObject({ status: 75 });
    expect(cli(['hold', '--pid', String(vm.pid), '--wait=0.2', tmp.dir, 'a'])).toMatchObject({ status: 75 });
    expect(cli(['hold', '--pid', String(vm.pid), tmp.dir, 'missing'])).toMatchObject({ status: 66 });
    expect(cli(['hold', tmp.dir, 'a'])).toMatchObject({ status: 64 });
    expect(cli(['hold', '--pid', 'x', tmp.dir, 'a'])).toMatchObject({ status: 64 });
    expect(cli(['hold', '--pid', String(vm.pid), '--on-lost', 'maybe', tmp.dir, 'a'])).toMatchObject({ status: 64 });
    expect(fs.readdirSync(tmp.dir).sort()).toEqual(['a', 'b']);
    const table = cli(['status', tmp.dir]).stdout;
    expect(table).toMatch(new RegExp(`^a +exclusive +${holder} +lockspace-hold +POSIX +${vm.pid} sleep 1000$`, 'm'));
    expect(table).toMatch(new RegExp(`^${vm.pid} +sleep 1000 +${holder} +held +a b$`, 'm'));
    vm.kill('SIGKILL');
    await waitFor(async () => (await outsideProbe(a)) === 'locked', 'a free');
  });

  test('hold --wait given up by a signal (Ctrl-C): 128+N, and no holder is left to bind later', async () => {
    const [a] = disks(['a']);
    const vm = startVm();
    const other = await spawnPythonHolder(a);
    const hold = cliAsync(['hold', '--pid', String(vm.pid), '--wait', tmp.dir, 'a']);
    children.push(hold.child);
    const waiting = () => spawnSync('pgrep', ['-f', `lockspace-holder --pid ${vm.pid} `], { encoding: 'utf8' }).stdout.trim();
    await waitFor(() => waiting() !== '', 'the holder, waiting');
    hold.child.kill('SIGINT');
    expect((await hold.done).status).toBe(130);
    expect(waiting()).toBe('');
    await other.release();
    expect(await outsideProbe(a)).toBe('locked');
    expect(await LockSpace.open(tmp.dir).boundSets()).toEqual([]);
  });

  test('run --and: several names, all or nothing', async () => {
    const [a, b, c] = disks(['a', 'b', 'c']);
    const ok = cli(['run', '--and', 'b', '--and-shared', 'c', tmp.dir, 'a', '--', python(), '-c', PROBE_ALL, a, b, c]);
    expect(ok.status).toBe(0);
    expect(ok.stdout.trim()).toBe('busy busy locked-shared');
    const python3 = await spawnPythonHolder(c);
    try {
      const busy = cli(['run', '--and', 'b', '--and', 'c', tmp.dir, 'a', '--', 'true']);
      expect(busy.status).toBe(75);
      expect(busy.stderr).toContain(`'${c}' is busy`);
    } finally {
      await python3.release();
    }
    expect(await probes([a, b, c])).toEqual(['locked', 'locked', 'locked']);
  });
});

test('a script with nothing else to do awaits holdFor, release and ended to the end (the holder keeps no event loop alive, but a wait for it does)', async () => {
  const [a, b] = disks(['a', 'b']);
  const script = `
    const { spawn } = require('child_process');
    const { LockSpace } = require(${JSON.stringify(DIST_INDEX)});
    (async () => {
      const ls = LockSpace.open(process.argv[1]);
      const vm = spawn('sleep', ['1000'], { stdio: 'ignore' });
      vm.unref();
      for (let round = 0; round < 2; round++) {
        const set = await ls.holdFor(vm.pid, ['a', 'b']);
        console.log('bound ' + set.holderPid);
        await set.release({ force: true });
        console.log('released');
      }
      const set = await ls.holdFor(vm.pid, ['a', 'b']);
      vm.kill('SIGKILL');
      await set.ended();
      console.log('ended');
    })();`;
  const r = spawnSync(process.execPath, ['-e', script, tmp.dir], { encoding: 'utf8', timeout: 60_000 });
  expect(r.stderr).toBe('');
  expect(r.stdout.replace(/bound \d+/g, 'bound')).toBe('bound\nreleased\nbound\nreleased\nended\n');
  expect(r.status).toBe(0);
  expect(await probes([a, b])).toEqual(['locked', 'locked']);
});

// From inside the command: can another process take each file exclusively (then shared)?
const PROBE_ALL = `
import fcntl, os, sys
out = []
for p in sys.argv[1:]:
    fd = os.open(p, os.O_RDWR)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0); out.append('locked')
    except OSError:
        try:
            fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB, 1, 0); out.append('locked-shared')
        except OSError:
            out.append('busy')
    os.close(fd)
print(' '.join(out))`;
