import type pg from 'pg';

/** graphile-worker's schema name; the orchestrator's SQL refers to it. */
export const JOB_SCHEMA = 'graphile_worker';

/**
 * Install or upgrade graphile-worker's schema (`graphile_worker`) in the master
 * database. graphile-worker serialises concurrent installs itself, so several
 * processes starting at once are safe. graphile-worker (with its configuration
 * loaders) is imported only here and in the orchestrator, so a process that
 * never migrates or runs jobs never loads it.
 */
export async function migrateJobQueue(pool: pg.Pool): Promise<void> {
  const { Logger, runMigrations } = await import('graphile-worker');
  const silent = new Logger(() => () => undefined);
  await runMigrations({ pgPool: pool, logger: silent, schema: JOB_SCHEMA });
}
