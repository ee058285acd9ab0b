#!/usr/bin/env node
/*
 * lockspace: the operator CLI (package "bin"). The commands live in lib/cli/, one file each:
 *
 *   lockspace status DIR [--json] [--probe]       who holds what in a lockspace directory
 *   lockspace run [...] DIR|- NAME -- COMMAND     hold a lock while a command runs, like flock(1)
 *   lockspace name PATH [--no-canonicalize]       the resource name resourceNameForPath gives
 *
 * Exit status follows sysexits.h: 64 usage, 66 missing input, 75 busy or timed out, 77 permission,
 * 71 other system errors; `run` exits with the command's status (128+N when killed by signal N),
 * 126/127 when the command cannot be executed / is not found.
 */
import { main } from './cli/main';

export { main } from './cli/main';
export type { ResourceStatus } from './cli/status';
export type { Holder } from './proc-locks';

if (require.main === module) {
  // `ps` and /proc/PID/comm show this process as lockspace, not node.
  process.title = 'lockspace';
  // `lockspace status DIR | head -1`: a closed pipe ends the output, not in a stack trace.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
    process.exit(process.exitCode ?? 0);
  });
  void main(process.argv.slice(2)).then((status) => {
    process.exitCode = status;
  });
}
