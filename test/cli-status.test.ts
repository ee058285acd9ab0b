/* `lockspace status` with hostile and odd file names (control characters, bytes that are not
 * UTF-8) and odd directory paths, and where /proc/locks does not tell the whole truth: inside a pid
 * namespace, empty or unreadable. (btrfs, which needs root and a loop device, is in test/system.)
 * Locks are taken by python fcntl.lockf in other processes. */
import * as fs from 'fs';
import * as path from 'path';
import { spawn, spawnSync } from 'child_process';
import { AS_NOBODY, Holder, holderFromChild, IN_PID_NAMESPACE, mkTmpDir, procLocksReplacedBy, python, rmTmpDir, socketFile, spawnPythonHolder } from './helpers';
import { CLI, cli, statusJson } from './cli-helpers';

let dir: string;
const holders: Holder[] = [];
beforeEach(() => {
  dir = mkTmpDir('lockspace-cli-status-');
});
afterEach(async () => {
  await Promise.all(holders.splice(0).map((h) => h.kill()));
  rmTmpDir(dir);
});

/** A python holder of an exclusive lock; a Buffer path is passed as hex (argv cannot carry any bytes). */
async function hold(p: string | Buffer, mode: 'exclusive' | 'shared' = 'exclusive'): Promise<Holder> {
  const h =
    typeof p === 'string'
      ? await spawnPythonHolder(p, mode)
      : await holderFromChild(spawn(python(), ['-c', BYTES_HOLDER, p.toString('hex')], { stdio: ['pipe', 'pipe', 'pipe'] }), 'python bytes holder');
  holders.push(h);
  return h;
}

const BYTES_HOLDER = `
import fcntl, os, sys
fd = os.open(bytes.fromhex(sys.argv[1]), os.O_RDWR)
fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0)
print('locked %d' % os.getpid(), flush=True)
sys.stdin.readline()
print('released', flush=True)
`;

describe('hostile file names', () => {
  const names = ['\x1b]0;owned\x07title', '\x1b[2Jclear', 'fake\nexcl  exclusive  1  init  POSIX', 'cr\rback', 'c1\u009bx', 'back\\slash'];

  test('control characters are escaped in the table; --json keeps the names exact', async () => {
    for (const n of names) fs.writeFileSync(path.join(dir, n), '');
    const h = await hold(path.join(dir, names[2]));
    const r = cli(['status', dir]);
    expect(r.status).toBe(0);
    // Nothing a terminal would act on: no ESC, BEL, CR, C1, and one line per row.
    // eslint-disable-next-line no-control-regex -- looking for control characters is the point
    expect(r.stdout).not.toMatch(/[\x00-\x09\x0b-\x1f\x7f-\x9f]/);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines).toHaveLength(1 + names.length);
    expect(lines).toContainEqual(expect.stringMatching(/^\\x1b\]0;owned\\x07title\s+free$/));
    expect(lines).toContainEqual(expect.stringMatching(/^\\x1b\[2Jclear\s+free$/));
    expect(lines).toContainEqual(expect.stringMatching(new RegExp(`^fake\\\\nexcl  exclusive  1  init  POSIX\\s+exclusive\\s+${h.pid}\\s`)));
    expect(lines).toContainEqual(expect.stringMatching(/^cr\\rback\s+free$/));
    expect(lines).toContainEqual(expect.stringMatching(/^c1\\u009bx\s+free$/));
    expect(lines).toContainEqual(expect.stringMatching(/^back\\\\slash\s+free$/));
    const st = statusJson([dir]);
    expect(st.resources.map((x: any) => x.name).sort()).toEqual([...names].sort());
    expect(st.resources.find((x: any) => x.name === names[2]).holders[0].pid).toBe(h.pid);
    expect(st.resources.every((x: any) => !('nameBase64' in x))).toBe(true);
  });
});

