// ESLint flat config: typescript-eslint's recommended rules for the TypeScript (lib/, test/, bench/)
// and ESLint's for the plain JavaScript (scripts/, test fixtures, the ESM wrapper). `npm run lint`
// runs it with --max-warnings=0, and .ci/run runs `npm run lint`.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

// Node's globals, for the .js/.mjs files (typescript-eslint turns no-undef off for .ts: tsc checks names).
const nodeGlobals = Object.fromEntries(
  [
    'AbortController', 'AbortSignal', 'Buffer', 'URL', 'console', 'process', 'queueMicrotask',
    'setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'setImmediate', 'clearImmediate',
    'structuredClone', 'SharedArrayBuffer', 'Atomics', 'TextDecoder', 'TextEncoder',
  ].map((name) => [name, 'readonly']),
);
const commonJsGlobals = { require: 'readonly', module: 'writable', exports: 'writable', __dirname: 'readonly', __filename: 'readonly' };

export default tseslint.config(
  { ignores: ['node_modules/', 'build/', 'dist/', 'prebuilds/', 'coverage/', 'tmp/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { ecmaVersion: 2022, globals: nodeGlobals },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
    },
  },
  {
    files: ['**/*.js', '**/*.cjs'],
    languageOptions: { sourceType: 'commonjs', globals: { ...nodeGlobals, ...commonJsGlobals } },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
  {
    files: ['**/*.js', '**/*.cjs', '**/*.mjs'],
    rules: {
      '@typescript-eslint/no-unused-vars': 'off',
      'no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
    },
  },
  {
    // Tests and benchmarks poke at internals and untyped JSON on purpose. Unused locals are allowed
    // in tests, as test/tsconfig.json allows them (noUnusedLocals: false).
    files: ['test/**/*.{ts,mts,cts}', 'bench/**/*.ts'],
    rules: {
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/no-require-imports': 'off',
      '@typescript-eslint/no-non-null-assertion': 'off',
    },
  },
  {
    files: ['test/**/*.{ts,mts,cts}'],
    rules: { '@typescript-eslint/no-unused-vars': 'off' },
  },
);
