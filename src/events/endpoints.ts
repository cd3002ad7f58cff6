import { randomBytes } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import { DomainError, notFound } from '../core/errors.ts';
import { eventPatternProblem } from '../core/events.ts';
import { newId } from '../core/ids.ts';
import type { DB } from '../db/tables.ts';
import { sealedContext } from '../identity/rotate-master-key.ts';
import type { SecretBox } from '../identity/secrets.ts';
import { queueLane } from './lanes.ts';
import { checkTarget, type Resolver, type TargetPolicy } from './targets.ts';

/** Whose endpoints a call acts on: the operator's (`null`) or one tenant's. */
export interface Owner {
  tenantId: string | null;
}

export interface EndpointView {
  id: string;
  tenant: string | null;
  url: string;
  events: string[];
  description: string | null;
  createdAt: string;
}

export interface NewEndpoint {
  url: string;
  events: string[];
  description?: string | null;
}

const MAX_ENDPOINTS = 20;

function checkEvents(events: string[]): string[] {
  const list = [...new Set(events.map((e) => e.trim()).filter(Boolean))];
  if (list.length === 0)
    throw new DomainError('validation_failed', 'events: name at least one event, family (tenant.*) or *', {
      details: { field: 'events' },
    });
  for (const e of list) {
    const problem = eventPatternProblem(e);
    if (problem)
      throw new DomainError('validation_failed', `events: ${problem}`, { details: { field: 'events' } });
  }
  return list;
}

/**
 * Register an endpoint. Its URL is checked against the target policy, and its
 * signing secret generated, sealed with the master key and returned: this is
 * the only time it is shown. `db` is a tenant's transaction for a tenant's
 * endpoint (row level security holds it to that tenant).
 */
export async function createEndpoint(
  db: Kysely<DB>,
  box: SecretBox,
  policy: TargetPolicy,
  owner: Owner,
  input: NewEndpoint,
  resolve?: Resolver,
): Promise<{ endpoint: EndpointView; secret: string }> {
  const events = checkEvents(input.events);
  const url = await checkTarget(input.url, policy, resolve);
  const description = input.description?.trim() || null;
  if (description && (description.length > 200 || /[\r\n]/.test(description)))
    throw new DomainError('validation_failed', 'description: one line of at most 200 characters', {
      details: { field: 'description' },
    });
  const count = await db
    .selectFrom('webhook_endpoints')
    .select(sql<string>`count(*)`.as('n'))
    .where((eb) =>
      owner.tenantId === null ? eb('tenant_id', 'is', null) : eb('tenant_id', '=', owner.tenantId),
    )
    .executeTakeFirstOrThrow();
  if (Number(count.n) >= MAX_ENDPOINTS)
    throw new DomainError('conflict', `at most ${MAX_ENDPOINTS} webhook endpoints; remove one first`);
  const id = newId('webhookEndpoint');
  const secret = `whsec_${randomBytes(32).toString('base64url')}`;
  const row = await db
    .insertInto('webhook_endpoints')
    .values({
      id,
      tenant_id: owner.tenantId,
      url: url.href,
      events,
      description,
      secret_enc: box.seal(secret, sealedContext('webhook_endpoints', id)),
    })
    .returningAll()
    .executeTakeFirstOrThrow();
  return { endpoint: view(row), secret };
}

function view(row: {
  id: string;
  tenant_id: string | null;
  url: string;
  events: string[];
  description: string | null;
  created_at: Date;
}): EndpointView {
  return {
    id: row.id,
    tenant: row.tenant_id,
    url: row.url,
    events: row.events,
    description: row.description,
    createdAt: row.created_at.toISOString(),
  };
}

/** Endpoints of `owner`, or of everyone (operator, every tenant) when `owner` is 'all'. */
export async function listEndpoints(db: Kysely<DB>, owner: Owner | 'all'): Promise<EndpointView[]> {
  let q = db.selectFrom('webhook_endpoints').selectAll();
  if (owner !== 'all') {
    const t = owner.tenantId;
    q = q.where((eb) => (t === null ? eb('tenant_id', 'is', null) : eb('tenant_id', '=', t)));
  }
  return (await q.orderBy('created_at').orderBy('id').execute()).map(view);
}

/** Remove an endpoint with its deliveries; not found when it is not `owner`'s ('all': anyone's). */
export async function removeEndpoint(db: Kysely<DB>, owner: Owner | 'all', id: string): Promise<void> {
  let q = db.deleteFrom('webhook_endpoints').where('id', '=', id);
  if (owner !== 'all') {
    const t = owner.tenantId;
    q = q.where((eb) => (t === null ? eb('tenant_id', 'is', null) : eb('tenant_id', '=', t)));
  }
  const res = await q.executeTakeFirst();
  if (res.numDeletedRows === 0n) throw notFound(`webhook endpoint ${id}`);
}

