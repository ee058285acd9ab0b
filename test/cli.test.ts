/* The operator CLI (lib/cli.ts, commands in lib/cli/), end to end through the compiled binary `node dist/lib/cli.js`: help,
 * usage errors, `name`, `run` (exit status, signals, busy/wait against python's fcntl.lockf, path
 * mode, autoCreate) and `status` (lock queries, /proc/locks and probing), plus NODE_DEBUG=lockspace logging. */
import * as fs from 'fs';
import * as path from 'path';
import {
  Holder,
  mkTmpDir,
  outsideProbeSync,
  python,
  rmTmpDir,
  sha256hex,
  spawnNodeHolder,
  spawnPythonHolder,
  waitFor,
} from './helpers';
import { CLI, cli, cliAsync, LOCKSPACE_COMM, PROBE } from './cli-helpers';

/** /proc/locks lines of a pid on the file `p` (by inode). */
function procLocksOf(pid: number, p: string): string[] {
  const ino = fs.statSync(p).ino;
  return fs
    .readFileSync('/proc/locks', 'utf8')
    .split('\n')
    .filter((l) => new RegExp(`\\s${pid}\\s+[0-9a-f]+:[0-9a-f]+:${ino}\\s`).test(l));
}

let dir: string;
const holders: Holder[] = [];

beforeEach(() => {
  dir = mkTmpDir('lockspace-cli-');
});
afterEach(async () => {
  await Promise.all(holders.splice(0).map((h) => h.kill()));
  rmTmpDir(dir);
});

async function holdPython(p: string, mode: 'exclusive' | 'shared' = 'exclusive'): Promise<Holder> {
  const h = await spawnPythonHolder(p, mode);
  holders.push(h);
  return h;
}

