'use strict';
// The code blocks of README.md as its tests read them (test/readme.test.ts, and readme-examples.js for
// the portability check): every ```js, ```mjs, ```cjs and ```ts block is a program that runs as
// pasted, unless the line before its fence is `<!-- fragment -->` (a piece of a program, shown for
// reading only). The lockspace directory of the examples is replaced by a scratch one.
const EXAMPLE_DIR = '/var/lib/myapp/locks';
const FRAGMENT = '<!-- fragment -->';

/** [{ lang, code, line, fragment }] for each block of `markdown`; `line` is its fence's, from 1. */
function readmeBlocks(markdown, lockDir) {
  return [...markdown.matchAll(/^```(js|mjs|cjs|ts)\n([\s\S]*?)^```$/gm)].map((m) => {
    const before = markdown.slice(0, m.index);
    return {
      lang: m[1],
      code: lockDir === undefined ? m[2] : m[2].replaceAll(EXAMPLE_DIR, lockDir),
      line: before.split('\n').length,
      fragment: before.trimEnd().endsWith(FRAGMENT),
    };
  });
}

module.exports = { readmeBlocks, EXAMPLE_DIR, FRAGMENT };
