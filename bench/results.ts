import type { BoundResult } from './bound';
/** Everything one bench run measured: what bench.ts collects and report.ts prints. */
import type { CancelResult } from './cancel';
import type { ContentionResult } from './contention';
import type { HandoffResult } from './handoff';
import type { CaseResult } from './measure';
import type { BenchOptions } from './options';
import type { ScaleResult } from './scale-child';
import type { TargetCheck } from './targets';
import type { WebLocksHandoffResult } from './web-locks';

export interface Machine {
  cpus: number;
  cpuModel: string;
  memoryGiB: number;
  kernel: string;
  node: string;
  fsType: string;
}

export interface BenchResults {
  machine: Machine;
  options: BenchOptions;
  cases: CaseResult[];
  scale?: ScaleResult & { launcher: string };
  contention?: ContentionResult;
  handoff?: HandoffResult;
  cancel?: CancelResult;
  bound?: BoundResult;
  webLocksHandoff?: WebLocksHandoffResult;
  targets: TargetCheck[];
  notes: string[];
}
