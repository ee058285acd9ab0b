/* What every command shares: exit statuses, the Exit error, the argument parser, output. */
import type * as Api from '../index';

export const EX_USAGE = 64;
export const EX_NOINPUT = 66;
export const EX_SOFTWARE = 70;
export const EX_OSERR = 71;
export const EX_TEMPFAIL = 75;
export const EX_NOPERM = 77;
export const EX_CANNOT_EXEC = 126;
export const EX_NOT_FOUND = 127;

/** Ends the command with a message on stderr and an exit status. */
export class Exit extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly command?: string,
  ) {
    super(message);
  }
}

export function usage(command: string | undefined, message: string): Exit {
  return new Exit(message, EX_USAGE, command);
}

/** 'repeat': a value option that may be given again, each value kept (Parsed.lists). */
type OptKind = 'flag' | 'optional' | 'value' | 'repeat';
export interface OptSpec {
  kind: OptKind;
  /** Its short forms, one letter each ('xe': -x and -e). */
  short?: string;
}
export interface Parsed {
  options: Map<string, string | true>;
  /** The values of each 'repeat' option, in order. */
  lists: Map<string, string[]>;
  /** The options (long names) given in a short form at least once. */
  shortForms: Set<string>;
  positionals: string[];
  /** `run`: the command and its arguments. */
  rest: string[];
  help: boolean;
}

const hasOwn = (o: object, key: string): boolean => Object.prototype.hasOwnProperty.call(o, key);

/**
 * Parses `args` against `spec`. Options may come before, between and after positionals; `--` ends
 * them (so positionals may start with '-'). Short options bundle as getopt(3) allows (`-xn`, `-w5`,
 * `-w 5`). With `commandAfter` (run), once that many positionals are there, a `--` is dropped and
 * whatever follows starts the command, as does the first non-option; the command's own arguments
 * are left alone.
 */
export function parse(command: string, args: string[], spec: Record<string, OptSpec>, commandAfter?: number): Parsed {
  const parsed: Parsed = { options: new Map(), lists: new Map(), shortForms: new Set(), positionals: [], rest: [], help: false };
  const byShort = new Map(Object.entries(spec).flatMap(([long, s]) => [...(s.short ?? '')].map((c) => [c, long] as const)));
  let i = 0;
  let optionsDone = false;
  for (; i < args.length; i++) {
    const arg = args[i];
    const commandStarts = commandAfter !== undefined && parsed.positionals.length >= commandAfter;
    if (arg === '--' && commandStarts) {
      i++;
      break;
    }
    if (!optionsDone && arg === '--') {
      optionsDone = true;
      continue;
    }
    if (optionsDone || arg === '-' || !arg.startsWith('-')) {
      if (commandStarts) break;
      parsed.positionals.push(arg);
      continue;
    }
    if (arg === '-h' || arg === '--help') {
      parsed.help = true;
      continue;
    }
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      const long = eq < 0 ? arg.slice(2) : arg.slice(2, eq);
      let value = eq < 0 ? undefined : arg.slice(eq + 1);
      const s = hasOwn(spec, long) ? spec[long] : undefined;
      if (!s) throw usage(command, `unknown option '${arg.split('=')[0]}'`);
      if (s.kind === 'flag' && value !== undefined) throw usage(command, `option '--${long}' takes no value`);
      if ((s.kind === 'value' || s.kind === 'repeat') && value === undefined) {
        if (i + 1 >= args.length) throw usage(command, `option '--${long}' needs a value`);
        value = args[++i];
      }
      if (s.kind === 'repeat') parsed.lists.set(long, [...(parsed.lists.get(long) ?? []), value!]);
      parsed.options.set(long, value ?? true);
      continue;
    }
    for (let j = 1; j < arg.length; j++) {
      const long = byShort.get(arg[j]);
      if (long === undefined) throw usage(command, `unknown option '-${arg[j]}'${arg.length > 2 ? ` (in '${arg}')` : ''}`);
      parsed.shortForms.add(long);
      if (spec[long].kind === 'flag') {
        parsed.options.set(long, true);
        continue;
      }
      // The rest of the word is the value (-w5); a 'value' option takes the next word if none.
      let value: string | true = arg.slice(j + 1) || true;
      if (value === true && spec[long].kind === 'value') {
        if (i + 1 >= args.length) throw usage(command, `option '-${arg[j]}' needs a value`);
        value = args[++i];
      }
      parsed.options.set(long, value);
      break;
    }
  }
  parsed.rest = args.slice(i);
  return parsed;
}

/** Exactly one positional, or a usage error naming what is missing. */
export function onePositional(command: string, p: Parsed, what: string): string {
  if (p.positionals.length !== 1) {
    throw usage(command, p.positionals.length === 0 ? `missing ${what}` : `unexpected argument '${p.positionals[1]}'`);
  }
  return p.positionals[0];
}

let api: typeof Api | undefined;
/** The library, loaded on first use: help and usage errors work even without the native addon. */
export function lib(): typeof Api {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (api ??= require('../index') as typeof Api);
}

export function out(text: string): void {
  process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
}

export function errCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null ? ((err as { code?: unknown }).code as string | undefined) : undefined;
}

/** The exit status for a system error. */
export function statusFor(code: string | undefined): number {
  switch (code) {
    case 'ENOENT':
    case 'ENOTDIR':
      return EX_NOINPUT;
    case 'EACCES':
    case 'EPERM':
    case 'EROFS':
      return EX_NOPERM;
    case 'EBUSY':
    case 'ETIMEDOUT':
    case 'EDEADLK':
    case 'EAGAIN':
      return EX_TEMPFAIL;
    default:
      return EX_OSERR;
  }
}

export function systemExit(err: unknown): Exit {
  const message = err instanceof Error ? err.message : String(err);
  return new Exit(message, statusFor(errCode(err)));
}

/** Reports bad-argument TypeErrors of the library (ERR_INVALID_ARG_*) as usage errors. */
export function rethrowArgError(command: string, err: unknown, what: string): never {
  const code = errCode(err);
  if (err instanceof TypeError && (code === 'ERR_INVALID_ARG_VALUE' || code === 'ERR_INVALID_ARG_TYPE')) {
    const reason = /^The argument '[^']*' (.*?)\. Received /.exec(err.message)?.[1] ?? err.message;
    throw usage(command, `invalid ${what}: ${reason}`);
  }
  throw systemExit(err);
}

/** An option's SECONDS (decimals allowed) in ms, or undefined when not given. */
export function seconds(command: string, option: string, value: string | true | undefined): number | undefined {
  if (value === undefined || value === true) return undefined;
  if (!/^(\d+(\.\d*)?|\.\d+)$/.test(value)) throw usage(command, `invalid --${option} value '${value}': expected SECONDS (e.g. 10 or 0.5)`);
  return Math.round(Number(value) * 1000);
}

/** An option's value, one of `allowed`, or undefined when not given. */
export function oneOf<T extends string>(command: string, option: string, value: string | true | undefined, allowed: readonly T[]): T | undefined {
  if (value === undefined) return undefined;
  if (typeof value === 'string' && (allowed as readonly string[]).includes(value)) return value as T;
  throw usage(command, `invalid --${option} value '${String(value)}': expected ${allowed.join(', ')}`);
}
