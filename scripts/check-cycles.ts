// `npm run check:cycles`: fails when src/ has an import cycle between files or between packages,
// or an import across the layering (`layerViolations`).
import path from 'node:path';
import { fileCycles, importGraph, layerViolations, packageCycles, type Cycle } from './import-graph.ts';

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
const layers = layerViolations(graph);
for (const violation of layers) console.error(`layering in src/: ${violation}`);
if (found.length + layers.length > 0) process.exit(1);
console.log(`no import cycles among ${Object.keys(graph).length} files in src/`);
