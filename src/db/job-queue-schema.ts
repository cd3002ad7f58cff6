import { Logger, runMigrations } from 'graphile-worker';
import type pg from 'pg';

/** graphile-worker's schema name; the orchestrator's SQL refers to it. */
export const JOB_SCHEMA = 'graphile_worker';

const silent = new Logger(() => () => undefined);

/**
 * Install or upgrade graphile-worker's schema (`graphile_worker`) in the master
 * database. graphile-worker serialises concurrent installs itself, so several
 * processes starting at once are safe.
 */
export async function migrateJobQueue(pool: pg.Pool): Promise<void> {
  await runMigrations({ pgPool: pool, logger: silent, schema: JOB_SCHEMA });
}
