import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadMigrations, migrate } from '../src/db/migrate.ts';
import { dumpSchema } from '../src/db/schema-dump.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';

let testDb: TestDatabase;
beforeAll(async () => {
  testDb = await createTestDatabase();
});
afterAll(() => testDb.drop());

describe('database schema', () => {
  it('matches the committed dump (run `npm run schema:dump` after adding a migration)', async () => {
    const committed = await readFile(new URL('../src/db/schema.sql', import.meta.url), 'utf8');
    expect(await dumpSchema(testDb.url)).toBe(committed);
  });

  it('records every migration once and re-running applies nothing', async () => {
    const all = await loadMigrations();
    const { rows } = await testDb.pool.query<{ name: string }>(
      'SELECT name FROM schema_migrations ORDER BY version',
    );
    expect(rows.map((r) => r.name)).toEqual(all.map((m) => m.name));
    expect(await migrate(testDb.pool)).toEqual([]);
  });

  it('numbers migrations without gaps or duplicates', async () => {
    const versions = (await loadMigrations()).map((m) => m.version);
    expect(versions).toEqual(versions.map((_, i) => i + 1));
  });

  it('holds the seed tables and the platform tables', async () => {
    const { rows } = await testDb.pool.query<{ table_name: string }>(
      "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'",
    );
    const names = rows.map((r) => r.table_name);
    for (const table of [
      'tenants',
      'services',
      'subscriptions',
      'tenant_services',
      'usage_metrics',
      'backups',
      'audit_log',
      'users',
      'hosts',
      'ip_allocations',
      'routes',
      'outbox',
      'inbox',
      'emails',
      'resources',
    ]) {
      expect(names).toContain(table);
    }
  });

  it('refuses ids without their prefix', async () => {
    await expect(
      testDb.pool.query("INSERT INTO tenants (id, slug, company) VALUES ('usr_x', 'acme', 'Acme')"),
    ).rejects.toThrow(/tenants_id_check/);
  });
});