describe('help and usage', () => {
  test('the binary starts with a node shebang', () => {
    expect(fs.readFileSync(CLI, 'utf8').split('\n')[0]).toBe('#!/usr/bin/env node');
  });

  test('--help, help COMMAND and COMMAND --help print usage and exit 0', () => {
    const main = cli(['--help']);
    expect(main.status).toBe(0);
    for (const c of ['status DIR', 'run [OPTIONS]', 'name PATH']) expect(main.stdout).toContain(c);
    expect(cli(['-h']).stdout).toBe(main.stdout);
    expect(cli(['help']).stdout).toBe(main.stdout);
    for (const c of ['status', 'run', 'name']) {
      const r = cli([c, '--help']);
      expect(r.status).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`^Usage: lockspace ${c} `));
      expect(r.stdout).toContain('Exit status');
      expect(cli(['help', c]).stdout).toBe(r.stdout);
      expect(r.stderr).toBe('');
    }
    // --help wins wherever it is, even after arguments
    expect(cli(['run', dir, 'x', '--help']).stdout).toMatch(/^Usage: lockspace run /);
  });

  test('--version prints package.json version', () => {
    const r = cli(['--version']);
    expect(r.status).toBe(0);
    expect(r.stdout.trim()).toBe(require('../package.json').version);
  });

  test.each([
    [[], /^lockspace: missing command$/m],
    [['frobnicate'], /^lockspace: unknown command 'frobnicate'$/m],
    [['--frob'], /^lockspace: unknown option '--frob'$/m],
    [['help', 'frob'], /^lockspace: unknown command 'frob'$/m],
    [['status'], /^lockspace status: missing DIR$/m],
    [['status', 'a', 'b'], /^lockspace status: unexpected argument 'b'$/m],
    [['status', '--jsn', 'a'], /^lockspace status: unknown option '--jsn'$/m],
    [['status', '--json=yes', 'a'], /^lockspace status: option '--json' takes no value$/m],
    [['name'], /^lockspace name: missing PATH$/m],
    [['name', '/a', '/b'], /^lockspace name: unexpected argument '\/b'$/m],
    [['run'], /^lockspace run: missing DIR and NAME$/m],
    [['run', '/tmp'], /^lockspace run: missing NAME$/m],
    [['run', '/tmp', 'x'], /^lockspace run: missing COMMAND$/m],
    [['run', '/tmp', 'x', '--'], /^lockspace run: missing COMMAND$/m],
    [['run', '--wait=soon', '/tmp', 'x', 'true'], /^lockspace run: invalid --wait value 'soon'/m],
    [['run', '--wait=-1', '/tmp', 'x', 'true'], /^lockspace run: invalid --wait value '-1'/m],
    // flock's -u and -F make no sense when the lockspace process holds the lock itself.
    [['run', '--unlock', '/tmp', 'x', 'true'], /^lockspace run: unknown option '--unlock'$/m],
    [['run', '-xu', '/tmp', 'x', 'true'], /^lockspace run: unknown option '-u' \(in '-xu'\)$/m],
    [['run', '-F', '/tmp', 'x', 'true'], /^lockspace run: unknown option '-F'$/m],
    [['run', '-w', 'soon', '/tmp', 'x', 'true'], /^lockspace run: invalid -w value 'soon'/m],
    [['run', '-n', '-w', '1', '/tmp', 'x', 'true'], /^lockspace run: --nonblock and --timeout contradict each other: give one$/m],
    [['run', '--wait', '-n', '/tmp', 'x', 'true'], /^lockspace run: --wait and --nonblock contradict each other: give one$/m],
    [['run', '-s', '--exclusive', '/tmp', 'x', 'true'], /^lockspace run: --shared and --exclusive contradict each other: give one$/m],
    [['run', '-E', '256', '/tmp', 'x', 'true'], /^lockspace run: invalid -E value '256'/m],
    [['run', '/tmp', 'x', '-c'], /^lockspace run: option '-c' needs a value$/m],
    [['run', '/tmp', 'x', '-c', 'true', 'extra'], /^lockspace run: -c takes COMMAND as one argument; unexpected 'extra'$/m],
    [['run', '--shared=1', '/tmp', 'x', 'true'], /^lockspace run: option '--shared' takes no value$/m],
    [['run', '--on-lost=stop', '/tmp', 'x', 'true'], /^lockspace run: invalid --on-lost value 'stop': expected kill, term, none$/m],
    [['run', '--grace=soon', '/tmp', 'x', 'true'], /^lockspace run: invalid --grace value 'soon'/m],
  ])('usage error %j exits 64 with a message and a hint', (args, message) => {
    const r = cli(args as string[]);
    expect(r.status).toBe(64);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(message);
    expect(r.stderr).toMatch(/^Try 'lockspace( \w+)? --help' for more information\.$/m);
    expect(r.stderr.trim().split('\n')).toHaveLength(2);
  });

  test.each([
    ['a/b', 'must be a single path component'],
    ['..', 'must not be "." or ".."'],
    ['', 'must not be empty'],
  ])('run with the bad NAME %j is a usage error', (name, reason) => {
    const marker = path.join(dir, 'ran');
    const r = cli(['run', dir, name, '--', 'touch', marker]);
    expect(r.status).toBe(64);
    expect(r.stderr).toContain(reason);
    expect(fs.existsSync(marker)).toBe(false);
  });
});

describe('name', () => {
  test('prints the SHA-256 of the canonical path', () => {
    fs.mkdirSync(path.join(dir, 'real'));
    fs.symlinkSync(path.join(dir, 'real'), path.join(dir, 'link'));
    const r = cli(['name', path.join(dir, 'link', 'disk.qcow2')]);
    expect(r.status).toBe(0);
    expect(r.stdout).toBe(`${sha256hex(path.join(dir, 'real', 'disk.qcow2'))}\n`);
    // relative to the current directory
    expect(cli(['name', 'disk.qcow2'], { cwd: path.join(dir, 'real') }).stdout).toBe(r.stdout);
  });

  test('--no-canonicalize hashes the bytes as given, as virtlockd does', () => {
    const disk = '/var/lib/libvirt/images/../images/web.qcow2';
    const r = cli(['name', '--no-canonicalize', disk]);
    expect(r.status).toBe(0);
    expect(r.stdout).toBe(`${sha256hex(disk)}\n`);
    expect(cli(['name', disk, '--no-canonicalize']).stdout).toBe(r.stdout);
    expect(cli(['name', '--no-canonicalize', '--', '-odd']).stdout).toBe(`${sha256hex('-odd')}\n`);
  });

  test('a missing directory exits 66', () => {
    const r = cli(['name', path.join(dir, 'nope', 'disk')]);
    expect(r.status).toBe(66);
    expect(r.stderr).toMatch(/^lockspace: ENOENT/);
  });
});

