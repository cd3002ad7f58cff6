import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import type { Config } from '../src/config/load.ts';
import { connectMasterDatabase } from '../src/db/connect.ts';
import { openDatabase } from '../src/db/database.ts';
import { ENUM_COLUMNS } from '../src/db/enum-columns.ts';
import { loadMigrations, migrate, pendingMigrations } from '../src/db/migrate.ts';
import { dumpSchema } from '../src/db/schema-dump.ts';
import { createLogger } from '../src/observability/logger.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import { withDatabase } from './support/urls.ts';

/** `CHECK ((col = ANY (ARRAY['a'::text, …])))` or `CHECK ((col = 'a'::text))`: the column and its values. */
function enumCheck(definition: string): { column: string; values: string[] } | undefined {
  const match =
    /^CHECK \(\((\w+) = ANY \(ARRAY\[(.*)\]\)\)\)$/.exec(definition) ??
    /^CHECK \(\((\w+) = ('(?:[^']|'')*'::text)\)\)$/.exec(definition);
  if (!match) return undefined;
  const values = [...match[2]!.matchAll(/'((?:[^']|'')*)'::text/g)].map((m) => m[1]!.replaceAll("''", "'"));
  return { column: match[1]!, values };
}

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

  it("holds the row types' fixed-set columns to the schema's CHECK constraints, both ways", async () => {
    const { rows } = await testDb.pool.query<{ table: string; definition: string }>(
      `SELECT c.conrelid::regclass::text AS table, pg_get_constraintdef(c.oid) AS definition
         FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
        WHERE c.contype = 'c' AND n.nspname = 'public'`,
    );
    const inSchema: Record<string, string[]> = {};
    for (const { table, definition } of rows) {
      const check = enumCheck(definition);
      if (check) inSchema[`${table}.${check.column}`] = check.values.sort();
    }
    // The parser reads the constraints it must: a known one, and one with a single value.
    expect(inSchema['tenants.status']).toContain('pending_payment');
    expect(inSchema['signing_keys.alg']).toEqual(['EdDSA']);
    const inTypes = Object.fromEntries(
      Object.entries(ENUM_COLUMNS).map(([column, values]) => [column, [...values].sort()]),
    );
    expect(inSchema).toEqual(inTypes);
  });

  it('records every migration once and re-running applies nothing', async () => {
    const all = await loadMigrations();
    const { rows } = await testDb.pool.query<{ name: string }>(
      'SELECT name FROM schema_migrations ORDER BY version',
    );
    expect(rows.map((r) => r.name)).toEqual(all.map((m) => m.name));
    expect(await migrate(testDb.pool)).toEqual([]);
  });

  it("lists pending migrations; a 'when-behind' connection migrates only a database that is behind", async () => {
    const all = (await loadMigrations()).map((m) => m.name);
    expect(await pendingMigrations(testDb.pool)).toEqual([]);
    const log = createLogger('silent');
    const connect = (url: string, migrate: boolean | 'when-behind') =>
      connectMasterDatabase({ databaseUrl: url } as Config, log, { migrate, poolSize: 1 });

    // A current database: no migration is attempted, so a migration lock held elsewhere does not
    // hold the connection up (a full migrate waits for it).
    const holder = await testDb.pool.connect();
    try {
      await holder.query('SELECT pg_advisory_lock(7344211)');
      const current = await connect(testDb.url, 'when-behind');
      await current.close();
      const full = connect(testDb.url, true);
      const waited = await Promise.race([
        full.then(() => false),
        new Promise((r) => setTimeout(r, 500, true)),
      ]);
      expect(waited).toBe(true);
      await holder.query('SELECT pg_advisory_unlock(7344211)');
      await (await full).close();
    } finally {
      holder.release();
    }

    // An empty database: everything is pending, and applied.
    const adminUrl = inject('pgAdminUrl');
    const name = `aiqso_t_empty_${process.pid}`;
    const admin = openDatabase(adminUrl, { max: 1 });
    await admin.pool.query(`CREATE DATABASE ${name}`);
    try {
      const url = withDatabase(adminUrl, name);
      const empty = openDatabase(url, { max: 1 });
      expect(await pendingMigrations(empty.pool)).toEqual(all);
      await empty.close();
      const migrated = await connect(url, 'when-behind');
      expect(await pendingMigrations(migrated.pool)).toEqual([]);
      const { rows } = await migrated.pool.query<{ t: string | null }>(
        "SELECT to_regclass('graphile_worker.jobs') AS t",
      );
      expect(rows[0]!.t).not.toBeNull();
      await migrated.close();
    } finally {
      await admin.pool.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await admin.close();
    }
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
