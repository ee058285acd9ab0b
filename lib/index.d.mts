// Types of the ESM entry point (lib/index.mjs): the same API as the CommonJS build.
import * as lockspace from '../dist/lib/index.js';

export * from '../dist/lib/index.js';
export default lockspace;
