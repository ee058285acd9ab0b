/** Helper processes: launching one that prints a JSON result, and the parameters it receives. */
import { spawn } from 'child_process';
import * as fs from 'fs';

export interface NofileLimit {
  soft: number;
  hard: number;
}

function parseLimit(value: string): number {
  return value === 'unlimited' ? Infinity : Number(value);
}

/** RLIMIT_NOFILE of this process, from /proc/self/limits. */
export function readNofile(): NofileLimit {
  const line = fs
    .readFileSync('/proc/self/limits', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('Max open files'));
  const [soft, hard] = (line ?? '').trim().split(/\s+/).slice(3, 5);
  return { soft: parseLimit(soft), hard: parseLimit(hard) };
}

/** Runs `command args`, inheriting stderr, and parses the last line of its stdout as JSON. */
export function runJsonProcess<T>(command: string, args: readonly string[]): Promise<T> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      const last = out.trim().split('\n').pop() ?? '';
      if (code !== 0) return reject(new Error(`${command} exited with ${code ?? signal}: ${last}`));
      try {
        resolve(JSON.parse(last) as T);
      } catch {
        reject(new Error(`${command}: no JSON result in ${JSON.stringify(out)}`));
      }
    });
  });
}

/** The JSON parameters a helper process was started with (its last argument). */
export function childParams<T>(): T {
  return JSON.parse(process.argv[process.argv.length - 1]) as T;
}
