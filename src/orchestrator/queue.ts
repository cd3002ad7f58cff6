import { sql, type Kysely } from 'kysely';
import type pg from 'pg';
import type { ResourceRef } from '../core/reconcile.ts';
import type { DB } from '../db/tables.ts';
import type { Logger } from '../observability/logger.ts';

/**
 * Task identifiers on graphile-worker. Later issues register schedule handlers
 * under `schedule:<name>` (see schedules.ts).
 */
export const TASKS = {
  reconcile: 'reconcile',
  resync: 'resync',
  outbox: 'outbox',
  inbox: 'inbox',
} as const;

/** The schedules' cron jobs are `schedule:<name>` (schedules.ts); they are the only jobs queued without a key. */
export const SCHEDULE_TASK_PREFIX = 'schedule:';

/** graphile-worker's own retries of a reconcile job; step failures use the orchestrator's policy instead. */
const RECONCILE_MAX_ATTEMPTS = 25;

/**
 * One job key per resource: triggers for a resource whose job is still queued
 * coalesce into that job; a trigger while it runs queues exactly one more run
 * (graphile-worker detaches the running job from the key).
 */
export function reconcileJobKey(ref: ResourceRef): string {
  return `reconcile:${ref.kind}:${ref.id}`;
}

export interface ReconcilePayload extends ResourceRef {
  reason?: string;
  /** Run even though the resource is `failed` (an operator's retry). */
  retry?: boolean;
}

/**
 * Ask for a resource to be reconciled. Pass the caller's transaction so the
 * trigger commits with the spec change that caused it.
 */
export async function requestReconcile(
  db: Kysely<DB>,
  ref: ResourceRef,
  options: { runAt?: Date; reason?: string; retry?: boolean; priority?: number } = {},
): Promise<void> {
  const payload: ReconcilePayload = { kind: ref.kind, id: ref.id, reason: options.reason };
  if (options.retry) payload.retry = true;
  await sql`SELECT graphile_worker.add_job(
      ${TASKS.reconcile}, ${JSON.stringify(payload)}::json,
      run_at => ${options.runAt ?? null}::timestamptz,
      priority => ${options.priority ?? 0}::int,
      max_attempts => ${RECONCILE_MAX_ATTEMPTS},
      job_key => ${reconcileJobKey(ref)},
      job_key_mode => 'replace')`.execute(db);
}

/** How far ahead a job may fall due and still get a wake-up call (below); later ones wait for the poll. */
const WAKE_HORIZON_MS = 60_000;

/**
 * Wake the workers when a job queued for later falls due. graphile-worker
 * hears of a job queued due now at once (its `jobs:insert` notification) but
 * of one queued for later only at its next poll, every second here: a step
 * that looks again in 150 ms would wait up to a second more. A timer in this
 * process sends the same notification when the job is due, and an idle worker
 * in any process fetches it. Call it after the job's transaction committed.
 * Nothing depends on it: should this process die first, the poll finds the job.
 */
export function wakeWorkersAt(pool: pg.Pool, runAt: Date): void {
  const ms = runAt.getTime() - Date.now();
  if (ms > WAKE_HORIZON_MS) return;
  // A few milliseconds late, so the database's clock too says the job is due.
  const timer = setTimeout(
    () => void pool.query(`SELECT pg_notify('jobs:insert', '{"count":1}')`).catch(() => undefined),
    Math.max(0, ms) + 5,
  );
  timer.unref();
}

/**
 * How the next look of work under way ranks: a reconcile that said "not yet"
 * (a dashboard booting) or found its resource busy goes before fresh work
 * once it is due. Fifty signups at once then finish one after another as
 * their dashboards answer, instead of each look queueing behind every signup
 * that arrived after it, and all fifty finishing together at the end.
 */
export const UNDER_WAY_PRIORITY = -10;

