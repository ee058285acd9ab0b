// CommonJS consumer without esModuleInterop: the default export is declared (no TS1192) and is the
// same API as the named exports.
import lockspace from 'lockspace';
import { LockSpace } from 'lockspace';

export const same: typeof LockSpace = lockspace.LockSpace;
