/*
 * Which signals `run` catches, and what each does. Every signal that can be caught is caught, so
 * none can end this process (and drop the lock) while COMMAND runs: it is passed on to COMMAND.
 */
import { constants as osConstants } from 'node:os';

export type Disposition = 'terminate' | 'ignore' | 'stop';

/** SIGKILL/SIGSTOP cannot be caught. A real SIGSEGV, SIGBUS, SIGFPE or SIGILL leaves no state to run
 *  JavaScript in (Node.js's warning), so they keep their default action. SIGCHLD is about our child. */
const NOT_CAUGHT = new Set(['SIGKILL', 'SIGSTOP', 'SIGSEGV', 'SIGBUS', 'SIGFPE', 'SIGILL', 'SIGCHLD']);
const IGNORED_BY_DEFAULT = new Set(['SIGCONT', 'SIGURG', 'SIGWINCH']);
const STOPPING = new Set(['SIGTSTP', 'SIGTTIN', 'SIGTTOU']);

/** The signals `run` catches, one name per signal number (SIGIOT and SIGPOLL are aliases). */
export function caughtSignals(): NodeJS.Signals[] {
  const seen = new Set<number>();
  const names: NodeJS.Signals[] = [];
  for (const [name, number] of Object.entries(osConstants.signals)) {
    if (NOT_CAUGHT.has(name) || seen.has(number)) continue;
    seen.add(number);
    names.push(name as NodeJS.Signals);
  }
  return names;
}

/** What the signal would do to this process by default. */
export function disposition(signal: NodeJS.Signals): Disposition {
  if (IGNORED_BY_DEFAULT.has(signal)) return 'ignore';
  if (STOPPING.has(signal)) return 'stop';
  return 'terminate';
}

export function signalNumber(signal: NodeJS.Signals): number {
  return (osConstants.signals as Record<string, number>)[signal] ?? 0;
}