describe('run', () => {
  test('holds the lock while the command runs, exits with its status and releases', () => {
    const file = path.join(dir, 'web');
    fs.writeFileSync(file, '');
    const r = cli(['run', dir, 'web', '--', python(), '-c', `${PROBE}\nsys.exit(7)`, file]);
    expect(r.stdout).toBe('busy\n');
    expect(r.status).toBe(7);
    expect(outsideProbeSync(file)).toBe('locked');
    expect(fs.existsSync(file)).toBe(true);
  });

  test('the lock is held by the lockspace process (POSIX, byte 0) and not inherited by the command', () => {
    const file = path.join(dir, 'web');
    fs.writeFileSync(file, '');
    // The command reports its parent (the CLI) and the locks of both on the file.
    const script = `
import os, sys
ino = os.stat(sys.argv[1]).st_ino
def mine(pid):
    return [l.split()[1:4] for l in open('/proc/locks') if l.split()[4] == str(pid) and l.split()[5].endswith(':%d' % ino)]
def target(fd):
    try:
        return os.readlink('/proc/self/fd/' + fd)
    except OSError:
        return ''  # the directory listing's own descriptor, closed by now
fds = [target(fd) for fd in os.listdir('/proc/self/fd')]
print(os.getppid(), mine(os.getppid()), mine(os.getpid()), [f for f in fds if f.startswith(os.path.dirname(sys.argv[1]))])
`;
    const r = cli(['run', dir, 'web', python(), '-c', script, file]);
    expect(r.status).toBe(0);
    const m = /^(\d+) (\[.*?\]\]|\[\]) (\[\]) (.*)$/.exec(r.stdout.trim());
    expect(m).not.toBeNull();
    expect(m![2]).toBe("[['POSIX', 'ADVISORY', 'WRITE']]");
    expect(m![3]).toBe('[]');
    expect(m![4]).toBe('[]'); // no descriptor of the lock file (or its directory) leaked into the command
  });

  test('exit status 128+N when a signal kills the command', () => {
    const r = cli(['run', '--auto-create', dir, 'sig', '--', 'sh', '-c', 'kill -KILL $$']);
    expect(r.status).toBe(137);
    expect(fs.existsSync(path.join(dir, 'sig'))).toBe(false);
  });

  test('EBUSY against python fcntl.lockf: exit 75, one line naming the holder, command not run', async () => {
    const file = path.join(dir, 'web');
    fs.writeFileSync(file, '');
    const h = await holdPython(file);
    const marker = path.join(dir, 'ran');
    const r = cli(['run', dir, 'web', '--', 'touch', marker]);
    expect(r.status).toBe(75);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(new RegExp(`^lockspace: '${file}' is busy \\(exclusive lock held by pid ${h.pid} python[\\d.]*\\)\\n$`));
    expect(fs.existsSync(marker)).toBe(false);
    // shared against exclusive is busy too
    expect(cli(['run', '--shared', dir, 'web', '--', 'touch', marker]).status).toBe(75);
    expect(fs.existsSync(marker)).toBe(false);
  });

  test('--shared joins other processes\' shared locks; exclusive does not', async () => {
    const file = path.join(dir, 'db');
    fs.writeFileSync(file, '');
    await holdPython(file, 'shared');
    const r = cli(['run', '-s', dir, 'db', '--', python(), '-c', PROBE, file]);
    expect(r.status).toBe(0);
    expect(r.stdout).toBe('busy\n'); // an exclusive lock is impossible while we hold it shared
    const x = cli(['run', dir, 'db', '--', 'true']);
    expect(x.status).toBe(75);
    expect(x.stderr).toMatch(/is busy \(shared lock held by pid \d+ python/);
  });

  test('--wait=SECONDS gives up with 75 after the timeout', async () => {
    const file = path.join(dir, 'web');
    fs.writeFileSync(file, '');
    await holdPython(file);
    const t0 = Date.now();
    const r = cli(['run', '--wait=0.3', dir, 'web', '--', 'true']);
    expect(r.status).toBe(75);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
    expect(r.stderr).toMatch(/^lockspace: timed out after 0\.3 s waiting for '.*web' \(exclusive lock held by pid \d+ python/);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
  });

  test('--wait waits for the holder to let go, then runs the command', async () => {
    const file = path.join(dir, 'web');
    fs.writeFileSync(file, '');
    const h = await holdPython(file);
    const run = cliAsync(['run', '--wait', dir, 'web', '--', 'sh', '-c', 'echo ran; exit 4']);
    // The CLI is queued in the kernel (F_SETLKW shows as a blocked "->" line in /proc/locks).
    await waitFor(() => fs.readFileSync('/proc/locks', 'utf8').includes(`-> POSIX  ADVISORY  WRITE ${run.child.pid} `), 'blocked waiter');
    expect(run.out()).toBe('');
    await h.release();
    const r = await run.done;
    expect(r.stdout).toBe('ran\n');
    expect(r.status).toBe(4);
  });

  test('--wait=SECONDS that is not needed, and a relative path in path mode', async () => {
    fs.writeFileSync(path.join(dir, 'f'), '');
    const r = cli(['run', '--wait=5', '-', 'f', '--', 'true'], { cwd: dir });
    expect(r.status).toBe(0);
  });

  test('SIGTERM while waiting cancels the wait: exit 143, command not run, nothing held', async () => {
    const file = path.join(dir, 'web');
    fs.writeFileSync(file, '');
    const h = await holdPython(file);
    const marker = path.join(dir, 'ran');
    const run = cliAsync(['run', '--wait', dir, 'web', '--', 'touch', marker]);
    await waitFor(() => fs.readFileSync('/proc/locks', 'utf8').includes(` ${run.child.pid} `), 'blocked waiter');
    run.child.kill('SIGTERM');
    const r = await run.done;
    expect(r.status).toBe(143);
    expect(fs.existsSync(marker)).toBe(false);
    await h.release();
    expect(outsideProbeSync(file)).toBe('locked');
  });

  test('SIGTERM and SIGINT are forwarded to the command', async () => {
    const file = path.join(dir, 'web');
    fs.writeFileSync(file, '');
    const script = `
import signal, sys, time
def on(sig, frame):
    print('got', sig, flush=True)
    sys.exit(9)
signal.signal(signal.SIGTERM, on)
print('ready', flush=True)
time.sleep(60)
`;
    const run = cliAsync(['run', dir, 'web', '--', python(), '-c', script]);
    await waitFor(() => run.out().includes('ready'), 'command ready');
    expect(procLocksOf(run.child.pid!, file)).toHaveLength(1);
    run.child.kill('SIGTERM');
    const r = await run.done;
    expect(r.stdout).toBe(`ready\ngot ${15}\n`);
    expect(r.status).toBe(9);
    expect(outsideProbeSync(file)).toBe('locked');

    const run2 = cliAsync(['run', dir, 'web', '--', 'sh', '-c', 'echo ready; exec sleep 60']);
    await waitFor(() => run2.out().includes('ready'), 'command ready');
    await new Promise((resolve) => setTimeout(resolve, 100)); // let sh exec sleep
    run2.child.kill('SIGINT');
    const r2 = await run2.done;
    expect(r2.status).toBe(130);
    expect(outsideProbeSync(file)).toBe('locked');
  });

  test('--auto-create creates the resource for the command and deletes it afterwards', () => {
    const file = path.join(dir, 'new');
    const r = cli(['run', '--auto-create', dir, 'new', '--', 'sh', '-c', `test -f '${file}' && stat -c %a '${file}'`]);
    expect(r.status).toBe(0);
    expect(r.stdout).toBe('600\n');
    expect(fs.existsSync(file)).toBe(false);
  });

  test('without --auto-create a missing resource exits 66', () => {
    const r = cli(['run', dir, 'missing', '--', 'true']);
    expect(r.status).toBe(66);
    expect(r.stderr).toBe(`lockspace: '${path.join(dir, 'missing')}' does not exist (pass --auto-create to create it)\n`);
  });

  test('DIR "-" locks an absolute path (path mode), conflicting with python on it', async () => {
    const file = path.join(dir, 'disk.img');
    fs.writeFileSync(file, '');
    expect(cli(['run', '-', file, '--', python(), '-c', PROBE, file]).stdout).toBe('busy\n');
    await holdPython(file);
    const r = cli(['run', '-', file, '--', 'true']);
    expect(r.status).toBe(75);
    expect(r.stderr).toContain(`'${file}' is busy`);
  });

  test('a virtlockd-style resource: `name --no-canonicalize` then `run` on the hash', async () => {
    const disk = '/var/lib/libvirt/images/web.qcow2';
    const name = cli(['name', '--no-canonicalize', disk]).stdout.trim();
    fs.writeFileSync(path.join(dir, name), '');
    await holdPython(path.join(dir, name));
    expect(cli(['run', dir, name, '--', 'true']).status).toBe(75);
  });

  test('command not found exits 127, not executable 126; the lock is released', () => {
    const file = path.join(dir, 'x');
    fs.writeFileSync(file, '');
    const r = cli(['run', dir, 'x', '--', 'lockspace-no-such-command']);
    expect(r.status).toBe(127);
    expect(r.stderr).toBe('lockspace: lockspace-no-such-command: command not found\n');
    const r2 = cli(['run', dir, 'x', '--', file]); // a file without the x bit
    expect(r2.status).toBe(126);
    expect(outsideProbeSync(file)).toBe('locked');
  });

  test('the command\'s own options are left alone, with or without --', () => {
    const r = cli(['run', '--auto-create', dir, 'x', 'sh', '-c', 'echo "$@"', 'sh', '--shared', '--help']);
    expect(r.status).toBe(0);
    expect(r.stdout).toBe('--shared --help\n');
    const r2 = cli(['run', dir, 'x', '--auto-create', '--', 'echo', '--', '-s']);
    expect(r2.stdout).toBe('-- -s\n');
  });
});

describe('status', () => {
  function status(args: string[]): any {
    const r = cli(['status', ...args, '--json']);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    return JSON.parse(r.stdout);
  }

  test('lists free, exclusive, shared (two holders) and OFD-locked resources with pids and commands', async () => {
    for (const n of ['free', 'excl', 'shared', 'ofd']) fs.writeFileSync(path.join(dir, n), '');
    fs.mkdirSync(path.join(dir, 'subdir'));
    fs.symlinkSync(path.join(dir, 'excl'), path.join(dir, 'link'));
    const x = await holdPython(path.join(dir, 'excl'));
    const s1 = await holdPython(path.join(dir, 'shared'), 'shared');
    const s2 = await holdPython(path.join(dir, 'shared'), 'shared');
    const ofd = await spawnNodeHolder(dir, 'ofd', { lockType: 'ofd' });
    holders.push(ofd);

    const st = status([dir]);
    expect(st.directory).toBe(dir);
    expect(st.source).toBe('lock-query');
    const by = Object.fromEntries(st.resources.map((r: any) => [r.name, r]));
    expect(Object.keys(by)).toEqual(['excl', 'free', 'ofd', 'shared']); // sorted; no dirs or symlinks
    expect(by.free).toEqual({ name: 'free', path: path.join(dir, 'free'), state: 'free', holders: [], waiters: [], records: [] });
    expect(by.excl.state).toBe('exclusive');
    expect(by.excl.holders).toEqual([{ pid: x.pid, command: expect.stringMatching(/^python/), type: 'POSIX', mode: 'exclusive' }]);
    expect(by.shared.state).toBe('shared');
    expect(by.shared.holders.map((h: any) => h.pid).sort()).toEqual([s1.pid, s2.pid].sort());
    expect(by.ofd.state).toBe('exclusive');
    expect(by.ofd.holders).toEqual([{ pid: null, command: null, type: 'OFDLCK', mode: 'exclusive' }]);

    // The table for people.
    const r = cli(['status', dir]);
    expect(r.status).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^RESOURCE\s+STATE\s+PID\s+COMMAND\s+TYPE$/);
    expect(lines).toContainEqual(expect.stringMatching(new RegExp(`^excl\\s+exclusive\\s+${x.pid}\\s+python\\S*\\s+POSIX$`)));
    expect(lines).toContainEqual(expect.stringMatching(/^free\s+free$/));
    expect(lines).toContainEqual(expect.stringMatching(/^ofd\s+exclusive\s+-\s+-\s+OFDLCK$/));
    expect(lines.filter((l) => /^shared\s+shared\s+\d+\s+python/.test(l))).toHaveLength(2);
  });

  test('shows processes waiting for a resource', async () => {
    fs.writeFileSync(path.join(dir, 'web'), '');
    await holdPython(path.join(dir, 'web'));
    const run = cliAsync(['run', '--wait', dir, 'web', '--', 'true']);
    await waitFor(() => fs.readFileSync('/proc/locks', 'utf8').includes(`-> POSIX  ADVISORY  WRITE ${run.child.pid} `), 'waiter');
    const st = status([dir]);
    expect(st.resources[0].waiters).toEqual([{ pid: run.child.pid, command: LOCKSPACE_COMM, type: 'POSIX', mode: 'exclusive' }]);
    expect(cli(['status', dir]).stdout).toMatch(new RegExp(`^web\\s+waiting \\(exclusive\\)\\s+${run.child.pid}\\s+${LOCKSPACE_COMM}\\s+POSIX$`, 'm'));
    run.child.kill('SIGTERM');
    await run.done;
  });

  test('sees a resource held by `lockspace run`', async () => {
    const run = cliAsync(['run', '--auto-create', '--shared', dir, 'job', '--', 'sh', '-c', 'echo ready; exec sleep 60']);
    await waitFor(() => run.out().includes('ready'), 'command ready');
    const st = status([dir]);
    expect(st.resources).toEqual([
      {
        name: 'job',
        path: path.join(dir, 'job'),
        state: 'shared',
        holders: [{ pid: run.child.pid, command: LOCKSPACE_COMM, type: 'POSIX', mode: 'shared' }],
        waiters: [],
        records: [], // run without --records / --label writes none
      },
    ]);
    run.child.kill('SIGTERM');
    expect((await run.done).status).toBe(143);
    expect(fs.existsSync(path.join(dir, 'job'))).toBe(false);
  });

  test('--probe finds the same states by trying the locks', async () => {
    for (const n of ['free', 'excl', 'shared']) fs.writeFileSync(path.join(dir, n), '');
    const x = await holdPython(path.join(dir, 'excl'));
    await holdPython(path.join(dir, 'shared'), 'shared');
    const st = status(['--probe', dir]);
    expect(st.source).toBe('probe');
    const by = Object.fromEntries(st.resources.map((r: any) => [r.name, r]));
    expect(by.free.state).toBe('free');
    expect(by.excl.state).toBe('exclusive');
    expect(by.excl.holders).toEqual([{ pid: x.pid, command: expect.stringMatching(/^python/), type: null, mode: 'exclusive' }]);
    expect(by.shared.state).toBe('shared');
    // probing left nothing locked
    expect(outsideProbeSync(path.join(dir, 'free'))).toBe('locked');
  });

  test('an empty directory, a missing one and a file', () => {
    expect(status([dir])).toEqual({ directory: dir, source: 'lock-query', resources: [], bound: [] });
    expect(cli(['status', dir]).stdout).toBe(`no resources in ${dir}\n`);
    const missing = cli(['status', path.join(dir, 'nope')]);
    expect(missing.status).toBe(66);
    expect(missing.stderr).toBe(`lockspace: no such directory '${path.join(dir, 'nope')}'\n`);
    fs.writeFileSync(path.join(dir, 'f'), '');
    const file = cli(['status', path.join(dir, 'f')]);
    expect(file.status).toBe(66);
    expect(file.stderr).toContain('is not a directory');
    expect(fs.existsSync(path.join(dir, 'nope'))).toBe(false); // status never creates the directory
  });
});

