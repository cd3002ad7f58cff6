import { randomBytes } from 'node:crypto';
import { inject } from 'vitest';
import { openDatabase, type DatabaseHandle } from '../../src/db/database.ts';
import { dropServiceDatabase, listServiceDatabases } from '../../src/services/databases.ts';
import { withDatabase } from './urls.ts';

export interface TestDatabase extends DatabaseHandle {
  name: string;
  /** Its connection URL (for a child `aiqso` given it as DATABASE_URL). */
  url: string;
  /** Drop the service databases and roles a platform on it made, close the pool, drop the database. */
  drop(): Promise<void>;
}

/** A fresh, migrated database cloned from the run's template. */
export async function createTestDatabase(options: { max?: number } = {}): Promise<TestDatabase> {
  const adminUrl = inject('pgAdminUrl');
  const name = `aiqso_t_${randomBytes(6).toString('hex')}`;
  const admin = openDatabase(adminUrl, { max: 1 });
  try {
    // Two files cloning at the same instant can collide on the template's lock; retry briefly.
    for (let attempt = 0; ; attempt++) {
      try {
        await admin.pool.query(`CREATE DATABASE ${name} TEMPLATE ${inject('pgTemplate')}`);
        break;
      } catch (err) {
        if (attempt >= 20 || (err as { code?: string }).code !== '55006') throw err;
        await new Promise((r) => setTimeout(r, 100 + Math.random() * 200));
      }
    }
  } finally {
    await admin.close();
  }
  const url = withDatabase(adminUrl, name);
  const handle = openDatabase(url, { max: options.max ?? 5 });
  return {
    ...handle,
    name,
    url,
    async drop() {
      // A platform running on this database made its tenants' service databases and roles on the same
      // (shared) server; they carry this database's name in their comment, so only this file's go.
      for (const service of await listServiceDatabases(handle.pool).catch(() => [])) {
        await dropServiceDatabase(handle.pool, { name: service, role: service }).catch(() => undefined);
      }
      await handle.close();
      const a = openDatabase(adminUrl, { max: 1 });
      await a.pool.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await a.close();
    },
  };
}

/** `SELECT count(*)` of a query, as a number. */
export async function countRows(db: DatabaseHandle, sql: string, params: unknown[] = []): Promise<number> {
  const { rows } = await db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM (${sql}) AS q`, params);
  return rows[0]!.n;
}
