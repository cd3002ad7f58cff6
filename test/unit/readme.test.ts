import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

const root = new URL('../../', import.meta.url);
const readme = readFileSync(new URL('README.md', root), 'utf8');

describe('README', () => {
  it('shows the two commands, then the test command, first', () => {
    const install = readme.indexOf('npm install');
    const start = readme.indexOf('npm start');
    const test = readme.indexOf('npm test');
    expect(install).toBeGreaterThan(0);
    expect(start).toBeGreaterThan(install);
    expect(test).toBeGreaterThan(start);
    // The first code block is the one with the two commands.
    expect(readme.slice(0, install).match(/```/g)).toHaveLength(1);
  });

  it('links only to files that exist', () => {
    const links = [...readme.matchAll(/\]\(([^)#]+)(#[^)]*)?\)/g)].map((m) => m[1]!);
    expect(links.length).toBeGreaterThan(5);
    expect(links.filter((l) => !/^https?:/.test(l) && !existsSync(new URL(l, root)))).toEqual([]);
  });

  it('stays a short read (the manual lives in docs/)', () => {
    expect(readme.length).toBeLessThan(16_000);
  });
});