describe('names that are not UTF-8', () => {
  test('are listed, locked ones too: escaped in the table, exact bytes in --json nameBase64', async () => {
    const dirBytes = Buffer.from(`${dir}/`);
    const locked = Buffer.from([0x64, 0x69, 0x73, 0x6b, 0xff, 0xfe]); // 'disk\xff\xfe'
    const free = Buffer.from([0x6f, 0x6b, 0xc3, 0x28]); // 'ok' + a broken 2-byte sequence
    for (const n of [locked, free]) fs.writeFileSync(Buffer.concat([dirBytes, n]), '');
    fs.writeFileSync(path.join(dir, 'plain'), '');
    const h = await hold(Buffer.concat([dirBytes, locked]));

    const st = statusJson([dir]);
    expect(st.resources).toHaveLength(3);
    const byBytes = new Map(st.resources.map((x: any) => [x.nameBase64 ?? Buffer.from(x.name).toString('base64'), x]));
    const l: any = byBytes.get(locked.toString('base64'));
    expect(l).toMatchObject({ name: 'disk\uFFFD\uFFFD', state: 'exclusive', holders: [{ pid: h.pid, type: 'POSIX', mode: 'exclusive' }] });
    expect(Buffer.from(l.nameBase64, 'base64').equals(locked)).toBe(true);
    expect(byBytes.get(free.toString('base64'))).toMatchObject({ state: 'free' });
    expect((byBytes.get(Buffer.from('plain').toString('base64')) as any).nameBase64).toBeUndefined();

    const lines = cli(['status', dir]).stdout.trimEnd().split('\n');
    expect(lines).toContainEqual(expect.stringMatching(new RegExp(`^disk\\\\xff\\\\xfe\\s+exclusive\\s+${h.pid}\\s`)));
    expect(lines).toContainEqual(expect.stringMatching(/^ok\\xc3\(\s+free$/));
  });

  test('--probe cannot lock such a name and says so, without skipping it', () => {
    fs.writeFileSync(Buffer.concat([Buffer.from(`${dir}/`), Buffer.from([0xff])]), '');
    const st = statusJson(['--probe', dir]);
    expect(st.resources).toEqual([
      expect.objectContaining({ nameBase64: '/w==', state: 'unknown', error: 'the name is not UTF-8: cannot be probed' }),
    ]);
  });
});

test('status a/link/../locks lists the directory the kernel reaches', () => {
  fs.mkdirSync(path.join(dir, 'a'));
  fs.mkdirSync(path.join(dir, 'b', 'c'), { recursive: true });
  fs.symlinkSync('../b/c', path.join(dir, 'a', 'link'));
  for (const side of ['a', 'b']) {
    fs.mkdirSync(path.join(dir, side, 'locks'));
    fs.writeFileSync(path.join(dir, side, 'locks', `in-${side}`), '');
  }
  const st = statusJson([`${dir}/a/link/../locks`]);
  expect(st.directory).toBe(path.join(dir, 'b', 'locks'));
  expect(st.resources.map((r: any) => r.name)).toEqual(['in-b']);
});

describe('where /proc/locks does not show every lock, the lock query does', () => {
  /** `status DIR --json` run under a command prefix. */
  function jsonIn(wrap: string[], args: string[]): any {
    const r = spawnSync(wrap[0], [...wrap.slice(1), process.execPath, CLI, 'status', ...args, '--json'], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    return JSON.parse(r.stdout);
  }
  const states = (st: any) => Object.fromEntries(st.resources.map((r: any) => [r.name, [r.state, r.holders.map((h: any) => [h.pid, h.mode])]]));

  test('inside a pid namespace that cannot see the holders: held, without pids', async () => {
    for (const n of ['disk', 'shared', 'free']) fs.writeFileSync(path.join(dir, n), '');
    await hold(path.join(dir, 'disk'));
    await hold(path.join(dir, 'shared'), 'shared');
    expect(states(jsonIn(IN_PID_NAMESPACE, [dir]))).toEqual({
      disk: ['exclusive', [[null, 'exclusive']]],
      shared: ['shared', [[null, 'shared']]],
      free: ['free', []],
    });
    const table = spawnSync(IN_PID_NAMESPACE[0], [...IN_PID_NAMESPACE.slice(1), process.execPath, CLI, 'status', dir], { encoding: 'utf8' });
    expect(table.stdout).toMatch(/^disk\s+exclusive\s+-\s+-\s+POSIX$/m);
  });

  test('a file it cannot open for the query is unknown (not free), or held when /proc/locks shows a lock', async () => {
    fs.chmodSync(dir, 0o755);
    for (const n of ['disk', 'free']) fs.writeFileSync(path.join(dir, n), '', { mode: 0o600 });
    const h = await hold(path.join(dir, 'disk'));
    const st = jsonIn(AS_NOBODY, [dir]);
    expect(states(st)).toEqual({ disk: ['exclusive', [[h.pid, 'exclusive']]], free: ['unknown', []] });
    expect(st.resources[1].error).toMatch(/^EACCES: permission denied, open '.*\/free'$/);
  });

  test.each(['empty', 'unreadable'])('with /proc/locks %s: held with the pid the lock query gives', async (how) => {
    for (const n of ['disk', 'free']) fs.writeFileSync(path.join(dir, n), '');
    const h = await hold(path.join(dir, 'disk'));
    const sock = fs.mkdtempSync(path.join(dir, '..', 'lockspace-sock-'));
    try {
      const wrap = procLocksReplacedBy(how === 'empty' ? '/dev/null' : socketFile(sock));
      expect(states(jsonIn(wrap, [dir]))).toEqual({ disk: ['exclusive', [[h.pid, 'exclusive']]], free: ['free', []] });
    } finally {
      rmTmpDir(sock);
    }
  });
});
