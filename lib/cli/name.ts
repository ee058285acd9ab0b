/* lockspace name PATH: the resource name resourceNameForPath gives. */
import { lib, onePositional, out, parse, rethrowArgError } from './args';

export const HELP = `Usage: lockspace name PATH [--no-canonicalize]

Print the resource name for the file PATH: the lowercase SHA-256 hex of the path, the name
virtlockd gives a disk's lock file in its file_lockspace_dir (resourceNameForPath in the API).

Options:
  --no-canonicalize  hash PATH exactly as given (virtlockd hashes the disk path as configured
                     in the domain XML); by default PATH is first resolved as the kernel
                     resolves it (symlinks, then '.' and '..': 'link/..' is the parent of link's
                     target), and a relative PATH is taken from the current directory
  -h, --help         show this help

Exit status: 0 success; 64 usage error; 66 PATH's directory does not exist; 71 other errors.
`;

export function name(args: string[]): number {
  const p = parse('name', args, { 'no-canonicalize': { kind: 'flag' } });
  if (p.help) {
    out(HELP);
    return 0;
  }
  const path = onePositional('name', p, 'PATH');
  const canonicalize = !p.options.has('no-canonicalize');
  let result: string;
  try {
    result = lib().resourceNameForPath(path, { canonicalize });
  } catch (err) {
    rethrowArgError('name', err, 'PATH');
  }
  out(result);
  return 0;
}