describe('NODE_DEBUG=lockspace', () => {
  test('logs acquisitions, conflicts, waits and releases', async () => {
    fs.writeFileSync(path.join(dir, 'web'), '');
    const env = { ...process.env, NODE_DEBUG: 'lockspace' };
    const ok = cli(['run', dir, 'web', '--', 'true'], { env });
    expect(ok.status).toBe(0);
    expect(ok.stderr).toMatch(/^LOCKSPACE \d+: acquire .*\/web exclusive/m);
    expect(ok.stderr).toMatch(/^LOCKSPACE \d+: release .*\/web/m);

    const h = await holdPython(path.join(dir, 'web'));
    const busy = cli(['run', dir, 'web', '--', 'true'], { env });
    expect(busy.status).toBe(75);
    expect(busy.stderr).toMatch(new RegExp(`^LOCKSPACE \\d+: conflict .*/web.*EBUSY.*pid ${h.pid}`, 'm'));

    const run = cliAsync(['run', '--wait', dir, 'web', '--', 'true'], env);
    await waitFor(() => run.err().includes('wait'), 'wait logged');
    expect(run.err()).toMatch(/^LOCKSPACE \d+: wait .*\/web exclusive/m);
    await h.release();
    const r = await run.done;
    expect(r.status).toBe(0);
    expect(r.stderr).toMatch(/^LOCKSPACE \d+: acquire .*\/web exclusive/m);
  });
});
