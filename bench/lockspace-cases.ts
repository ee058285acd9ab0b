/** lockspace's uncontended per-op cases. */
import { timeAsync, timeSync } from './clock';
import { Case } from './measure';
import type { LockspaceModule } from './lockspace';

/** The names of the lock set cases: a set of 4, against 4 single acquires of the same names. */
const SET = ['set-a', 'set-b', 'set-c', 'set-d'];

export function lockspaceCases(lockspace: LockspaceModule, dir: string): Case[] {
  const ls = lockspace.LockSpace.open(dir);
  ls.createSync('sync');
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
  ];
}