export interface DeliveryView {
  id: string;
  endpoint: string;
  event: string;
  type: string;
  tenant: string | null;
  status: string;
  attempts: number;
  lastStatus: number | null;
  lastError: string | null;
  nextAttemptAt: string | null;
  deliveredAt: string | null;
  createdAt: string;
  /** Each attempt, oldest first: the receiver's status, a short excerpt of its answer, the duration. */
  history: {
    at: string;
    status: number | null;
    excerpt: string | null;
    durationMs: number;
    error: string | null;
  }[];
}

/** Deliveries of an endpoint of `owner`, newest first. */
export async function listDeliveries(
  db: Kysely<DB>,
  owner: Owner | 'all',
  options: { endpoint?: string; limit?: number } = {},
): Promise<DeliveryView[]> {
  let q = db
    .selectFrom('webhook_deliveries as d')
    .innerJoin('webhook_events as e', 'e.id', 'd.event_id')
    .select([
      'd.id',
      'd.endpoint_id',
      'd.event_id',
      'e.type',
      'e.tenant_id as event_tenant',
      'd.status',
      'd.attempts',
      'd.last_status',
      'd.last_error',
      'd.next_attempt_at',
      'd.delivered_at',
      'd.created_at',
    ]);
  if (owner !== 'all') {
    const t = owner.tenantId;
    q = q.where((eb) => (t === null ? eb('d.tenant_id', 'is', null) : eb('d.tenant_id', '=', t)));
  }
  if (options.endpoint) q = q.where('d.endpoint_id', '=', options.endpoint);
  const rows = await q
    .orderBy('d.id', 'desc')
    .limit(Math.min(options.limit ?? 100, 1000))
    .execute();
  const attempts =
    rows.length === 0
      ? []
      : await db
          .selectFrom('webhook_attempts')
          .selectAll()
          .where(
            'delivery_id',
            'in',
            rows.map((r) => r.id),
          )
          .orderBy('id')
          .execute();
  return rows.map((r) => ({
    id: r.id,
    endpoint: r.endpoint_id,
    event: r.event_id,
    type: r.type,
    tenant: r.event_tenant,
    status: r.status,
    attempts: r.attempts,
    lastStatus: r.last_status,
    lastError: r.last_error,
    nextAttemptAt: r.status === 'pending' ? r.next_attempt_at.toISOString() : null,
    deliveredAt: r.delivered_at?.toISOString() ?? null,
    createdAt: r.created_at.toISOString(),
    history: attempts
      .filter((a) => a.delivery_id === r.id)
      .map((a) => ({
        at: a.attempted_at.toISOString(),
        status: a.status_code,
        excerpt: a.response_excerpt,
        durationMs: a.duration_ms,
        error: a.error,
      })),
  }));
}

/** The delivery `id` if it belongs to an endpoint of `owner`, for a redelivery. */
export async function findDelivery(
  db: Kysely<DB>,
  owner: Owner | 'all',
  id: string,
): Promise<{ id: string; endpoint: string } | undefined> {
  if (!/^\d{1,18}$/.test(id)) return undefined;
  let q = db.selectFrom('webhook_deliveries').select(['id', 'endpoint_id']).where('id', '=', id);
  if (owner !== 'all') {
    const t = owner.tenantId;
    q = q.where((eb) => (t === null ? eb('tenant_id', 'is', null) : eb('tenant_id', '=', t)));
  }
  const row = await q.executeTakeFirst();
  return row && { id: row.id, endpoint: row.endpoint_id };
}

/**
 * Deliver a delivery again now, whatever became of it: it becomes pending
 * with a fresh retry window and its lane is queued. `db` must be able to
 * queue jobs (the platform's own connection, not a tenant's transaction).
 */
export async function redeliver(db: Kysely<DB>, id: string): Promise<void> {
  await db.transaction().execute(async (trx) => {
    const row = await trx
      .updateTable('webhook_deliveries')
      .set({
        status: 'pending',
        attempts: 0,
        retry_from: new Date(),
        next_attempt_at: new Date(),
        delivered_at: null,
      })
      .where('id', '=', id)
      .returning(['endpoint_id', 'lane'])
      .executeTakeFirst();
    if (!row) throw notFound(`webhook delivery ${id}`);
    await queueLane(trx, row.endpoint_id, row.lane);
  });
}
