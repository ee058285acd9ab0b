/* Another native library takes the real-time signals away. A cancelled kernel wait (a wait for a lock
 * held by another process, blocked in F_SETLKW on a lockspace thread) must still end: the table forgets
 * it, the thread goes away and nothing keeps signalling, whatever that library did to the signals.
 * The "library" is a tiny N-API addon in C, compiled here with cc and loaded with process.dlopen in a
 * child process while its wait blocks; it sets every real-time signal it may change to SIG_IGN, or to
 * its own handler installed with SA_RESTART (so an interrupted fcntl would be restarted, not ended). */
import * as fs from 'fs';
import * as path from 'path';
import { execFileSync, spawn, ChildProcess } from 'child_process';
import { useTmpDir, outsideProbe, spawnPythonHolder, FIXTURES } from './helpers';

const tmp = useTmpDir();

const HELPER_C = `
#include <node_api.h>
#include <signal.h>
#include <string.h>

static volatile sig_atomic_t calls;
static void own_handler(int sig) { (void)sig; calls++; }

/* takeRealtimeSignals('ignore' | 'handler') -> how many signals it took */
static napi_value take(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  char mode[16] = "";
  size_t len = 0;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  napi_get_value_string_utf8(env, argv[0], mode, sizeof mode, &len);
  int taken = 0;
  for (int sig = SIGRTMIN; sig <= SIGRTMAX; ++sig) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = strcmp(mode, "ignore") == 0 ? SIG_IGN : own_handler;
    sa.sa_flags = SA_RESTART;
    if (sigaction(sig, &sa, NULL) == 0) taken++;
  }
  napi_value out;
  napi_create_int32(env, taken, &out);
  return out;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  napi_create_function(env, "takeRealtimeSignals", NAPI_AUTO_LENGTH, take, NULL, &fn);
  napi_set_named_property(env, exports, "takeRealtimeSignals", fn);
  return exports;
}
`;

/** Builds the helper against the headers node-gyp uses (npm's nodedir), never downloading any. */
function buildHelper(dir: string): string {
  const nodedir = execFileSync('npm', ['config', 'get', 'nodedir'], { encoding: 'utf8' }).trim();
  const src = path.join(dir, 'take_signals.c');
  const out = path.join(dir, 'take_signals.node');
  fs.writeFileSync(src, HELPER_C);
  execFileSync('cc', ['-shared', '-fPIC', '-O1', '-I', path.join(nodedir, 'include', 'node'), src, '-o', out]);
  return out;
}

interface Line {
  blocked?: boolean;
  threadsWhileBlocked?: number;
  taken?: number;
  outcome?: { granted: boolean; code?: string };
  ended?: boolean;
  table: { resources: number; leases: number; waiters: number; kernelWaits: number };
  threads: number;
  crash?: string;
}

function lines(child: ChildProcess): () => Promise<Line> {
  let buf = '';
  const queue: Line[] = [];
  const wanting: ((l: Line) => void)[] = [];
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    buf += d;
    for (let i; (i = buf.indexOf('\n')) >= 0; buf = buf.slice(i + 1)) {
      const l = JSON.parse(buf.slice(0, i)) as Line;
      const w = wanting.shift();
      if (w) w(l);
      else queue.push(l);
    }
  });
  return () => (queue.length ? Promise.resolve(queue.shift()!) : new Promise((r) => wanting.push(r)));
}

describe.each(['ignore', 'handler'])('real-time signals taken by another library (%s)', (mode) => {
  test('a cancelled kernel wait ends, its thread goes away and the process holds nothing', async () => {
    const helper = buildHelper(tmp.dir);
    const dir = path.join(tmp.dir, 'locks');
    fs.mkdirSync(dir);
    const file = path.join(dir, 'disk');
    fs.writeFileSync(file, '');
    const holder = await spawnPythonHolder(file);
    const child = spawn(process.execPath, [path.join(FIXTURES, 'signal-taken-child.js'), dir, 'disk', helper, mode], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    const next = lines(child);
    try {
      const first = await next();
      expect(first.crash).toBeUndefined();
      expect(first.blocked).toBe(true);
      expect(first.threadsWhileBlocked).toBeGreaterThan(0); // the kernel wait's thread is there to end
      expect(first.taken).toBeGreaterThan(0);
      expect(first.outcome).toEqual({ granted: false, code: 'ABORT_ERR' });
      expect({ ended: first.ended, table: first.table, threads: first.threads }).toEqual({
        ended: true,
        table: { resources: 0, leases: 0, waiters: 0, kernelWaits: 0 },
        threads: 0,
      });
      // The other process lets go: nobody in the child may pick the lock up now.
      await holder.release();
      expect(await outsideProbe(file)).toBe('locked');
      child.stdin!.write('stats\n');
      expect(await next()).toEqual({ table: { resources: 0, leases: 0, waiters: 0, kernelWaits: 0 }, threads: 0 });
    } finally {
      child.stdin!.end();
      await new Promise((r) => (child.exitCode !== null ? r(null) : child.once('exit', r)));
      await holder.kill().catch(() => undefined);
    }
    expect(child.exitCode).toBe(0);
  }, 60000);
});
