#!/usr/bin/env node
// Entry point of the `aiqso` command. The TypeScript sources run as a bundle
// built by esbuild at start (bin/bundle.js, about a second); without esbuild
// they run through tsx's loader.
let entry;
try {
  const { bundle } = await import('./bundle.js');
  entry = await bundle('src/cli/main.ts');
} catch (err) {
  if (err?.code !== 'ERR_MODULE_NOT_FOUND') throw err;
  const { register } = await import('tsx/esm/api');
  register();
  entry = '../src/cli/main.ts';
}
process.setSourceMapsEnabled(true);
await import(entry);
