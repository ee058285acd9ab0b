/**
 * lockspace benchmark: lockspace and its baselines measured in one process run.
 * usage: npm run bench -- [--quick] [--json]
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { baselineCases } from './baselines';
import { runBound } from './bound';
import { runCancel } from './cancel';
import { runContention } from './contention';
import { compileFloor, floorCases } from './floor';
import { runHandoff } from './handoff';
import { libvirtCase } from './libvirt';
import { loadLockspace, type LockspaceModule } from './lockspace';
import { lockspaceCases } from './lockspace-cases';
import { type Case, runCases } from './measure';
import { type BenchOptions, parseOptions } from './options';
import { renderReport } from './report';
import type { BenchResults, Machine } from './results';
import { runScale } from './scale';
import { checkTargets } from './targets';
import { runWebLocksHandoff, webLocksCases, webLocksSkipReason } from './web-locks';

const FS_MAGIC: Record<number, string> = {
  0xef53: 'ext4',
  0x01021994: 'tmpfs',
  0x794c7630: 'overlayfs',
  0x58465342: 'xfs',
  0x9123683e: 'btrfs',
  0x6969: 'nfs',
  0x65735546: 'fuse',
};

function describeMachine(dir: string): Machine {
  const type = fs.statfsSync(dir).type;
  return {
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model.trim() ?? 'unknown',
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    kernel: os.release(),
    node: process.version,
    fsType: FS_MAGIC[type] ?? `0x${type.toString(16)}`,
  };
}

const progress = (message: string) => process.stderr.write(`[bench] ${message}\n`);

/** A fresh sub-directory of the run's temp dir, one per part so no two parts share a file. */
function subdir(root: string, name: string): string {
  const dir = path.join(root, name);
  fs.mkdirSync(dir, { mode: 0o700 });
  return dir;
}

/** Runs one lockspace part; a failure becomes a note so the rest of the report still prints. */
async function part<T>(title: string, notes: string[], run: () => Promise<T>): Promise<T | undefined> {
  progress(title);
  try {
    return await run();
  } catch (e) {
    notes.push(`${title} failed: ${(e as Error).stack ?? e}`);
    return undefined;
  }
}

function perOpCases(root: string, lockspace: LockspaceModule | undefined, notes: string[], options: BenchOptions): Case[] {
  const webLocks = lockspace ? webLocksCases(lockspace, subdir(root, 'web-locks')) : [];
  if (options.only === 'web-locks') return webLocks;
  const floorDir = subdir(root, 'floor');
  const baselines = baselineCases(subdir(root, 'baselines'));
  notes.push(...baselines.notes);
  const ours = lockspace ? lockspaceCases(lockspace, subdir(root, 'lockspace')) : [];
  const libvirt = libvirtCase(root, subdir(root, 'libvirt'));
  if (typeof libvirt === 'string') notes.push(libvirt);
  const peers = typeof libvirt === 'string' ? [] : [libvirt];
  // Within a round each lockspace case runs right after (or between) the C cases it is compared with.
  const floor = floorCases(compileFloor(root), floorDir);
  const byId = (list: Case[], id: string) => list.filter((c) => c.id === id);
  const paired = [
    ...byId(peers, 'peer:libvirt'),
    ...byId(floor, 'floor:open-lock-close'),
    ...byId(ours, 'lockspace:sync'),
    ...byId(ours, 'lockspace:sync-records'),
    ...byId(ours, 'lockspace:async'),
    ...byId(ours, 'lockspace:shared-sync'),
    ...byId(ours, 'lockspace:join-sync'),
    ...byId(ours, 'lockspace:wait-async'),
    ...byId(floor, 'floor:autocreate'),
    ...byId(ours, 'lockspace:autocreate'),
    ...byId(ours, 'lockspace:four-sync'),
    ...byId(ours, 'lockspace:set-sync'),
    ...byId(ours, 'lockspace:four-async'),
    ...byId(ours, 'lockspace:set-async'),
    ...webLocks,
  ];
  const rest = [...floor, ...ours].filter((c) => !paired.includes(c));
  return [...paired, ...rest, ...baselines.cases];
}

async function measure(options: BenchOptions, root: string): Promise<BenchResults> {
  const notes: string[] = [];
  const loaded = loadLockspace();
  const lockspace = typeof loaded === 'string' ? undefined : loaded;
  if (typeof loaded === 'string') notes.push(`${loaded}: baselines only`);

  const skipWebLocks = webLocksSkipReason();
  if (skipWebLocks) notes.push(skipWebLocks);
  const cases = await runCases(perOpCases(root, lockspace, notes, options), options.reps, options.sampleMs, progress);
  const results: BenchResults = { machine: describeMachine(root), options, cases, targets: [], notes };
  if (lockspace && !skipWebLocks) {
    results.webLocksHandoff = await part('Web Locks hand-off', notes, () =>
      runWebLocksHandoff(subdir(root, 'web-locks-handoff'), options.webLocksRounds, options.reps),
    );
  }
  if (lockspace && options.only === undefined) {
    const { reps, sampleMs } = options;
    results.scale = await part('scale', notes, () =>
      runScale({ dir: subdir(root, 'scale'), levels: options.scaleLevels, reps, sampleMs }),
    );
    results.contention = await part('contention', notes, () =>
      runContention(lockspace, subdir(root, 'contention'), reps, options.contentionMs),
    );
    results.handoff = await part('hand-off', notes, () => runHandoff(lockspace, subdir(root, 'handoff'), options));
    results.cancel = await part('cancel', notes, () => runCancel(lockspace, subdir(root, 'cancel'), options.cancel));
    results.bound = await part('bound sets', notes, () => runBound(lockspace, subdir(root, 'bound')));
  }
  results.targets = checkTargets(results);
  return results;
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'lockspace-bench-'));
  const started = Date.now();
  try {
    const results = await measure(options, root);
    progress(`done in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    process.stdout.write(options.json ? `${JSON.stringify(results, null, 2)}\n` : renderReport(results));
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
}

main().catch((e) => {
  process.stderr.write(`bench: ${(e as Error).stack ?? e}\n`);
  process.exit(1);
});
