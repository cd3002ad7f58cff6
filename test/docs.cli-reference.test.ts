import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { runCli } from './support/cli.ts';

const docs = readFileSync(new URL('../docs/cli.md', import.meta.url), 'utf8');

/** Command names in a `--help` text's "Commands:" section, `help` aside. */
function commandsIn(help: string): string[] {
  const section = help.split(/^Commands:$/m)[1] ?? '';
  return [...section.matchAll(/^ {2}([a-z][a-z-]*)/gm)].map((m) => m[1]!).filter((c) => c !== 'help');
}

describe('the command-line reference in docs/cli.md', () => {
  it('lists every command and subcommand `aiqso --help` offers', async () => {
    const top = await runCli(['--help'], {});
    expect(top.code, top.stderr).toBe(0);
    const names = commandsIn(top.stdout);
    expect(names).toContain('up');
    const missing: string[] = [];
    for (const name of names) {
      const help = await runCli([name, '--help'], {});
      const subs = commandsIn(help.stdout);
      for (const full of subs.length ? subs.map((s) => `${name} ${s}`) : [name])
        if (!docs.includes(`\`aiqso ${full}`)) missing.push(full);
    }
    expect(missing).toEqual([]);
  });
});
