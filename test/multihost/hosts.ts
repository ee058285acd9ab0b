/* Test-side handles on the simulated hosts of the multihost cluster: peers (node processes running
 * test/multihost/peer.js inside a host) and outside lock checks (python3's fcntl.lockf in a host). */
import { ChildProcess, spawn, spawnSync } from 'child_process';
import * as path from 'path';

export const cluster = require('./cluster') as {
  MOUNT: string;
  onHost(host: string, argv: string[]): [string, string[]];
  hostInit(host: string): number;
  killFuseClient(host: string): number;
  crashHost(host: string): Promise<void>;
  restartHost(host: string): Promise<number>;
  cutLink(host: string): void;
  healLink(host: string): void;
  killBrick(): Promise<number>;
  startBrick(): Promise<number>;
  brickPid(): number;
  waitMount(host: string, ms?: number): Promise<void>;
  waitUntil<T>(fn: () => T | Promise<T>, what: string, ms?: number, step?: number): Promise<T>;
  sleep(ms: number): Promise<void>;
};

export interface ErrorJson {
  name?: string;
  code?: string;
  message: string;
  path?: string;
  holderPid?: number;
  cause?: ErrorJson;
}

export class PeerError extends Error {
  constructor(readonly error: ErrorJson) {
    super(error.message);
  }
  get code(): string | undefined {
    return this.error.code;
  }
}

export interface LostEvent {
  event: 'lost';
  lease: number;
  at: number;
  error: ErrorJson;
}

/** A node process on a host, driving the library by JSON lines. */
export class Peer {
  readonly events: LostEvent[] = [];
  pid = 0;
  #child: ChildProcess;
  #next = 1;
  #waiting = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  #buffer = '';
  #exited = false;
  #ready: Promise<void>;
  #eventWaiters: (() => void)[] = [];

  private constructor(readonly host: string) {
    const [cmd, args] = cluster.onHost(host, [process.execPath, path.join(__dirname, 'peer.js')]);
    this.#child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'inherit'] });
    let readyResolve!: () => void;
    let readyReject!: (e: Error) => void;
    this.#ready = new Promise((res, rej) => ((readyResolve = res), (readyReject = rej)));
    this.#child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      this.#buffer += d;
      let nl: number;
      while ((nl = this.#buffer.indexOf('\n')) >= 0) {
        const line = this.#buffer.slice(0, nl);
        this.#buffer = this.#buffer.slice(nl + 1);
        const msg = JSON.parse(line);
        if (msg.ready) {
          this.pid = msg.pid;
          readyResolve();
        } else if (msg.event) {
          this.events.push(msg);
          for (const w of this.#eventWaiters.splice(0)) w();
        } else {
          const w = this.#waiting.get(msg.id);
          this.#waiting.delete(msg.id);
          if (msg.ok) w?.resolve(msg.value);
          else w?.reject(new PeerError(msg.error));
        }
      }
    });
    this.#child.on('exit', (code, signal) => {
      this.#exited = true;
      const err = new Error(`peer on host ${host} exited (code ${code}, signal ${signal})`);
      readyReject(err);
      for (const w of this.#waiting.values()) w.reject(err);
      this.#waiting.clear();
    });
  }

  static async start(host: string): Promise<Peer> {
    const p = new Peer(host);
    await p.#ready;
    return p;
  }

  call<T = any>(op: string, args: Record<string, unknown> = {}): Promise<T> {
    if (this.#exited) return Promise.reject(new Error(`peer on host ${this.host} has exited`));
    const id = this.#next++;
    return new Promise<T>((resolve, reject) => {
      this.#waiting.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.#child.stdin!.write(`${JSON.stringify({ id, op, ...args })}\n`);
    });
  }

  /** The call's error (it must fail). */
  async fails(op: string, args: Record<string, unknown> = {}): Promise<ErrorJson> {
    try {
      await this.call(op, args);
    } catch (err) {
      if (err instanceof PeerError) return err.error;
      throw err;
    }
    throw new Error(`${op} on host ${this.host} succeeded, expected it to fail`);
  }

  /** Resolves with the lost event of `lease`, waiting up to `ms`. */
  async lostEvent(lease: number, ms: number): Promise<LostEvent> {
    const end = Date.now() + ms;
    for (;;) {
      const e = this.events.find((ev) => ev.lease === lease);
      if (e) return e;
      const left = end - Date.now();
      if (left <= 0) throw new Error(`host ${this.host}: lease ${lease} not reported lost within ${ms} ms`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.#eventWaiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  get exited(): boolean {
    return this.#exited;
  }

  async stop(): Promise<void> {
    if (this.#exited) return;
    const gone = new Promise((resolve) => this.#child.once('exit', resolve));
    this.#child.kill('SIGKILL');
    await gone;
  }
}

const PROBE_PY = `
import errno, fcntl, os, sys
try:
    fd = os.open(sys.argv[1], os.O_RDWR | os.O_NOFOLLOW)
except OSError as e:
    print('error %s' % errno.errorcode.get(e.errno, e.errno)); sys.exit(0)
try:
    fcntl.lockf(fd, (fcntl.LOCK_SH if sys.argv[2] == 'shared' else fcntl.LOCK_EX) | fcntl.LOCK_NB, 1, 0)
    print('locked')
except OSError as e:
    print('busy' if e.errno in (errno.EAGAIN, errno.EACCES) else 'error %s' % errno.errorcode.get(e.errno, e.errno))
`;

/** An outside check from host `host`: can a python process there lock `file` now? */
export function probe(host: string, file: string, mode: 'exclusive' | 'shared' = 'exclusive'): string {
  const [cmd, args] = cluster.onHost(host, ['python3', '-c', PROBE_PY, file, mode]);
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) throw new Error(`probe on ${host} failed: ${r.stderr}`);
  return r.stdout.trim();
}

/** Runs a shell command inside host `host`. */
export function onHostSync(host: string, script: string): string {
  const [cmd, args] = cluster.onHost(host, ['sh', '-c', script]);
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) throw new Error(`on ${host}: ${script}: ${r.stderr}`);
  return r.stdout;
}
