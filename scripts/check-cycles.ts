// `npm run check:cycles`: fails when src/ has an import cycle between files or between packages.
import path from 'node:path';
import { fileCycles, importGraph, packageCycles, type Cycle } from './import-graph.ts';

const repo = path.join(import.meta.dirname, '..');
const graph = await importGraph(path.join(repo, 'src'), path.join(repo, 'tsconfig.json'));
const found: [string, Cycle][] = [
  ...fileCycles(graph).map((c): [string, Cycle] => ['file', c]),
  ...packageCycles(graph).map((c): [string, Cycle] => ['package', c]),
];
for (const [what, cycle] of found) {
  console.error(`${what} cycle in src/: ${cycle.members.join(', ')}`);
  for (const edge of cycle.edges) console.error(`  ${edge.via}`);
}
if (found.length > 0) process.exit(1);
console.log(`no import cycles among ${Object.keys(graph).length} files in src/`);
