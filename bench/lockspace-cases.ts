/** lockspace's uncontended per-op cases. */
import { spawn } from 'child_process';

import { timeAsync, timeSync } from './clock';
import { Case } from './measure';
import type { LockspaceModule } from './lockspace';

/** The names of the lock set cases: a set of 4, against 4 single acquires of the same names. */
const SET = ['set-a', 'set-b', 'set-c', 'set-d'];

/** The names a bind takes: 4, as the lock set cases. */
const BOUND = ['bound-a', 'bound-b', 'bound-c', 'bound-d'];

export function lockspaceCases(lockspace: LockspaceModule, dir: string): Case[] {
  const ls = lockspace.LockSpace.open(dir);
  for (const name of BOUND) ls.createSync(name);
  // The process a bind holds the set for: one for the whole run.
  const vm = spawn('sleep', ['100000'], { stdio: 'ignore' });
  vm.unref();
  process.on('exit', () => vm.kill('SIGKILL'));
  // The same directory with holder records on (LockSpace.open(dir, { records: true })): what a record
  // costs on the sync cycle (an exclusive grant: count read and written, the record written; its slot
  // claimed and its live byte locked at each grant, since the release unlocks them).
  const rec = lockspace.LockSpace.open(dir, { records: true });
  ls.createSync('sync');
  ls.createSync('records');
  ls.createSync('async');
  ls.createSync('shared');
  ls.createSync('joined');
  ls.createSync('wait');
  for (const name of SET) ls.createSync(name);
  return [
    {
      id: 'lockspace:sync',
      label: 'lockspace acquireSync+releaseSync',
      group: 'lockspace',
      run: (n) => timeSync(n, () => ls.acquireSync('sync').releaseSync()),
    },
    {
      id: 'lockspace:sync-records',
      label: 'lockspace acquireSync+releaseSync with holder records',
      group: 'lockspace',
      run: (n) => timeSync(n, () => rec.acquireSync('records', { label: 'vm-42' }).releaseSync()),
    },
    {
      id: 'lockspace:async',
      label: 'lockspace await acquire+release',
      group: 'lockspace',
      run: (n) => timeAsync(n, async () => (await ls.acquire('async')).release()),
    },
    {
      id: 'lockspace:shared-sync',
      label: 'lockspace acquireSync+releaseSync, shared',
      group: 'lockspace',
      run: (n) => timeSync(n, () => ls.acquireSync('shared', { shared: true }).releaseSync()),
    },
    {
      // A join to a shared lock held all along: the path that counts joins and has /proc/locks read
      // for another process's writer (at most every 50 ms, on a thread of its own).
      id: 'lockspace:join-sync',
      label: 'lockspace shared join+release (another shared lease held)',
      group: 'lockspace',
      run: (n) => {
        const held = ls.acquireSync('joined', { shared: true });
        try {
          return timeSync(n, () => ls.acquireSync('joined', { shared: true }).releaseSync());
        } finally {
          held.releaseSync();
        }
      },
    },
    {
      // wait: true, granted at once: no deadlock check is armed (only a queued wait arms one).
      id: 'lockspace:wait-async',
      label: 'lockspace await acquire (wait: true, free)+release',
      group: 'lockspace',
      run: (n) => timeAsync(n, async () => (await ls.acquire('wait', { wait: true })).release()),
    },
    {
      id: 'lockspace:autocreate',
      label: 'lockspace autoCreate cycle (sync)',
      group: 'lockspace',
      run: (n) => timeSync(n, () => ls.acquireSync('autocreate', { autoCreate: true }).releaseSync()),
    },
    {
      id: 'lockspace:four-sync',
      label: 'lockspace 4 acquireSync + 4 releaseSync',
      group: 'lockspace',
      run: (n) =>
        timeSync(n, () => {
          const leases = SET.map((name) => ls.acquireSync(name));
          for (const lease of leases) lease.releaseSync();
        }),
    },
    {
      id: 'lockspace:set-sync',
      label: 'lockspace acquireAllSync of 4 + releaseSync',
      group: 'lockspace',
      run: (n) => timeSync(n, () => ls.acquireAllSync(SET).releaseSync()),
    },
    {
      id: 'lockspace:four-async',
      label: 'lockspace 4 await acquire + 4 await release',
      group: 'lockspace',
      run: (n) =>
        timeAsync(n, async () => {
          const leases = [];
          for (const name of SET) leases.push(await ls.acquire(name));
          for (const lease of leases) await lease.release();
        }),
    },
    {
      id: 'lockspace:set-async',
      label: 'lockspace await acquireAll of 4 + release',
      group: 'lockspace',
      run: (n) => timeAsync(n, async () => (await ls.acquireAll(SET)).release()),
    },
    {
      id: 'lockspace:bind',
      label: 'lockspace holdFor of 4 + release (a holder process each)',
      group: 'lockspace',
      run: (n) => timeAsync(n, async () => (await ls.holdFor(vm.pid!, BOUND)).release({ force: true })),
    },
  ];
}
