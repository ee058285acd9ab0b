import { invalidArgType, invalidArgValue } from './errors';

export type Owner = number | string;

/** Checks a resource name before any file-system call. */
export function checkName(name: unknown, pathMode: boolean): string {
  if (typeof name !== 'string') throw invalidArgType('name', 'of type string', name);
  if (name.includes('\0')) throw invalidArgValue('name', name, 'must not contain NUL bytes');
  if (pathMode) {
    if (!name.startsWith('/')) throw invalidArgValue('name', name, 'must be an absolute path (the lockspace has no directory)');
    if (name.endsWith('/')) throw invalidArgValue('name', name, 'must name a file, not end with "/"');
    if (Buffer.byteLength(name) >= 4096) throw invalidArgValue('name', name, 'must be shorter than 4096 bytes');
    return name;
  }
  if (name === '') throw invalidArgValue('name', name, 'must not be empty');
  if (name === '.' || name === '..') throw invalidArgValue('name', name, 'must not be "." or ".."');
  if (name.includes('/')) throw invalidArgValue('name', name, 'must be a single path component (no "/")');
  if (name.length > 85 && Buffer.byteLength(name) > 255) throw invalidArgValue('name', name, 'must be at most 255 bytes');
  return name;
}

export function checkOwner(owner: unknown, argName = 'options.owner'): Owner {
  if (typeof owner === 'number') {
    if (!Number.isFinite(owner)) throw invalidArgValue(argName, owner, 'must be a finite number or a non-empty string');
    return owner;
  }
  if (typeof owner === 'string') {
    if (owner === '') throw invalidArgValue(argName, owner, 'must be a finite number or a non-empty string');
    return owner;
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

type Spec = Record<string, 'boolean' | 'number' | 'owner' | 'signal'>;

/** Checks an options object: known keys only (a misspelt option is an error, not a silent default). */
export function checkOptions<T extends object>(options: unknown, spec: Spec, what: string): Partial<T> {
  if (options === undefined) return {};
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw invalidArgType('options', 'of type object', options);
  }
  const opts = options as Record<string, unknown>;
  for (const key of Object.keys(opts)) {
    const kind = spec[key];
    if (kind === undefined) {
      throw invalidArgValue('options', options, `has an unknown property "${key}" for ${what} (known: ${Object.keys(spec).join(', ')})`);
    }
    const value = opts[key];
    if (value === undefined) continue;
    switch (kind) {
      case 'boolean':
        if (typeof value !== 'boolean') throw invalidArgType(`options.${key}`, 'of type boolean', value);
        break;
      case 'number':
        if (typeof value !== 'number') throw invalidArgType(`options.${key}`, 'of type number', value);
        if (Number.isNaN(value) || value < 0) throw invalidArgValue(`options.${key}`, value, 'must be a non-negative number');
        break;
      case 'owner':
        checkOwner(value, `options.${key}`);
        break;
      case 'signal':
        if (typeof value !== 'object' || value === null || typeof (value as AbortSignal).aborted !== 'boolean' ||
            typeof (value as AbortSignal).addEventListener !== 'function') {
          throw invalidArgType(`options.${key}`, 'an instance of AbortSignal', value);
        }
        break;
    }
  }
  return opts as Partial<T>;
}
