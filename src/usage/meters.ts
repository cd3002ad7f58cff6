import { sql } from 'kysely';
import type { Database } from '../db/database.ts';
import type { Logger } from '../observability/logger.ts';
import { writeOutbox } from '../orchestrator/outbox.ts';
import { addHours } from './metrics.ts';

/** The metered amounts a plan may price, each the `event_name` of a Stripe meter. */
export interface PlanMeters {
  key: string;
  meters?: { requests?: string; mails_sent?: string };
}

/** Payload of a `stripe` outbox item: one meter event, as `BillingPort.recordMeterEvent` takes it. */
export interface MeterEventPayload {
  type: 'meter_event';
  eventName: string;
  customerId: string;
  value: number;
  identifier: string;
  /** ISO time: the start of the hour the value is for. */
  timestamp: string;
}

/**
 * The hour whose counts are final after the pass at `boundary`: each pass
 * recomputes the two hours before it from the edges' reports, so the hour
 * that started two hours before the boundary will not change again.
 */
export const finalHour = (boundary: Date): Date => addHours(boundary, -2);

/**
 * Queue the meter events of one final hour: for each paying tenant (a Stripe
 * customer) on a plan with meters, the hour's total of each metered amount.
 * One outbox item per tenant, metric and hour, whose identifier Stripe also
 * sees, so a second pass or a retried delivery counts nothing twice. An hour
 * that was a gap or is zero sends nothing.
 */
export async function queueMeterEvents(
  deps: { db: Database; plans: readonly PlanMeters[]; log: Logger },
  hour: Date,
): Promise<number> {
  const metered = deps.plans.filter((p) => p.meters && Object.keys(p.meters).length > 0);
  if (metered.length === 0) return 0;
  const { rows } = await sql<{
    tenant_id: string;
    plan: string;
    customer: string;
    metric: string;
    value: number;
  }>`
    SELECT t.id AS tenant_id, t.plan, t.stripe_customer_id AS customer, m.metric, sum(m.value)::float8 AS value
    FROM usage_metrics m JOIN tenants t ON t.id = m.tenant_id
    WHERE m.period_start = ${hour} AND m.metric IN ('requests', 'mails_sent')
      AND t.stripe_customer_id IS NOT NULL
      AND t.plan IN (${sql.join(metered.map((p) => p.key))})
    GROUP BY t.id, t.plan, t.stripe_customer_id, m.metric
    HAVING sum(m.value) > 0
  `.execute(deps.db);
  let queued = 0;
  for (const r of rows) {
    const eventName = metered.find((p) => p.key === r.plan)?.meters?.[r.metric as 'requests' | 'mails_sent'];
    if (!eventName) continue;
    const identifier = `aiqso:${r.tenant_id}:${r.metric}:${hour.toISOString()}`;
    const payload: MeterEventPayload = {
      type: 'meter_event',
      eventName,
      customerId: r.customer,
      value: Math.round(r.value),
      identifier,
      timestamp: hour.toISOString(),
    };
    if (await writeOutbox(deps.db, { key: `meter:${identifier}`, kind: 'stripe', payload: { ...payload } }))
      queued++;
  }
  if (queued > 0) deps.log.info({ hour, queued }, 'usage: meter events queued');
  return queued;
}
