import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newId } from '../src/core/ids.ts';
import {
  requestReconcile,
  requestReconcileAll,
  RESYNC_PRIORITY,
  reconcileJobKey,
} from '../src/orchestrator/queue.ts';
import { applyResource } from '../src/orchestrator/resources.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';

/**
 * A resync's reconciles and fresh work (issue of scale: a pass over a thousand
 * tenants queues a thousand jobs at once). No worker runs: the jobs are read
 * in the order graphile-worker takes them (priority, then run time).
 */
let testDb: TestDatabase;

beforeAll(async () => {
  testDb = await createTestDatabase();
});
afterAll(() => testDb?.drop());

interface Job {
  key: string;
  priority: number;
  run_at: Date;
  payload: { reason?: string; retry?: boolean };
}
const jobs = async () =>
  (
    await sql<Job>`SELECT key, priority, run_at, payload FROM graphile_worker._private_jobs
      WHERE key LIKE 'reconcile:%' ORDER BY priority, run_at, id`.execute(testDb.db)
  ).rows;
const clearJobs = () =>
  sql`SELECT graphile_worker.complete_jobs(array(SELECT id FROM graphile_worker.jobs))`.execute(testDb.db);

describe('resync and fresh work', () => {
  const ids = Array.from({ length: 30 }, () => newId('tenant'));
  const ref = (id: string) => ({ kind: 'site', id });

  it('queues each resource once, behind fresh work queued after it', async () => {
    for (const id of ids) await applyResource(testDb.db, { ...ref(id), spec: { n: 1 } });
    await clearJobs();
    expect(await requestReconcileAll(testDb.db, 'resync')).toBe(30);
    expect((await jobs()).every((j) => j.priority === RESYNC_PRIORITY)).toBe(true);

    // A new resource's first reconcile, then another's fresh work while its look-over still waits.
    const fresh = newId('tenant');
    await applyResource(testDb.db, { ...ref(fresh), spec: { n: 1 } });
    await requestReconcile(testDb.db, ref(ids[29]!), { reason: 'spec' });
    const order = await jobs();
    expect(order).toHaveLength(31);
    expect(order.slice(0, 2).map((j) => j.key)).toEqual(
      expect.arrayContaining([reconcileJobKey(ref(fresh)), reconcileJobKey(ref(ids[29]!))]),
    );
    expect(order.slice(0, 2).map((j) => j.priority)).toEqual([0, 0]);
    expect(order.slice(2).every((j) => j.priority === RESYNC_PRIORITY)).toBe(true);
  });

  it('leaves a job that waits already as it is: run time, priority and payload', async () => {
    await clearJobs();
    const later = new Date(Date.now() + 3_600_000);
    await requestReconcile(testDb.db, ref(ids[0]!), { runAt: later, reason: 'retry', retry: true });
    expect(await requestReconcileAll(testDb.db, 'resync')).toBe(30); // the 29 others and the fresh one
    const kept = (await jobs()).find((j) => j.key === reconcileJobKey(ref(ids[0]!)))!;
    expect(kept).toMatchObject({ priority: 0, payload: { reason: 'retry', retry: true } });
    expect(kept.run_at.getTime()).toBe(later.getTime());
    // A second pass while the first one's jobs still wait queues nothing more.
    expect(await requestReconcileAll(testDb.db, 'resync')).toBe(0);
    expect(await jobs()).toHaveLength(31);
  });
});
