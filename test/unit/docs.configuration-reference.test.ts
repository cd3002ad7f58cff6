import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CONFIG_REFERENCE, renderConfigReference, schemaDefault } from '../../src/config/reference.ts';
import { CONFIG_VARIABLES } from '../../src/config/schema.ts';

const written = readFileSync(new URL('../../docs/configuration.md', import.meta.url), 'utf8');

describe('the configuration reference in docs/', () => {
  it('is what the schema renders today (run `npm run docs:config` after changing a setting)', () => {
    expect(written).toBe(renderConfigReference());
  });

  it('has a row for every variable the schema accepts, with the default the schema applies', () => {
    for (const name of CONFIG_VARIABLES) {
      const row = written.split('\n').find((l) => l.startsWith(`| \`${name}\` |`));
      expect(row, name).toBeDefined();
      const fallback = schemaDefault(name);
      if (fallback !== undefined) expect(row, name).toContain(`| \`${fallback}\` |`);
      expect(CONFIG_REFERENCE[name].meaning.length, name).toBeGreaterThan(10);
    }
  });

  it('takes defaults from the schema, not from prose', () => {
    expect(schemaDefault('AIQSO_HTTP_PORT')).toBe('8080');
    expect(schemaDefault('AIQSO_TLS_MIN_VERSION')).toBe('TLSv1.3');
    expect(schemaDefault('DATABASE_URL')).toBeUndefined();
  });
});
