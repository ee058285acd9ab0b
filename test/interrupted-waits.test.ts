/* A wait for a lock that another process holds blocks a thread in the kernel (F_SETLKW). Ending that
 * wait (timeout, abort, the waiting worker's exit, the process's exit) interrupts the thread: each way
 * is run in a child process, so that a crash shows as its exit status, and the lock is checked from
 * outside afterwards. */
import * as fs from 'fs';
import * as path from 'path';
import { spawnSync } from 'child_process';
import { useTmpDir, spawnPythonHolder, outsideProbe, FIXTURES, Holder } from './helpers';
import { CLI } from './cli-helpers';

const tmp = useTmpDir();
let holder: Holder | undefined;
afterEach(async () => {
  await holder?.release();
  holder = undefined;
});

async function heldByPython(): Promise<string> {
  const file = path.join(tmp.dir, 'disk.img');
  fs.writeFileSync(file, '');
  holder = await spawnPythonHolder(file);
  return file;
}

function endWait(how: string, rounds: number) {
  const r = spawnSync(process.execPath, [path.join(FIXTURES, 'interrupted-wait.js'), how, tmp.dir, 'disk.img', String(rounds)], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { status: r.status, signal: r.signal, lines: r.stdout.trim().split('\n'), stderr: r.stderr };
}

test.each([
  ['timeout', 'ETIMEDOUT'],
  ['abort', 'ABORT_ERR'],
  ['worker', 'terminated 1'],
])('a wait on another process ended by %s: no crash, nothing left, still held by the other process', async (how, outcome) => {
  const file = await heldByPython();
  const r = endWait(how, 5);
  expect({ signal: r.signal, status: r.status, stderr: r.stderr }).toEqual({ signal: null, status: 0, stderr: '' });
  expect(r.lines).toEqual([...Array(5).fill(outcome), 'done']);
  expect(await outsideProbe(file)).toBe('busy');
  await holder!.release();
  holder = undefined;
  expect(await outsideProbe(file)).toBe('locked');
});

test('the process exits while it waits on another process: exit status 0', async () => {
  await heldByPython();
  const r = endWait('exit', 1);
  expect({ signal: r.signal, status: r.status, stderr: r.stderr }).toEqual({ signal: null, status: 0, stderr: '' });
  expect(r.lines).toEqual(['exiting']);
});

test('the CLI: `run --wait=1` on a file another process holds gives up with 75 (EX_TEMPFAIL)', async () => {
  await heldByPython();
  const r = spawnSync(process.execPath, [CLI, 'run', '--wait=1', tmp.dir, 'disk.img', '--', 'true'], { encoding: 'utf8' });
  expect({ signal: r.signal, status: r.status }).toEqual({ signal: null, status: 75 });
  expect(r.stderr).toMatch(/disk\.img/);
});
