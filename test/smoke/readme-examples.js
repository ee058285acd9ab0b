'use strict';
// Writes the Quick start examples of README.md as files a user would run, so that the portability check
// runs them as written on every Node.js it proves (only the lockspace directory is changed, to a
// scratch one):
//   node readme-examples.js README.md OUTDIR LOCKDIR
// writes OUTDIR/readme-esm.mjs (the first ES module example), readme-using.mjs (the `await using`
// example: Node.js >= 24 runs it as JavaScript) and readme-cjs.cjs (the CommonJS example).
// test/readme.test.ts runs every example of README.md on the Node.js that runs Jest.
const fs = require('fs');
const path = require('path');
const { readmeBlocks } = require('./readme-blocks');

const [readme, outDir, lockDir] = process.argv.slice(2);
const text = fs.readFileSync(readme, 'utf8');
const quickStart = text.slice(text.indexOf('## Quick start'), text.indexOf('\n## ', text.indexOf('## Quick start') + 1));
const blocks = readmeBlocks(quickStart, lockDir).filter((b) => !b.fragment).map((b) => b.code);
const esm = blocks.find((b) => b.includes("from 'lockspace'") && !b.includes('await using'));
const using = blocks.find((b) => b.includes('await using'));
const cjs = blocks.find((b) => b.includes("require('lockspace')"));
if (!esm || !using || !cjs) throw new Error(`README.md: Quick start examples not found (${blocks.length} blocks)`);
fs.writeFileSync(path.join(outDir, 'readme-esm.mjs'), esm);
fs.writeFileSync(path.join(outDir, 'readme-using.mjs'), using);
fs.writeFileSync(path.join(outDir, 'readme-cjs.cjs'), cjs);
