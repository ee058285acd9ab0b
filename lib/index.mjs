// ESM entry point ("import" condition of package.json "exports"). It re-exports the CommonJS build, so
// `import` and `require` share one module instance: one set of classes (instanceof works across
// both) and one binding. test/esm.test.ts checks that the names here match the CommonJS exports.
import cjs from '../dist/lib/index.js';

export const { AbortError, BoundSet, Lease, LeaseSet, LockSpace, LockspaceError, isLockspaceError, resourceNameForPath, webLockFileName } = cjs;
// The CommonJS module itself, which is also its own default export.
export default cjs;
