import type { Kysely } from 'kysely';
import type { EventType } from '../core/events.ts';
import { newId } from '../core/ids.ts';
import type { DB } from '../db/tables.ts';
import { recordDone } from '../orchestrator/outbox.ts';
import { fanOut } from './fan-out.ts';

export interface PlatformEvent {
  type: EventType;
  /** The tenant the event is about; its endpoints receive it, and its events keep their order. */
  tenantId: string | null;
  data: Record<string, unknown>;
}

/**
 * Record a platform event inside the transaction of the change it reports,
 * and fan it out there: one delivery to every endpoint, the operator's and
 * the tenant's own, whose patterns match, made once the transaction commits.
 * A keyed event is recorded in the outbox under its key, delivered (the
 * fan-out was made here), so that it happens once. Returns the event's id,
 * or undefined for a key already recorded.
 */
export async function emitEvent(
  trx: Kysely<DB>,
  event: PlatformEvent,
  options: EmitOptions = {},
): Promise<string | undefined> {
  const id = newId('webhookEvent');
  if (
    options.key !== undefined &&
    !(await recordDone(trx, { key: eventOutboxKey(options.key), kind: 'webhook', payload: { eventId: id } }))
  )
    return undefined;
  const row = await trx
    .insertInto('webhook_events')
    .values({
      id,
      type: event.type,
      tenant_id: event.tenantId,
      data: JSON.stringify(event.data),
      fanned_out_at: new Date(),
    })
    .returning(['id', 'seq', 'type', 'tenant_id'])
    .executeTakeFirstOrThrow();
  await fanOut(trx, row);
  return id;
}

export interface EmitOptions {
  /**
   * Makes the event happen once per key (a step that may run again after a
   * crash); without it every call is a new event, for callers whose change
   * itself happens once.
   */
  key?: string;
}

/** The outbox key of an event emitted with `key`. */
export function eventOutboxKey(key: string): string {
  return `webhook-event:${key}`;
}

/** A tenant event, its data naming the tenant (id, slug, status, plan) as it is now in `trx`. */
export async function emitTenantEvent(
  trx: Kysely<DB>,
  type: EventType,
  tenantId: string,
  extra: Record<string, unknown> = {},
  options: EmitOptions = {},
): Promise<string | undefined> {
  const t = await trx
    .selectFrom('tenants')
    .select(['id', 'slug', 'status', 'plan', 'status_reason'])
    .where('id', '=', tenantId)
    .executeTakeFirstOrThrow();
  return emitEvent(
    trx,
    {
      type,
      tenantId,
      data: {
        tenant: { id: t.id, slug: t.slug, status: t.status, plan: t.plan, reason: t.status_reason },
        ...extra,
      },
    },
    options,
  );
}

/** A service event, its data naming the tenant and the service (id, key, status, reason) as they are now in `trx`. */
export async function emitServiceEvent(
  trx: Kysely<DB>,
  type: EventType,
  tenantServiceId: string,
  extra: Record<string, unknown> = {},
  options: EmitOptions = {},
): Promise<string | undefined> {
  const s = await trx
    .selectFrom('tenant_services as ts')
    .innerJoin('services as s', 's.id', 'ts.service_id')
    .innerJoin('tenants as t', 't.id', 'ts.tenant_id')
    .select(['ts.id', 'ts.tenant_id', 'ts.status', 'ts.status_reason', 's.key', 't.slug'])
    .where('ts.id', '=', tenantServiceId)
    .executeTakeFirstOrThrow();
  return emitEvent(
    trx,
    {
      type,
      tenantId: s.tenant_id,
      data: {
        tenant: { id: s.tenant_id, slug: s.slug },
        service: { id: s.id, key: s.key, status: s.status, reason: s.status_reason },
        ...extra,
      },
    },
    options,
  );
}
