/**
 * `npm run demo`: the problem lockspace solves, in two worker threads of one process and one file.
 *
 * 1. POSIX fcntl locks belong to the process, and closing any descriptor of a file drops them:
 *    worker 1 locks the file, worker 2 opens and closes it (as code that locks it by itself
 *    must), and the lock is gone although nobody released it.
 * 2. Through lockspace, worker 2 never opens a file the process holds: it is told EBUSY, or waits
 *    and is handed the lock, and the lock stays held throughout.
 *
 * After each step another process (python3's fcntl.lockf) tries the lock: that is the only view
 * that counts, since every thread of this process shares its locks.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isMainThread, parentPort, Worker } from 'node:worker_threads';

import { isLockspaceError, Lease, LockSpace } from './index';

type Op = 'lock' | 'openClose' | 'acquire' | 'acquireWait' | 'release';
interface Command {
  id: number;
  op: Op;
  file: string;
}
/** A command's answer (with its id), or a later event (a wait's grant, without one). */
interface Reply {
  id?: number;
  text: string;
}

/* ------------------------------------------------------------------ the workers */

function serve(): void {
  const paths = LockSpace.open(null); // path mode: names are the files' paths
  let lease: Lease | undefined;
  parentPort!.on('message', async ({ id, op, file }: Command) => {
    const reply = (text: string): void => parentPort!.postMessage({ id, text });
    try {
      switch (op) {
        case 'lock':
          // Node has no fcntl of its own: lockspace's kernel lock is the plain F_SETLK write lock on
          // byte 0 that code locking the file by itself would take.
          lease = paths.acquireSync(file);
          return reply('locked');
        case 'openClose':
          closeSync(openSync(file, 'r+'));
          return reply('done');
        case 'acquire':
          lease = await paths.acquire(file);
          return reply('granted');
        case 'acquireWait': {
          const granted = paths.acquire(file, { wait: true });
          reply('waiting');
          lease = await granted;
          return parentPort!.postMessage({ text: 'granted' });
        }
        case 'release':
          await lease?.release();
          return reply('released');
      }
    } catch (err) {
      reply(isLockspaceError(err, 'EBUSY') && err.heldByThisProcess ? 'EBUSY: held in this process' : String(err));
    }
  });
}

/* ------------------------------------------------------------------ the main thread */

const PROBE = `
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
try:
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0)
    print('free')
except OSError:
    print('held')
`;

/** What another process sees: 'held' when it cannot take the lock. */
function outside(file: string): string {
  const r = spawnSync('python3', ['-c', PROBE, file], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : `unknown (python3: ${r.error?.message ?? r.stderr.trim()})`;
}

let lastId = 0;
function call(worker: Worker, op: Op, file: string): Promise<string> {
  const id = ++lastId;
  return new Promise((resolve) => {
    const onMessage = (m: Reply): void => {
      if (m.id !== id) return;
      worker.off('message', onMessage);
      resolve(m.text);
    };
    worker.on('message', onMessage);
    worker.postMessage({ id, op, file } satisfies Command);
  });
}

function event(worker: Worker): Promise<string> {
  return new Promise((resolve) => {
    const onMessage = (m: Reply): void => {
      if (m.id !== undefined) return;
      worker.off('message', onMessage);
      resolve(m.text);
    };
    worker.on('message', onMessage);
  });
}

/** One line per step: who, what, its outcome, and what another process sees afterwards. */
function show(who: string, what: string, outcome: string, seen: string): string {
  console.log(`  ${who}  ${what.padEnd(30)}  ${outcome.padEnd(27)}  outside: ${seen}`);
  return seen;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'lockspace-demo-'));
  const file = join(dir, 'disk.img');
  writeFileSync(file, '');
  const [w1, w2] = [new Worker(__filename), new Worker(__filename)];
  for (const w of [w1, w2]) {
    w.on('error', (err) => {
      console.error(err);
      process.exit(1);
    });
  }
  console.log(`lockspace demo: worker threads 1 and 2 of process ${process.pid} lock ${file};`);
  console.log('after each step another process (python3, fcntl.lockf) tries to lock it.\n');

  console.log('1. Without lockspace (plain fcntl locks): worker 2 opens the same file itself');
  show('worker 1', 'locks it (fcntl, byte 0)', await call(w1, 'lock', file), outside(file));
  const lost = show('worker 2', 'opens it and closes it', await call(w2, 'openClose', file), outside(file)) === 'free';
  console.log(
    lost
      ? '  The lock is gone, yet worker 1 never released it: a POSIX lock belongs to the process,\n  and closing any descriptor of the file drops it.\n'
      : '  The lock survived the close here (not what Linux does with POSIX locks).\n',
  );
  await call(w1, 'release', file);

  console.log('2. With lockspace: both workers go through its one lock table per process');
  const seen = [
    show('worker 1', 'acquire(file)', await call(w1, 'acquire', file), outside(file)),
    show('worker 2', 'acquire(file)', await call(w2, 'acquire', file), outside(file)),
    show('worker 2', 'acquire(file, { wait: true })', await call(w2, 'acquireWait', file), outside(file)),
  ];
  const granted = event(w2);
  const released = await call(w1, 'release', file);
  seen.push(show('worker 1', 'release()', `${released}, worker 2 ${await granted}`, outside(file)));
  seen.push(show('worker 2', 'release()', await call(w2, 'release', file), outside(file)));
  const kept = seen.join() === 'held,held,held,held,free';
  console.log(
    kept
      ? '  Worker 2 never opened the file while it was held: the lock stayed until its holder let go.'
      : '  Unexpected: the lock was not held throughout.',
  );
  await Promise.all([w1.terminate(), w2.terminate()]);
  rmSync(dir, { recursive: true, force: true });
  if (!kept) process.exitCode = 1;
}

if (isMainThread) {
  main().catch((err) => {
    console.error(err);
    process.exitCode = 1;
  });
} else {
  serve();
}
