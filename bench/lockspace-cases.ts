/** lockspace's uncontended per-op cases. */
import { timeAsync, timeSync } from './clock';
import { Case } from './measure';
import type { LockspaceModule } from './lockspace';

export function lockspaceCases(lockspace: LockspaceModule, dir: string): Case[] {
  const ls = lockspace.LockSpace.open(dir);
  ls.createSync('sync');
  ls.createSync('async');
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
      id: 'lockspace:autocreate',
      label: 'lockspace autoCreate cycle (sync)',
      group: 'lockspace',
      run: (n) => timeSync(n, () => ls.acquireSync('autocreate', { autoCreate: true }).releaseSync()),
    },
  ];
}
