/**
 * libvirt's own C lock table (virLockSpace, the model lockspace follows) as a baseline:
 * bench/libvirt.c compiled with `cc -O2` into the run's temp dir, run once per sample. It loads
 * libvirt.so.0 (Debian's libvirt0) with dlopen; without it the bench notes so and skips the case.
 */
import { execFileSync, spawnSync } from 'child_process';
import * as path from 'path';
import { Case } from './measure';

const SOURCE = path.join(__dirname, '..', '..', 'bench', 'libvirt.c');
/** libvirt.c's exit status when libvirt.so.0 or one of its functions cannot be loaded. */
const MISSING = 3;

function runLibvirt(binary: string, iterations: number, dir: string): number {
  const out = execFileSync(binary, [String(iterations), dir], { encoding: 'utf8' });
  const ns = Number(out.trim());
  if (!Number.isFinite(ns)) throw new Error(`libvirt: unexpected output ${JSON.stringify(out)}`);
  return ns;
}

/** The libvirt case, or the reason it cannot run here. */
export function libvirtCase(tmpDir: string, dir: string): Case | string {
  const binary = path.join(tmpDir, 'libvirt-bin');
  execFileSync('cc', ['-O2', '-Wall', '-o', binary, SOURCE, '-ldl'], { stdio: ['ignore', 'inherit', 'inherit'] });
  const probe = spawnSync(binary, ['1', dir], { encoding: 'utf8' });
  if (probe.status === MISSING) {
    return `libvirt baseline skipped (${probe.stderr.trim()}; apt-get install libvirt0 to measure it)`;
  }
  if (probe.status !== 0) throw new Error(`libvirt probe failed: ${probe.stderr.trim() || probe.status}`);
  return {
    id: 'peer:libvirt',
    label: 'libvirt virLockSpace acquire+release (C)',
    group: 'peer',
    run: (iterations: number) => runLibvirt(binary, iterations, dir),
  };
}
