#!/usr/bin/env node
// Entry point of the `aiqso` command. The TypeScript sources run as a bundle
// built by esbuild at start (bin/bundle.js, about a second, in a worker thread
// that ends with the build); without esbuild they run through tsx's loader.

// First: before anything in this thread can let the classes of tick objects be collected.
import './tick-shape.js';

let entry;
let built = false;
try {
  const { bundleInWorker } = await import('./bundle.js');
  entry = await bundleInWorker('src/cli/main.ts');
  built = true;
} catch (err) {
  if (err?.code !== 'ERR_MODULE_NOT_FOUND') throw err;
  const { register } = await import('tsx/esm/api');
  register();
  entry = '../src/cli/main.ts';
}
process.setSourceMapsEnabled(true);
// `aiqso edge` serves from a worker thread running the built CLI (bin/edge-supervisor.js); under
// tsx's loader, or with any option (`--help`), the CLI runs here as for every other command.
if (built && process.argv[2] === 'edge' && process.argv.length === 3) {
  const { superviseEdge } = await import('./edge-supervisor.js');
  await superviseEdge(entry);
} else {
  await import(entry);
}
