/* README.md's examples run as pasted: every ```js/```mjs/```cjs/```ts block that is not marked
 * `<!-- fragment -->` (test/smoke/readme-blocks.js reads them) runs in a node process of its own
 * against a scratch lockspace directory, `lockspace` resolving to this checkout. TypeScript is
 * compiled as tsc does for target ES2022 (types are test/types' business). */
import * as fs from 'fs';
import * as path from 'path';
import { spawnSync } from 'child_process';
import * as ts from 'typescript';
import { mkTmpDir, rmTmpDir } from './helpers';

interface Block {
  lang: 'js' | 'mjs' | 'cjs' | 'ts';
  code: string;
  line: number;
  fragment: boolean;
}
const { readmeBlocks } = require('./smoke/readme-blocks') as { readmeBlocks: (markdown: string, lockDir: string) => Block[] };

const ROOT = path.join(__dirname, '..');
const work = mkTmpDir('lockspace-readme-');
const locks = path.join(work, 'locks');
const blocks = readmeBlocks(fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8'), locks);
const runnable = blocks.filter((b) => !b.fragment);

beforeAll(() => {
  fs.mkdirSync(path.join(work, 'node_modules'));
  fs.symlinkSync(ROOT, path.join(work, 'node_modules', 'lockspace'));
});
afterAll(() => rmTmpDir(work));

/** The block as a file node runs: ES module or CommonJS as its code says, TypeScript compiled. */
function program(b: Block): { file: string; source: string } {
  if (b.lang === 'ts') {
    const compilerOptions = { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 };
    return { file: `readme-${b.line}.mjs`, source: ts.transpileModule(b.code, { compilerOptions }).outputText };
  }
  const esm = b.lang === 'mjs' || (b.lang === 'js' && /^import\s/m.test(b.code));
  return { file: `readme-${b.line}.${esm ? 'mjs' : 'cjs'}`, source: b.code };
}

test('README.md has examples to run', () => {
  expect(runnable.length).toBeGreaterThan(0);
});

test.each(runnable.map((b) => [b.line, b.lang, b] as const))('the example at README.md line %i (%s) runs as pasted', (_line, _lang, b) => {
  const { file, source } = program(b);
  fs.writeFileSync(path.join(work, file), source);
  const r = spawnSync(process.execPath, [file], { cwd: work, encoding: 'utf8', timeout: 30000 });
  expect({ status: r.status, stderr: r.stderr }).toEqual({ status: 0, stderr: '' });
  expect(r.stdout).not.toMatch(/\b\d+n\b/); // a BigInt printed as such (123n) is not for a reader
  // Every example releases what it takes: its autoCreate files are gone.
  expect(fs.existsSync(locks) ? fs.readdirSync(locks) : []).toEqual([]);
});
