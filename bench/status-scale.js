#!/usr/bin/env node
/* node bench/status-scale.js [FILES] [HELD] [ROUNDS]: wall time of `lockspace status DIR` and
 * `status DIR --json` on a directory of FILES resource files, HELD of them locked by a python
 * process (default 5000, 2000, 3 rounds). Needs `npm run build:ts`. Prints the median and min per
 * variant; nothing is asserted (the machine is shared: compare runs made back to back). */
'use strict';
const { spawn, spawnSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

const [files = 5000, held = 2000, rounds = 3] = process.argv.slice(2).map(Number);
const CLI = path.join(__dirname, '../dist/lib/cli.js');
const HOLD_PY = `
import fcntl, os, sys
fds = []
for p in sys.argv[1:]:
    fd = os.open(p, os.O_RDWR)
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0)
    fds.append(fd)
print('locked', flush=True)
sys.stdin.readline()
`;

async function main() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lockspace-status-scale-'));
  const names = Array.from({ length: files }, (_, i) => `disk-${String(i).padStart(5, '0')}`);
  for (const n of names) fs.writeFileSync(path.join(dir, n), '');
  const args = ['-c', HOLD_PY, ...names.slice(0, held).map((n) => path.join(dir, n))];
  const holder = spawn(process.env.PYTHON || 'python3', args, { stdio: ['pipe', 'pipe', 'inherit'] });
  await new Promise((resolve, reject) => {
    holder.stdout.on('data', (d) => String(d).includes('locked') && resolve());
    holder.on('exit', (c) => reject(new Error(`holder exited ${c}`)));
  });
  try {
    for (const variant of [[], ['--json']]) {
      const times = [];
      let out = '';
      for (let i = 0; i < rounds; i++) {
        const t = process.hrtime.bigint();
        const r = spawnSync(process.execPath, [CLI, 'status', dir, ...variant], { encoding: 'utf8', maxBuffer: 1 << 30 });
        times.push(Number(process.hrtime.bigint() - t) / 1e6);
        if (r.status !== 0) throw new Error(`status failed: ${r.stderr}`);
        out = r.stdout;
      }
      const busy = variant.length ? JSON.parse(out).resources.filter((x) => x.state !== 'free').length : out.split('\n').filter((l) => / exclusive /.test(l)).length;
      times.sort((a, b) => a - b);
      console.log(`status ${variant.join(' ') || '(table)'}: ${files} files, ${held} held: median ${times[times.length >> 1].toFixed(0)} ms, min ${times[0].toFixed(0)} ms (${busy} shown held)`);
    }
  } finally {
    holder.stdin.end('\n');
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
main().catch((e) => {
  console.error(e);
  process.exit(1);
});
