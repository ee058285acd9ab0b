/** Node's own fs and the lock packages users pick today, each on its own file in the run's temp dir. */
import * as fs from 'fs';
import * as path from 'path';
import * as lockfile from 'lockfile';
import * as properLockfile from 'proper-lockfile';
import { timeAsync, timeSync } from './clock';
import { Case } from './measure';

function touch(dir: string, name: string): string {
  const file = path.join(dir, name);
  fs.closeSync(fs.openSync(file, 'w', 0o600));
  return file;
}

function nodeFsCases(dir: string): Case[] {
  const syncFile = touch(dir, 'node-sync');
  const promiseFile = touch(dir, 'node-promises');
  return [
    {
      id: 'node:openSync',
      label: 'Node fs.openSync+closeSync',
      group: 'Node fs',
      run: (n) => timeSync(n, () => fs.closeSync(fs.openSync(syncFile, 'r+'))),
    },
    {
      id: 'node:promises',
      label: 'Node fs.promises open+close',
      group: 'Node fs',
      run: (n) => timeAsync(n, async () => (await fs.promises.open(promiseFile, 'r+')).close()),
    },
  ];
}

function properLockfileCase(dir: string): Case {
  const file = touch(dir, 'proper-lockfile');
  return {
    id: 'peer:proper-lockfile',
    label: 'proper-lockfile lock+release',
    group: 'peer',
    run: (n) => timeAsync(n, async () => (await properLockfile.lock(file))()),
  };
}

function lockfileCase(dir: string): Case {
  const file = path.join(dir, 'lockfile.lock');
  return {
    id: 'peer:lockfile',
    label: 'lockfile lockSync+unlockSync',
    group: 'peer',
    run: (n) =>
      timeSync(n, () => {
        lockfile.lockSync(file);
        lockfile.unlockSync(file);
      }),
  };
}

interface OsLock {
  lock(fd: number, start: number, length: number, options: { exclusive: boolean; immediate: boolean }): Promise<void>;
  unlock(fd: number, start: number, length: number): Promise<void>;
}

/** os-lock is native: the reason instead of a case when its addon was not built. */
function osLockCase(dir: string): Case | string {
  let osLock: OsLock;
  try {
    osLock = require('os-lock') as OsLock;
  } catch (e) {
    return `os-lock unavailable: ${(e as Error).message.split('\n')[0]}`;
  }
  const fd = fs.openSync(touch(dir, 'os-lock'), 'r+');
  return {
    id: 'peer:os-lock',
    label: 'os-lock lock+unlock (open fd)',
    group: 'peer',
    run: (n) =>
      timeAsync(n, async () => {
        await osLock.lock(fd, 0, 1, { exclusive: true, immediate: true });
        await osLock.unlock(fd, 0, 1);
      }),
    teardown: () => fs.closeSync(fd),
  };
}

/** Baseline cases, plus notes for any that could not run. */
export function baselineCases(dir: string): { cases: Case[]; notes: string[] } {
  const osLock = osLockCase(dir);
  const cases = [...nodeFsCases(dir), properLockfileCase(dir), lockfileCase(dir)];
  if (typeof osLock === 'string') return { cases, notes: [osLock] };
  return { cases: [...cases, osLock], notes: [] };
}
