import type pg from 'pg';

/** Poll until `check` holds; the deadline only guards against a hang. */
export async function waitFor(
  what: string,
  check: () => Promise<boolean>,
  deadlineMs = 60_000,
  explain?: () => Promise<string>,
): Promise<void> {
  const end = Date.now() + deadlineMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`gave up waiting: ${what}${explain ? `\n${await explain()}` : ''}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const BUSY_SQL = `
  SELECT 'job ' || task_identifier || ' ' || coalesce(key, '-') || ' attempts=' || attempts || '/' || max_attempts
           || ' locked_by=' || coalesce(locked_by, '-') || ' run_at=' || run_at AS what
    FROM graphile_worker.jobs
   WHERE attempts < max_attempts
     AND (task_identifier IN ('reconcile', 'outbox') OR run_at <= now() OR locked_at IS NOT NULL)
  UNION ALL
  SELECT 'resource ' || kind || ':' || id || ' ' || phase || ' ' || coalesce(last_error, '') FROM resources
   WHERE phase IN ('pending', 'reconciling')
  UNION ALL
  SELECT 'outbox ' || key FROM outbox WHERE status = 'pending'`;

/** No reconcile or delivery work left, no resync due, nothing mid-reconcile, every outbox item settled. */
export async function isIdle(pool: pg.Pool): Promise<boolean> {
  const { rows } = await pool.query(`SELECT count(*)::int AS n FROM (${BUSY_SQL}) busy`);
  return (rows[0] as { n: number }).n === 0;
}

export async function busyWork(pool: pg.Pool): Promise<string> {
  const { rows } = await pool.query<{ what: string }>(`${BUSY_SQL} LIMIT 20`);
  const workers = await pool.query<{ pid: number; pool_ids: string[] }>(
    'SELECT pid, pool_ids FROM worker_processes',
  );
  return [...rows.map((r) => r.what), `workers: ${JSON.stringify(workers.rows)}`].join('\n');
}

export const waitIdle = (pool: pg.Pool, deadlineMs?: number) =>
  waitFor(
    'the orchestrator to go idle',
    () => isIdle(pool),
    deadlineMs,
    () => busyWork(pool),
  );
