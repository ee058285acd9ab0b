'use strict';
// Writes the Quick start examples of README.md as files a user would run, so that the portability check
// runs them as written on every Node.js it proves (only the lockspace directory is changed, to a
// scratch one):
//   node readme-examples.js README.md OUTDIR LOCKDIR
// writes OUTDIR/readme-esm.mjs (the first ES module example), readme-using.mjs (it and the `await using`
// example that follows it: Node.js >= 24) and readme-cjs.cjs (the CommonJS example).
const fs = require('fs');
const path = require('path');

const [readme, outDir, lockDir] = process.argv.slice(2);
const text = fs.readFileSync(readme, 'utf8');
const quickStart = text.slice(text.indexOf('## Quick start'), text.indexOf('\n## ', text.indexOf('## Quick start') + 1));
const blocks = [...quickStart.matchAll(/^```(ts|js)\n([\s\S]*?)^```$/gm)].map((m) => m[2]);
const esm = blocks.find((b) => b.includes("from 'lockspace'"));
const using = blocks.find((b) => b.includes('await using'));
const cjs = blocks.find((b) => b.includes("require('lockspace')"));
if (!esm || !using || !cjs) throw new Error(`README.md: Quick start examples not found (${blocks.length} blocks)`);
const scratch = (code) => code.replaceAll('/var/lib/myapp/locks', lockDir);
fs.writeFileSync(path.join(outDir, 'readme-esm.mjs'), scratch(esm));
fs.writeFileSync(path.join(outDir, 'readme-using.mjs'), scratch(`${esm}\n${using}`));
fs.writeFileSync(path.join(outDir, 'readme-cjs.cjs'), scratch(cjs));
