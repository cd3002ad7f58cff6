import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';
import { migrateJobQueue } from './job-queue-schema.ts';

const MIGRATIONS_DIR = fileURLToPath(new URL('./migrations/', import.meta.url));
// Any constant works; it only has to be the same for every process migrating this database.
const MIGRATION_LOCK = 7_344_211;

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export async function loadMigrations(dir = MIGRATIONS_DIR): Promise<Migration[]> {
  const files = (await readdir(dir)).filter((f) => /^\d{4}_[a-z0-9_]+\.sql$/.test(f)).sort();
  return Promise.all(
    files.map(async (file) => ({
      version: Number(file.slice(0, 4)),
      name: path.basename(file, '.sql'),
      sql: await readFile(path.join(dir, file), 'utf8'),
    })),
  );
}

/**
 * The numbered migrations not yet applied (all of them on a new database).
 * Reads only; the job queue's schema is not looked at.
 */
export async function pendingMigrations(pool: pg.Pool): Promise<string[]> {
  const migrations = await loadMigrations();
  const { rows: table } = await pool.query<{ exists: boolean }>(
    "SELECT to_regclass('schema_migrations') IS NOT NULL AS exists",
  );
  if (!table[0]!.exists) return migrations.map((m) => m.name);
  return (await notApplied(pool, migrations)).map((m) => m.name);
}

/** Those of `migrations` that schema_migrations (which must exist) does not record. */
async function notApplied(db: pg.Pool | pg.PoolClient, migrations: Migration[]): Promise<Migration[]> {
  const { rows } = await db.query<{ version: number }>('SELECT version FROM schema_migrations');
  const done = new Set(rows.map((r) => r.version));
  return migrations.filter((m) => !done.has(m.version));
}

/**
 * Apply pending numbered SQL migrations, each in its own transaction, under an
 * advisory lock so several processes starting at once migrate exactly once.
 * The job queue's schema (graphile-worker, which serialises its own installs)
 * is brought up to date afterwards. Returns the names applied.
 */
export async function migrate(pool: pg.Pool, onApply?: (name: string) => void): Promise<string[]> {
  const migrations = await loadMigrations();
  const client = await pool.connect();
  const applied: string[] = [];
  try {
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK]);
    await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
    for (const m of await notApplied(client, migrations)) {
      await client.query('BEGIN');
      try {
        await client.query(m.sql);
        await client.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [
          m.version,
          m.name,
        ]);
        await client.query('COMMIT');
      } catch (err) {
        await client.query('ROLLBACK');
        throw new Error(`migration ${m.name} failed: ${(err as Error).message}`, { cause: err });
      }
      applied.push(m.name);
      onApply?.(m.name);
    }
  } finally {
    await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK]).catch(() => undefined);
    client.release();
  }
  // After releasing our client: a pool of one connection must be enough.
  await migrateJobQueue(pool);
  return applied;
}
