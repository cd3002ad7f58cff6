// `npm run bench [name…]`: runs every bench/*.bench.ts (or the named ones) one
// after another, each in its own process so one cannot warm up another.
// Benchmarks print their results as ratios against a baseline measured in the
// same run; see bench/README.md.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import path from 'node:path';

const dir = import.meta.dirname;
const wanted = process.argv.slice(2);
const files = readdirSync(dir)
  .filter((f) => f.endsWith('.bench.ts'))
  .filter((f) => wanted.length === 0 || wanted.some((w) => f.startsWith(w)))
  .sort();
if (files.length === 0) {
  console.error(wanted.length ? `no benchmark matches ${wanted.join(', ')}` : 'no benchmarks in bench/');
  process.exit(wanted.length ? 2 : 0);
}
// Benchmarks that start the `aiqso` command run it as it ships, from dist/: rebuilt first if src/ changed.
const build = spawnSync(process.execPath, [path.join(dir, '../scripts/build.mjs'), '--if-stale'], {
  stdio: 'inherit',
});
if (build.status !== 0) process.exit(1);
let failed = 0;
for (const file of files) {
  console.log(`\n=== ${file}`);
  const result = spawnSync(process.execPath, ['--import', 'tsx', path.join(dir, file)], { stdio: 'inherit' });
  if (result.status !== 0) failed++;
}
process.exit(failed ? 1 : 0);
