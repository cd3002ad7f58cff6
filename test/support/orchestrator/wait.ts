import type pg from 'pg';

/** Poll until `check` holds; the deadline only guards against a hang. */
export async function waitFor(
  what: string,
  check: () => Promise<boolean>,
  deadlineMs = 60_000,
): Promise<void> {
  const end = Date.now() + deadlineMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`gave up waiting: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** No reconcile or delivery work left, no resync due, nothing mid-reconcile, every outbox item settled. */
export async function isIdle(pool: pg.Pool): Promise<boolean> {
  const { rows } = await pool.query<{ busy: number }>(`
    SELECT (SELECT count(*) FROM graphile_worker.jobs
             WHERE attempts < max_attempts
               AND (task_identifier IN ('reconcile', 'outbox') OR run_at <= now() OR locked_at IS NOT NULL))
         + (SELECT count(*) FROM resources WHERE phase IN ('pending', 'reconciling'))
         + (SELECT count(*) FROM outbox WHERE status = 'pending') AS busy`);
  return Number(rows[0]!.busy) === 0;
}

export const waitIdle = (pool: pg.Pool, deadlineMs?: number) =>
  waitFor('the orchestrator to go idle', () => isIdle(pool), deadlineMs);
