// Types of the ESM entry point (lib/index.mjs): the same API as the CommonJS build, default export included.
export * from '../dist/lib/index.js';
export { default } from '../dist/lib/index.js';
