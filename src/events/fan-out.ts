import type { Kysely } from 'kysely';
import { eventMatches } from '../core/events.ts';
import type { DB } from '../db/tables.ts';
import type { OutboxHandler } from '../orchestrator/outbox.ts';
import { queueLane } from './lanes.ts';

/**
 * An event's deliveries: one per endpoint whose patterns match it (the
 * operator's endpoints, and the event's tenant's own), each lane queued, in
 * `trx`; the caller marks the event fanned out in the same transaction, so
 * an event fans out once.
 */
export async function fanOut(
  trx: Kysely<DB>,
  event: { id: string; seq: string; type: string; tenant_id: string | null },
): Promise<void> {
  const tenantId = event.tenant_id;
  const endpoints = await trx
    .selectFrom('webhook_endpoints')
    .select(['id', 'events', 'tenant_id'])
    .where((eb) =>
      tenantId === null
        ? eb('tenant_id', 'is', null)
        : eb.or([eb('tenant_id', 'is', null), eb('tenant_id', '=', tenantId)]),
    )
    .execute();
  const lane = tenantId ?? '';
  for (const endpoint of endpoints) {
    if (!eventMatches(endpoint.events, event.type)) continue;
    await trx
      .insertInto('webhook_deliveries')
      .values({
        endpoint_id: endpoint.id,
        event_id: event.id,
        event_seq: event.seq,
        lane,
        tenant_id: endpoint.tenant_id,
      })
      .onConflict((oc) => oc.columns(['endpoint_id', 'event_id']).doNothing())
      .execute();
    await queueLane(trx, endpoint.id, lane);
  }
}

/**
 * The outbox handler of kind `webhook`, for events recorded before events
 * fanned out in their own transaction (emit.ts): fans out one that has not.
 */
export function fanOutHandler(): OutboxHandler {
  return async (item, trx) => {
    const event = await trx
      .selectFrom('webhook_events')
      .select(['id', 'seq', 'type', 'tenant_id', 'fanned_out_at'])
      .where('id', '=', String(item.payload.eventId))
      .forUpdate()
      .executeTakeFirst();
    if (!event || event.fanned_out_at !== null) return;
    await fanOut(trx, event);
    await trx
      .updateTable('webhook_events')
      .set({ fanned_out_at: new Date() })
      .where('id', '=', event.id)
      .execute();
  };
}
