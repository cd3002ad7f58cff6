#!/usr/bin/env node
// Entry point of the `aiqso` command. The TypeScript sources run as a bundle
// built by esbuild at start (bin/bundle.js, about a second, in a worker thread
// that ends with the build); without esbuild they run through tsx's loader.
let entry;
try {
  const { bundleInWorker } = await import('./bundle.js');
  entry = await bundleInWorker('src/cli/main.ts');
  // For a command that runs the built CLI again in a worker thread (`aiqso edge`).
  globalThis[Symbol.for('aiqso.cliEntry')] = entry;
} catch (err) {
  if (err?.code !== 'ERR_MODULE_NOT_FOUND') throw err;
  const { register } = await import('tsx/esm/api');
  register();
  entry = '../src/cli/main.ts';
}
process.setSourceMapsEnabled(true);
await import(entry);
