import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../src/observability/logger.ts';
import { listWork } from '../src/orchestrator/jobs.ts';
import { HEALTH_TASK, scheduleHealthRound } from '../src/health/monitor.ts';
import { reconcileJobKey, requestReconcile, scheduleResync } from '../src/orchestrator/queue.ts';
import type { TestDatabase } from './support/db.ts';
import { startOrchestratorFixture, type OrchestratorFixture } from './support/orchestrator/fixture.ts';
import { waitFor } from './support/orchestrator/wait.ts';

/**
 * A reconcile job superseded while it ran (graphile-worker clears its key and
 * uses up its attempts when the resource is queued again) and whose worker was
 * then killed stays in the queue for ever, listed as failed. The resync
 * deletes it, and nothing else: real failures, pending jobs and the newer job
 * for the same resource stay.
 */
let fixture: OrchestratorFixture;
let testDb: TestDatabase;

beforeAll(async () => {
  fixture = await startOrchestratorFixture(createLogger('silent'));
  ({ testDb } = fixture);
});

afterAll(() => fixture?.close());

// Jobs run in an hour, so the fixture's worker leaves them alone during the test.
const later = () => ({ runAt: new Date(Date.now() + 3_600_000) });

interface JobRow {
  id: string;
  task_identifier: string;
  key: string | null;
  attempts: number;
  max_attempts: number;
  last_error: string | null;
  locked_at: Date | null;
}

const job = async (id: string) =>
  (
    await sql<JobRow>`SELECT id, task_identifier, key, attempts, max_attempts, last_error, locked_at
                        FROM graphile_worker.jobs WHERE id = ${id}`.execute(testDb.db)
  ).rows[0];

const jobIdByKey = async (key: string) =>
  (await sql<{ id: string }>`SELECT id FROM graphile_worker.jobs WHERE key = ${key}`.execute(testDb.db))
    .rows[0]!.id;

describe('a superseded job whose worker was killed', () => {
  it('is deleted by the resync; failures, pending jobs and its successor stay', async () => {
    const superseded = { kind: 'site', id: 'superseded' };
    const failed = { kind: 'site', id: 'failed' };
    const pending = { kind: 'site', id: 'pending' };

    // A real failure, then queued again: graphile-worker clears its key too, but it keeps its error.
    await requestReconcile(testDb.db, failed, later());
    const failedId = await jobIdByKey(reconcileJobKey(failed));
    await sql`SELECT graphile_worker.permanently_fail_jobs(ARRAY[${failedId}::bigint], 'step route: boom')`.execute(
      testDb.db,
    );
    await requestReconcile(testDb.db, failed, later());

    await requestReconcile(testDb.db, pending, later());
    const pendingId = await jobIdByKey(reconcileJobKey(pending));

    // An unkeyed job killed on every attempt is a real failure too, though it has no error.
    const { rows: killed } = await sql<{ id: string }>`
      SELECT id FROM graphile_worker.add_job('schedule:health', '{}'::json, max_attempts => 1,
        run_at => now() + interval '1 hour')`.execute(testDb.db);
    const killedId = killed[0]!.id;
    await sql`UPDATE graphile_worker._private_jobs SET attempts = max_attempts WHERE id = ${killedId}`.execute(
      testDb.db,
    );

    // A worker process picks up the resource's job (as graphile-worker's get_job does), the
    // resource is queued again while it runs, and the process dies: its liveness lock is gone.
    // The same for a health round's job: it queues the next round under its key as it starts.
    let supersededId = '';
    let roundId = '';
    await testDb.db.transaction().execute(async (trx) => {
      await trx
        .insertInto('worker_processes')
        .values({ id: 'wkp_killed', lock_key: 1, hostname: 'gone', pid: 1, pool_ids: ['pool-killed'] })
        .execute();
      await requestReconcile(trx, superseded, later());
      const { rows } = await sql<{ id: string }>`
        UPDATE graphile_worker._private_jobs
           SET locked_at = now(), locked_by = 'pool-killed', attempts = attempts + 1
         WHERE key = ${reconcileJobKey(superseded)} RETURNING id`.execute(trx);
      supersededId = rows[0]!.id;
      await requestReconcile(trx, superseded, later());

      await scheduleHealthRound(trx, 3_600_000);
      const { rows: round } = await sql<{ id: string }>`
        UPDATE graphile_worker._private_jobs
           SET locked_at = now(), locked_by = 'pool-killed', attempts = attempts + 1
         WHERE key = ${HEALTH_TASK} RETURNING id`.execute(trx);
      roundId = round[0]!.id;
      await scheduleHealthRound(trx, 3_600_000);
    });
    const successorId = await jobIdByKey(reconcileJobKey(superseded));
    expect(successorId).not.toBe(supersededId);
    const nextRoundId = await jobIdByKey(HEALTH_TASK);
    expect(nextRoundId).not.toBe(roundId);

    // The dead-worker sweep releases it; now it is the leftover `aiqso jobs` listed as failed.
    await waitFor('the killed worker’s jobs to be released', async () => {
      const rows = [await job(supersededId), await job(roundId)];
      return rows.every((row) => row !== undefined && row.locked_at === null);
    });
    expect(await job(supersededId)).toMatchObject({
      key: null,
      attempts: 25,
      max_attempts: 25,
      last_error: null,
    });
    expect(await job(roundId)).toMatchObject({ key: null, attempts: 3, max_attempts: 3, last_error: null });
    const listed = (await listWork(testDb.db)).jobs;
    expect(listed).toContainEqual(
      expect.objectContaining({ id: supersededId, state: 'failed', lastError: null }),
    );
    expect(listed).toContainEqual(expect.objectContaining({ id: roundId, state: 'failed', lastError: null }));

    await scheduleResync(testDb.db, new Date());
    await waitFor(
      'the resync to delete the superseded jobs',
      async () => (await job(supersededId)) === undefined && (await job(roundId)) === undefined,
      20_000,
    );

    expect(await job(successorId)).toMatchObject({ key: reconcileJobKey(superseded), attempts: 0 });
    expect(await job(nextRoundId)).toMatchObject({ key: HEALTH_TASK, attempts: 0 });
    expect(await job(failedId)).toMatchObject({ key: null, last_error: 'step route: boom' });
    expect(await job(pendingId)).toMatchObject({ key: reconcileJobKey(pending), attempts: 0 });
    expect(await job(killedId)).toMatchObject({
      task_identifier: 'schedule:health',
      attempts: 1,
      last_error: null,
    });
    const failedJobs = (await listWork(testDb.db)).jobs.filter((j) => j.state === 'failed');
    expect(failedJobs.map((j) => j.id).sort()).toEqual([failedId, killedId].sort());
  });
});
