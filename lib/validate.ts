import { invalidArgType, invalidArgValue } from './errors';

export type Owner = number | string;

/** A string with a lone UTF-16 surrogate has no UTF-8 form: converting it gives U+FFFD, which would
 *  merge distinct names and owners. With the `u` flag, a well-formed surrogate pair does not match. */
const LONE_SURROGATE = /[\uD800-\uDFFF]/u;

export function isWellFormed(s: string): boolean {
  return !LONE_SURROGATE.test(s);
}

/** Rejects strings that are not well-formed Unicode (ERR_INVALID_ARG_VALUE). */
export function checkWellFormed(argName: string, value: string): string {
  if (!isWellFormed(value)) {
    throw invalidArgValue(argName, value, 'must be a well-formed Unicode string (it has a lone surrogate)');
  }
  return value;
}

/** Checks a path argument (a lockspace directory, a disk path): a non-empty well-formed string. */
export function checkPath(argName: string, value: unknown, nullable = false): string | null {
  if (nullable && value === null) return null;
  if (typeof value !== 'string') throw invalidArgType(argName, nullable ? 'of type string or null' : 'of type string', value);
  if (value === '') throw invalidArgValue(argName, value, 'must not be empty');
  if (value.includes('\0')) throw invalidArgValue(argName, value, 'must not contain NUL bytes');
  return checkWellFormed(argName, value);
}

/** Checks a resource name before any file-system call (`arg`: how errors name the argument). */
export function checkName(name: unknown, pathMode: boolean, arg = 'name'): string {
  if (typeof name !== 'string') throw invalidArgType(arg, 'of type string', name);
  if (name.includes('\0')) throw invalidArgValue(arg, name, 'must not contain NUL bytes');
  checkWellFormed(arg, name);
  if (pathMode) {
    if (!name.startsWith('/')) throw invalidArgValue(arg, name, 'must be an absolute path (the lockspace has no directory)');
    if (name.endsWith('/')) throw invalidArgValue(arg, name, 'must name a file, not end with "/"');
    if (Buffer.byteLength(name) >= 4096) throw invalidArgValue(arg, name, 'must be shorter than 4096 bytes');
    return name;
  }
  if (name === '') throw invalidArgValue(arg, name, 'must not be empty');
  if (name === '.' || name === '..') throw invalidArgValue(arg, name, 'must not be "." or ".."');
  if (name.includes('/')) throw invalidArgValue(arg, name, 'must be a single path component (no "/")');
  if (name.length > 85 && Buffer.byteLength(name) > 255) throw invalidArgValue(arg, name, 'must be at most 255 bytes');
  return name;
}

export function checkOwner(owner: unknown, argName = 'options.owner'): Owner {
  if (typeof owner === 'number') {
    if (!Number.isFinite(owner)) throw invalidArgValue(argName, owner, 'must be a finite number or a non-empty string');
    return owner;
  }
  if (typeof owner === 'string') {
    if (owner === '') throw invalidArgValue(argName, owner, 'must be a finite number or a non-empty string');
    return checkWellFormed(argName, owner);
  }
  throw invalidArgType(argName, 'of type number or string', owner);
}

/** The native table keys owners by type and value, so 1 and '1' stay different owners. */
export function ownerKey(owner: Owner): string {
  return typeof owner === 'number' ? `n${owner}` : `s${owner}`;
}

export function ownerFromKey(key: string): Owner {
  return key[0] === 'n' ? Number(key.slice(1)) : key.slice(1);
}

/* ------------------------------------------------------------------ AbortSignal */

// Read through AbortSignal's and EventTarget's own prototype members, so a signal whose properties
// were overwritten still behaves as a signal, and anything else fails the brand check.
const abortedGetter = Object.getOwnPropertyDescriptor(AbortSignal.prototype, 'aborted')!.get!;
const reasonGetter = Object.getOwnPropertyDescriptor(AbortSignal.prototype, 'reason')?.get;
const addListener = EventTarget.prototype.addEventListener;
const removeListener = EventTarget.prototype.removeEventListener;

/** True only for a real AbortSignal (a duck-typed look-alike fails AbortSignal's own brand check). */
export function isAbortSignal(value: unknown): value is AbortSignal {
  if (typeof value !== 'object' || value === null) return false;
  try {
    abortedGetter.call(value);
    return true;
  } catch {
    return false;
  }
}

export function signalAborted(signal: AbortSignal): boolean {
  return abortedGetter.call(signal) as boolean;
}

export function signalReason(signal: AbortSignal): unknown {
  return reasonGetter?.call(signal);
}

export function onAbort(signal: AbortSignal, listener: () => void): () => void {
  addListener.call(signal, 'abort', listener, { once: true });
  return () => removeListener.call(signal, 'abort', listener);
}

/* ------------------------------------------------------------------ options objects */

export type Kind = 'boolean' | 'timeout' | 'interval' | 'owner' | 'signal' | 'lockType' | 'mode' | 'name' | 'label' | 'generation';

/** The longest holder record label, in UTF-8 bytes (native/core/holder_record.h, kMaxLabel). */
export const MAX_LABEL_BYTES = 256;
export type Spec = Record<string, Kind>;

