#!/usr/bin/env node
// Entry point of the `aiqso` command: the CLI compiled to plain JavaScript in dist/ by `npm run build`,
// which `prepare` runs on `npm install`/`npm ci` in a checkout and before `npm pack` (the package
// carries dist/). Nothing is compiled or written inside the package at run time, so a global or
// read-only install runs as is.
import { existsSync } from 'node:fs';

const main = new URL('../dist/cli/main.js', import.meta.url);
if (!existsSync(main)) {
  process.stderr.write(
    `aiqso: ${main.pathname} is missing: run \`npm run build\` in ${new URL('..', import.meta.url).pathname}\n`,
  );
  process.exit(1);
}
process.setSourceMapsEnabled(true);
await import(main.href);
