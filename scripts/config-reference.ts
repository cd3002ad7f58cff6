import { writeFileSync } from 'node:fs';
import { renderConfigReference } from '../src/config/reference.ts';

/** Writes docs/configuration.md from the configuration schema (`npm run docs:config`). */
const target = new URL('../docs/configuration.md', import.meta.url);
writeFileSync(target, renderConfigReference());
console.log(`wrote ${target.pathname}`);