function checkValue(key: string, kind: Kind, value: unknown, argName: string): void {
  const arg = `${argName}.${key}`;
  switch (kind) {
    case 'boolean':
      if (typeof value !== 'boolean') throw invalidArgType(arg, 'of type boolean', value);
      return;
    case 'timeout':
      if (typeof value !== 'number') throw invalidArgType(arg, 'of type number', value);
      if (Number.isNaN(value) || value < 0) throw invalidArgValue(arg, value, 'must be a non-negative number');
      return;
    case 'interval': // milliseconds for a timer: 0 (off) up to what setInterval takes
      if (typeof value !== 'number') throw invalidArgType(arg, 'of type number', value);
      if (!Number.isInteger(value) || value < 0 || value > 2 ** 31 - 1) {
        throw invalidArgValue(arg, value, 'must be an integer from 0 (off) to 2147483647 (ms)');
      }
      return;
    case 'owner':
      checkOwner(value, arg);
      return;
    case 'signal':
      if (!isAbortSignal(value)) throw invalidArgType(arg, 'an instance of AbortSignal', value);
      return;
    case 'lockType':
      if (value === 'posix' || value === 'ofd') return;
      if (typeof value !== 'string') throw invalidArgType(arg, 'of type string', value);
      throw invalidArgValue(arg, value, "must be 'posix' or 'ofd'");
    case 'mode':
      if (value === 'exclusive' || value === 'shared') return;
      if (typeof value !== 'string') throw invalidArgType(arg, 'of type string', value);
      throw invalidArgValue(arg, value, "must be 'exclusive' or 'shared'");
    case 'name': // checkName's rule depends on the lockspace: its caller checks it
      return;
    case 'label':
      if (typeof value !== 'string') throw invalidArgType(arg, 'of type string', value);
      if (value.includes('\0')) throw invalidArgValue(arg, value, 'must not contain NUL bytes');
      checkWellFormed(arg, value);
      if (Buffer.byteLength(value) > MAX_LABEL_BYTES) throw invalidArgValue(arg, value, `must be at most ${MAX_LABEL_BYTES} bytes (UTF-8)`);
      return;
    case 'generation':
      if (typeof value !== 'bigint') throw invalidArgType(arg, 'of type bigint', value);
      if (value < 0n || value >= 2n ** 64n) throw invalidArgValue(arg, value, 'must be a 64-bit unsigned generation (a lease.generation)');
      return;
  }
}

/**
 * Reads an options object once: a misspelt (unknown own) property is an error, not a silent
 * default; each known option is read exactly once (own or inherited, a getter runs once) and the
 * value read is the one validated and returned, in a fresh object.
 */
export function readOptions<T extends object>(options: unknown, spec: Spec, what: string): Partial<T> {
  if (options === undefined) return {};
  const opts = knownOptions(options, spec, what);
  const read: Record<string, unknown> = {};
  for (const key of Object.keys(spec)) {
    const value = readOption(opts, key, spec[key]);
    if (value !== undefined) read[key] = value;
  }
  return read as Partial<T>;
}

const hasOwn = (o: object, key: string): boolean => Object.prototype.hasOwnProperty.call(o, key);

/** The first half of readOptions: `options` as an object with no unknown own property. An unknown
 *  one is an error with the hint that fits it: `misplaced[key]` for an option of another call, the
 *  known name it misspells, or the known names. */
export function knownOptions(
  options: unknown,
  spec: Spec,
  what: string,
  misplaced?: Readonly<Record<string, string>>,
  argName = 'options',
): Record<string, unknown> {
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw invalidArgType(argName, 'of type object', options);
  }
  // for-in and not Object.keys: no array per call (the own keys come first, in the same order).
  for (const key in options) {
    if (hasOwn(options, key) && !hasOwn(spec, key)) throw unknownOption(options, key, spec, what, misplaced, argName);
  }
  return options as Record<string, unknown>;
}

function unknownOption(
  options: object,
  key: string,
  spec: Spec,
  what: string,
  misplaced: Readonly<Record<string, string>> = {},
  argName = 'options',
): TypeError {
  if (hasOwn(misplaced, key)) {
    return invalidArgValue(argName, options, `has the property "${key}", which ${what} does not take: ${misplaced[key]}`);
  }
  const known = Object.keys(spec);
  const meant = [...known, ...Object.keys(misplaced)].find((name) => isMisspelling(key, name));
  let hint = `known: ${known.join(', ')}`;
  if (meant !== undefined) hint = `did you mean ${meant}?${hasOwn(misplaced, meant) ? ` ${what} does not take that either: ${misplaced[meant]}` : ''}`;
  return invalidArgValue(argName, options, `has an unknown property "${key}" for ${what} (${hint})`);
}

/** True when `typed` is most likely `name` misspelt: the same letters but for case, '-' and '_',
 *  or at most one edit away (two for longer names); an edit is a letter added, removed, changed,
 *  or two neighbours swapped. */
function isMisspelling(typed: string, name: string): boolean {
  const a = typed.toLowerCase().replace(/[-_]/g, '');
  const b = name.toLowerCase();
  if (a === b) return true;
  const limit = b.length >= 6 ? 2 : 1;
  if (Math.abs(a.length - b.length) > limit) return false;
  // Optimal string alignment distance, one row of the table per letter of `a`.
  let before: number[] = [];
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      row[j] = Math.min(previous[j] + 1, row[j - 1] + 1, previous[j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) row[j] = Math.min(row[j], before[j - 2] + 1);
    }
    before = previous;
    previous = row;
  }
  return previous[b.length] <= limit;
}

/** The second half: one option, read once and validated (undefined when not set). A hot path that
 *  reads its options with constant keys in spec order gets fast property loads. */
export function readOption(opts: Record<string, unknown>, key: string, kind: Kind, argName = 'options'): unknown {
  const value = opts[key];
  if (value !== undefined) checkValue(key, kind, value, argName);
  return value;
}
