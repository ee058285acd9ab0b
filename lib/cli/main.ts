/* The operator CLI's dispatcher: one file per command beside this one, each with its own help. */
import * as fs from 'node:fs';
import * as nodePath from 'node:path';

import { Exit, EX_SOFTWARE, EX_USAGE, out, usage } from './args';
import * as holdCommand from './hold';
import * as nameCommand from './name';
import * as runCommand from './run';
import * as statusCommand from './status';

export const HELP = `Usage: lockspace <command> [options]

Operator tool for lockspace directories: fcntl locks on byte 0 of one file per resource, the
model of libvirt's virLockSpace (virtlockd's file_lockspace_dir works too).

Commands:
  status DIR [--json] [--probe]
        list every resource file in DIR: free, or locked shared/exclusive, with the holder's
        pid and command name
  run [OPTIONS] DIR|- NAME -- COMMAND [ARGS...]
        hold the lock on NAME (and --and NAME...) while COMMAND runs, like flock(1), whose options it takes too;
        exit with COMMAND's status
  hold --pid PID [OPTIONS] DIR|- NAME...
        hold the locks on every NAME for the life of process PID (a VM), all or nothing,
        whatever happens to this command; print the holder's pid
  name PATH [--no-canonicalize]
        print the resource name for PATH (SHA-256 hex, as virtlockd names its files)
  help [COMMAND]
        show this help, or a command's

Options:
  -h, --help      show help (also after a command: lockspace run --help)
  -V, --version   show the version

Exit status: 0 success; 64 usage error; 66 a file or directory is missing; 75 the lock is busy
or --wait timed out (\`run\` with flock's options: 1); 77 permission denied; 71 other system
errors. \`run\` exits with COMMAND's status instead (128+N if a signal N killed it; 126 cannot
execute, 127 not found).
Set NODE_DEBUG=lockspace to log acquisitions, conflicts, waits and releases to stderr.
`;

interface Command {
  HELP: string;
  run(args: string[]): number | Promise<number>;
}

const COMMANDS: Record<string, Command> = {
  status: { HELP: statusCommand.HELP, run: statusCommand.status },
  run: { HELP: runCommand.HELP, run: runCommand.run },
  hold: { HELP: holdCommand.HELP, run: holdCommand.hold },
  name: { HELP: nameCommand.HELP, run: nameCommand.name },
};

function commandNamed(name: string): Command | undefined {
  return Object.prototype.hasOwnProperty.call(COMMANDS, name) ? COMMANDS[name] : undefined;
}

function version(): string {
  for (let dir = __dirname; ; dir = nodePath.dirname(dir)) {
    try {
      const pkg = JSON.parse(fs.readFileSync(nodePath.join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'lockspace') return pkg.version ?? 'unknown';
    } catch {
      // keep looking
    }
    if (nodePath.dirname(dir) === dir) return 'unknown';
  }
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...args] = argv;
  try {
    if (command === undefined) throw usage(undefined, 'missing command');
    if (command === '-h' || command === '--help') {
      out(HELP);
      return 0;
    }
    if (command === '-V' || command === '--version') {
      out(version());
      return 0;
    }
    if (command === 'help') {
      if (args.length === 0) {
        out(HELP);
        return 0;
      }
      const c = commandNamed(args[0]);
      if (!c) throw usage(undefined, `unknown command '${args[0]}'`);
      out(c.HELP);
      return 0;
    }
    const c = commandNamed(command);
    if (!c) throw usage(undefined, `${command.startsWith('-') ? 'unknown option' : 'unknown command'} '${command}'`);
    return await c.run(args);
  } catch (err) {
    if (err instanceof Exit) {
      const where = err.command ? `lockspace ${err.command}` : 'lockspace';
      process.stderr.write(`${where}: ${err.message}\n`);
      if (err.status === EX_USAGE) process.stderr.write(`Try '${where} --help' for more information.\n`);
      return err.status;
    }
    process.stderr.write(`lockspace: internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    return EX_SOFTWARE;
  }
}
