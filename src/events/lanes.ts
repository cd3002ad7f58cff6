import { sql, type Kysely } from 'kysely';
import type { DB } from '../db/tables.ts';

/** The worker task that delivers one endpoint's events of one lane (a tenant), in order. */
export const LANE_TASK = 'webhook-lane';

export interface LanePayload {
  endpoint: string;
  lane: string;
}

/**
 * Queue a run of an endpoint's lane, now or at `runAt`. One job per (endpoint,
 * lane), replaced by a later request; every lane of an endpoint runs in the
 * endpoint's own graphile-worker queue, so an endpoint has one delivery in
 * flight at a time and a slow receiver holds one delivery slot at most, for at
 * most the delivery timeout. The lane task runs in the worker's webhook pool
 * (platform/webhooks.ts), never in the slots of the platform's own jobs.
 */
export async function queueLane(
  db: Kysely<DB>,
  endpointId: string,
  lane: string,
  runAt?: Date,
): Promise<void> {
  const payload: LanePayload = { endpoint: endpointId, lane };
  await sql`SELECT graphile_worker.add_job(${LANE_TASK}, ${JSON.stringify(payload)}::json,
      queue_name => ${`webhook:${endpointId}`}, run_at => ${runAt ?? null}::timestamptz,
      max_attempts => 25, job_key => ${`webhook-lane:${endpointId}:${lane}`}, job_key_mode => 'replace')`.execute(
    db,
  );
}

/** Queue every lane that has a pending delivery (at worker start: nothing is left waiting for a job that is gone). */
export async function requeueLanes(db: Kysely<DB>): Promise<number> {
  const lanes = await db
    .selectFrom('webhook_deliveries')
    .select(['endpoint_id', 'lane', sql<Date>`min(next_attempt_at)`.as('at')])
    .where('status', '=', 'pending')
    .groupBy(['endpoint_id', 'lane'])
    .execute();
  for (const l of lanes) await queueLane(db, l.endpoint_id, l.lane, l.at);
  return lanes.length;
}