/**
 * How a resync's reconciles rank against other work: graphile-worker takes
 * jobs by priority (lowest first), then run time. Fresh work (a signup, a
 * subscription, a retry) is queued at 0 and so runs before a thousand
 * look-overs queued ahead of it; queueing fresh work for a resource whose
 * look-over still waits raises that job to 0 (the key's job is replaced).
 */
export const RESYNC_PRIORITY = 10;

/**
 * Queue a reconcile of every live resource (not finished deleting, not failed)
 * in one statement, at `RESYNC_PRIORITY`. A resource that has a job already —
 * waiting for its retry or its next look, or running — keeps it as it is (its
 * run time, priority and payload). Returns how many were queued.
 */
export async function requestReconcileAll(db: Kysely<DB>, reason: string): Promise<number> {
  const { rows } = await sql<{ n: number }>`
    WITH queued AS (
      SELECT graphile_worker.add_jobs(array_agg(ROW(
        ${TASKS.reconcile},
        json_build_object('kind', kind, 'id', id, 'reason', ${reason}::text),
        NULL, NULL, ${RECONCILE_MAX_ATTEMPTS},
        'reconcile:' || kind || ':' || id, ${RESYNC_PRIORITY}, NULL)::graphile_worker.job_spec), true) AS job
      FROM resources r
      WHERE phase NOT IN ('deleted', 'failed')
        AND NOT EXISTS (SELECT 1 FROM graphile_worker.jobs j WHERE j.key = 'reconcile:' || r.kind || ':' || r.id)
      HAVING count(*) > 0
    )
    SELECT count(*)::int AS n FROM queued`.execute(db);
  return rows[0]?.n ?? 0;
}

/** Queue the next resync; with `preserve`, an already queued one keeps its time (start-up). */
export async function scheduleResync(db: Kysely<DB>, runAt: Date, preserve = false): Promise<void> {
  await sql`SELECT graphile_worker.add_job(${TASKS.resync}, '{}'::json,
      run_at => ${runAt}::timestamptz, max_attempts => 5, job_key => ${TASKS.resync},
      job_key_mode => ${preserve ? 'preserve_run_at' : 'replace'})`.execute(db);
}

/**
 * Delete the jobs graphile-worker superseded whose run was cut short. Queueing
 * under the key of a running job clears that job's key and sets its attempts
 * to the maximum, so it ends on its own: deleted once it completes, or given
 * a last_error if it fails. A worker killed meanwhile leaves it behind for
 * ever (no key, out of attempts, no error, never runnable), and `aiqso jobs`
 * would list it as failed although a newer job took its place.
 *
 * Every job the platform queues itself carries a key (reconciles, resyncs,
 * outbox and inbox, webhook lanes, health rounds and repairs: one key per
 * thing to do, `test/unit/queue.keyed-jobs.test.ts` holds every `add_job` in
 * src to it), so for them a missing key means superseded. Only the schedules'
 * cron jobs (`schedule:<name>`) come unkeyed: one of those in that state was
 * killed on every attempt, which an operator should see. Locked jobs are left
 * to `sweepDeadWorkers`, which releases those of dead workers first.
 * `complete_jobs` is graphile-worker's way to delete jobs; it skips locked ones.
 * Logs and returns the number deleted.
 */
export async function removeSupersededJobs(db: Kysely<DB>, log: Logger): Promise<number> {
  const { rows } = await sql<{ n: number }>`
    SELECT count(*)::int AS n FROM graphile_worker.complete_jobs(array(
      SELECT id FROM graphile_worker.jobs
       WHERE key IS NULL AND attempts >= max_attempts AND last_error IS NULL
         AND locked_at IS NULL AND task_identifier NOT LIKE ${`${SCHEDULE_TASK_PREFIX}%`}))`.execute(db);
  const superseded = rows[0]?.n ?? 0;
  if (superseded > 0) log.info({ superseded }, 'removed superseded jobs that killed workers left');
  return superseded;
}
