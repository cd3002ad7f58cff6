import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CONFIG_VARIABLES } from '../src/config/schema.ts';

const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');

describe('README', () => {
  it('documents every configuration variable the schema accepts', () => {
    const missing = CONFIG_VARIABLES.filter((name) => !readme.includes(`\`${name}\``));
    expect(missing).toEqual([]);
  });

  it('shows the two commands, then the test command, first', () => {
    const install = readme.indexOf('npm install');
    const start = readme.indexOf('npm start');
    const test = readme.indexOf('npm test');
    expect(install).toBeGreaterThan(0);
    expect(start).toBeGreaterThan(install);
    expect(test).toBeGreaterThan(start);
  });
});
