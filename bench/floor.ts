/** The C floor: bench/floor.c compiled with `cc -O2` into the run's temp dir, run once per sample. */
import { execFileSync } from 'child_process';
import * as path from 'path';
import { Case } from './measure';

export type FloorMode = 'open-lock-close' | 'lock-unlock' | 'reacquire' | 'autocreate';

const SOURCE = path.join(__dirname, '..', '..', 'bench', 'floor.c');

const LABELS: Record<FloorMode, string> = {
  'open-lock-close': 'C open+F_SETLK+close',
  'lock-unlock': 'C F_SETLK lock+unlock (open fd)',
  reacquire: 'C F_SETLK+fstatat+F_SETLK (open fd)',
  autocreate: 'C autoCreate syscalls',
};

export function compileFloor(tmpDir: string): string {
  const binary = path.join(tmpDir, 'floor-bin');
  execFileSync('cc', ['-O2', '-Wall', '-o', binary, SOURCE], { stdio: ['ignore', 'inherit', 'inherit'] });
  return binary;
}

function runFloor(binary: string, mode: FloorMode, iterations: number, dir: string): number {
  const out = execFileSync(binary, [mode, String(iterations), dir], { encoding: 'utf8' });
  const ns = Number(out.trim());
  if (!Number.isFinite(ns)) throw new Error(`floor ${mode}: unexpected output ${JSON.stringify(out)}`);
  return ns;
}

export function floorCases(binary: string, dir: string): Case[] {
  return (Object.keys(LABELS) as FloorMode[]).map((mode) => ({
    id: `floor:${mode}`,
    label: LABELS[mode],
    group: 'C floor',
    run: (iterations: number) => runFloor(binary, mode, iterations, dir),
  }));
}
