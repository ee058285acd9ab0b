/* Running the compiled CLI (`node dist/lib/cli.js`) from tests. */
import * as path from 'path';
import { spawn, spawnSync, SpawnSyncOptions } from 'child_process';

export const CLI = path.join(__dirname, '../dist/lib/cli.js');
/** The command name of lockspace's own processes (/proc/PID/comm): the CLI sets process.title. */
export const LOCKSPACE_COMM = 'lockspace';

export interface Result {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export function cli(args: string[], opts: SpawnSyncOptions = {}): Result {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 30000, ...opts });
  return { status: r.status, signal: r.signal, stdout: String(r.stdout), stderr: String(r.stderr) };
}

/** `lockspace status ARGS --json`, which must succeed with nothing on stderr: its parsed output. */
export function statusJson(args: string[]): any {
  const r = cli(['status', ...args, '--json']);
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  return JSON.parse(r.stdout);
}

/** Starts the CLI asynchronously; `output` resolves when it exits. */
/** `runAs`: a command that runs the CLI as another user (helpers' AS_NOBODY). */
export function cliAsync(args: string[], env: NodeJS.ProcessEnv = process.env, runAs: string[] = []) {
  const [file, ...argv] = [...runAs, process.execPath, CLI, ...args];
  const child = spawn(file, argv, { stdio: ['ignore', 'pipe', 'pipe'], env });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
  const done = new Promise<Result>((resolve) => {
    child.on('close', (status, signal) => resolve({ status, signal, stdout, stderr }));
  });
  return { child, done, out: () => stdout, err: () => stderr };
}

/** A python one-liner for `run`: prints whether another process can take the lock now. */
export const PROBE = `
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
try:
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0)
    print('free')
except OSError:
    print('busy')
`;

