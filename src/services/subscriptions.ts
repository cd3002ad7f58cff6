import { emitServiceEvent } from '../events/emit.ts';
import { sql, type Kysely } from 'kysely';
import { z } from 'zod';
import { serviceTemplateSchema, type ServiceTemplate } from '../catalog/schema.ts';
import type { Plan } from '../catalog/plans.ts';
import { whyNotRunnable, type PlatformProvides } from '../catalog/runnable.ts';
import { containerName, type DriverKind } from '../core/compute.ts';
import { badRequest, conflict, DomainError, notFound } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import { capacityRefusal, serviceUrl, type Claim, type HostPolicy } from '../core/services.ts';
import type { DB, StepStatus } from '../db/tables.ts';
import { deleteRoute } from '../edge/routes-store.ts';
import { TENANT_SERVICE_KIND } from '../core/kinds.ts';
import { applyResourceIn, deleteResource } from '../orchestrator/resources.ts';
import { serviceDatabaseName } from './databases.ts';
import { hostUsage, lockPlacementHost, wakeCapacityWaiters } from './hosts.ts';

/**
 * Subscriptions to catalog services: the one place that decides whether a
 * tenant may have a service (catalog, tenant status, plan, host capacity) and
 * writes the tenant service row and its resource spec in one transaction. The
 * tenant service reconciler (reconciler.ts) does the rest.
 */

export const tenantServiceSpecSchema = z.object({
  service: z.string(),
  slug: z.string(),
  resources: z.object({
    memory_mb: z.number(),
    request_memory_mb: z.number().optional(),
    cores: z.number(),
    disk_gb: z.number(),
  }),
  /** Set when unsubscribed: the container and database are destroyed after this instant. */
  removeAfter: z.string().nullable().default(null),
  /** When this subscription began: one brought back after unsubscribing is a new one, with its own ready email. */
  subscribedAt: z.string().nullable().default(null),
});
export type TenantServiceSpec = z.infer<typeof tenantServiceSpecSchema>;

export interface SubscriptionDeps {
  plans: Plan[];
  driver: DriverKind;
  /** What the platform provides besides compute (a Redis for services); default nothing. */
  provides?: PlatformProvides;
  dataDir: string;
  publicUrl: string;
  serviceGraceHours: number;
  /** What a host may promise (reserve, overcommit); unset: its whole memory. */
  policy?: HostPolicy;
}

export interface TenantServiceView {
  id: string;
  service: string;
  name: string;
  status: string;
  statusReason: string | null;
  url: string;
  resources: Claim;
  phase: string | null;
  lastError: string | null;
  steps: StepStatus[];
  createdAt: string;
  removedAt: string | null;
}

/** A catalog template as synchronised into the `services` table (active ones only). */
export async function findTemplate(
  db: Kysely<DB>,
  key: string,
): Promise<{ id: string; template: ServiceTemplate } | undefined> {
  const row = await db
    .selectFrom('services')
    .select(['id', 'template'])
    .where('key', '=', key)
    .where('active', '=', true)
    .executeTakeFirst();
  return row && { id: row.id, template: serviceTemplateSchema.parse(row.template) };
}

/** A tenant's services with their reconcile status (works under the tenant role: RLS applies). */
export async function listTenantServices(
  db: Kysely<DB>,
  tenantId: string,
  publicUrl: string,
  key?: string,
): Promise<TenantServiceView[]> {
  let query = db
    .selectFrom('tenant_services as ts')
    .innerJoin('services as s', 's.id', 'ts.service_id')
    .innerJoin('tenants as t', 't.id', 'ts.tenant_id')
    .leftJoin('resources as r', (j) => j.onRef('r.id', '=', 'ts.id').on('r.kind', '=', TENANT_SERVICE_KIND))
    .select([
      'ts.id',
      's.key',
      's.name',
      's.template',
      't.slug',
      'ts.status',
      'ts.status_reason',
      'ts.created_at',
      'ts.removed_at',
      'r.phase',
      'r.last_error',
      'r.steps',
      'r.spec',
    ])
    .where('ts.tenant_id', '=', tenantId)
    .orderBy('s.key');
  if (key) query = query.where('s.key', '=', key);
  const rows = await query.execute();
  return rows.map((r) => {
    const template = serviceTemplateSchema.parse(r.template);
    const spec = r.spec ? tenantServiceSpecSchema.safeParse(r.spec) : undefined;
    // A deployment the orchestrator gave up on after its retries is failed, whatever step it was in.
    const gaveUp = r.phase === 'failed' && (r.status === 'pending' || r.status === 'deploying');
    return {
      id: r.id,
      service: r.key,
      name: r.name,
      status: gaveUp ? 'failed' : r.status,
      statusReason: gaveUp ? r.last_error : r.status_reason,
      url: serviceUrl(publicUrl, r.slug, template.route.path),
      resources: spec?.success ? spec.data.resources : template.resources,
      phase: r.phase,
      lastError: r.last_error,
      steps: r.steps ?? [],
      createdAt: r.created_at.toISOString(),
      removedAt: r.removed_at?.toISOString() ?? null,
    };
  });
}

const LIVE = ['pending', 'deploying', 'active', 'stopped', 'failed'] as const;

/**
 * How many of a tenant's services count against its plan: those subscribed
 * and not failed. A failed service (its health check never passed, or the
 * orchestrator gave up on it) and a removed or removing one do not count, so
 * a tenant is never held at its limit by services that do not work; retrying
 * one checks the limit again (retry.ts).
 */
export async function servicesCountingAgainstPlan(
  trx: Kysely<DB>,
  tenantId: string,
  exceptId?: string,
): Promise<number> {
  const { n } = await trx
    .selectFrom('tenant_services as ts')
    .leftJoin('resources as r', (j) => j.onRef('r.id', '=', 'ts.id').on('r.kind', '=', TENANT_SERVICE_KIND))
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('ts.tenant_id', '=', tenantId)
    .where('ts.status', 'in', ['pending', 'deploying', 'active', 'stopped'])
    .where((eb) => eb.or([eb('r.phase', 'is', null), eb('r.phase', '!=', 'failed')]))
    .$if(exceptId !== undefined, (q) => q.where('ts.id', '!=', exceptId!))
    .executeTakeFirstOrThrow();
  return Number(n);
}

/** Refuse (409 naming the plan) when `tenant` already has as many working services as its plan allows. */
export async function checkPlanLimit(
  trx: Kysely<DB>,
  plans: Plan[],
  tenant: { id: string; slug: string; plan: string },
  exceptId?: string,
): Promise<void> {
  const plan = plans.find((p) => p.key === tenant.plan);
  if (!plan) return;
  const n = await servicesCountingAgainstPlan(trx, tenant.id, exceptId);
  if (n >= plan.services) {
    throw conflict(
      `the ${plan.name} plan allows ${plan.services} services and ${tenant.slug} already has ${n}; upgrade the plan or unsubscribe one`,
      { plan: plan.key, limit: plan.services },
    );
  }
}

/** Refuse (409, nothing written) when the placement host cannot hold `need`. */
async function checkCapacity(
  trx: Kysely<DB>,
  deps: SubscriptionDeps,
  need: Claim,
  service: string,
  exceptId?: string,
) {
  const host = await lockPlacementHost(trx, deps);
  const refusal = capacityRefusal(host, await hostUsage(trx, host.id, exceptId), need, service, deps.policy);
  if (refusal) throw conflict(refusal, { host: host.name });
}

/**
 * Subscribe a tenant to a catalog service. Idempotent: an existing live
 * subscription is returned as it is. An unsubscribed one (in its grace period
 * or removed) is brought back. Returns the tenant service id.
 */
export async function subscribe(
  db: Kysely<DB>,
  deps: SubscriptionDeps,
  tenantId: string,
  key: string,
): Promise<string> {
  return db.transaction().execute(async (trx) => {
    const found = await findTemplate(trx, key);
    if (!found) throw notFound(`service ${key} in the catalog`);
    // Checked before anything is written: a service this platform cannot run never takes a plan slot.
    const unrunnable = whyNotRunnable(found.template, deps.driver, deps.provides);
    if (unrunnable) throw conflict(unrunnable, { driver: deps.driver });
    const tenant = await trx
      .selectFrom('tenants')
      .select(['slug', 'status', 'plan'])
      .where('id', '=', tenantId)
      .forUpdate()
      .executeTakeFirstOrThrow();
    if (tenant.status !== 'active') {
      throw conflict(`${tenant.slug} is ${tenant.status}; only an active tenant can subscribe to services`);
    }
    const existing = await trx
      .selectFrom('tenant_services')
      .select(['id', 'status'])
      .where('tenant_id', '=', tenantId)
      .where('service_id', '=', found.id)
      .executeTakeFirst();
    if (existing && (LIVE as readonly string[]).includes(existing.status)) return existing.id;

    await checkPlanLimit(trx, deps.plans, { id: tenantId, ...tenant });
    const template = found.template;
    // A subscription brought back from its grace period must not count its own old claim.
    await checkCapacity(trx, deps, template.resources, key, existing?.id);

    const id = existing?.id ?? newId('tenantService');
    const dbName = template.database.postgres ? serviceDatabaseName(tenantId, key) : null;
    await trx
      .insertInto('tenant_services')
      .values({
        id,
        tenant_id: tenantId,
        service_id: found.id,
        status: 'pending',
        container_name: containerName(tenantId, key),
        db_name: dbName,
        db_role: dbName,
      })
      .onConflict((oc) =>
        oc.column('id').doUpdateSet({
          status: 'pending',
          status_reason: null,
          removed_at: null,
          updated_at: sql`now()`,
        }),
      )
      .execute();
    const spec: TenantServiceSpec = {
      service: key,
      slug: tenant.slug,
      resources: template.resources,
      removeAfter: null,
      subscribedAt: new Date().toISOString(),
    };
    await applyResourceIn(trx, { kind: TENANT_SERVICE_KIND, id, tenantId, spec });
    await emitServiceEvent(trx, 'service.subscribed', id);
    return id;
  });
}

async function liveSpec(trx: Kysely<DB>, tenantId: string, key: string) {
  const row = await trx
    .selectFrom('tenant_services as ts')
    .innerJoin('services as s', 's.id', 'ts.service_id')
    .innerJoin('resources as r', (j) => j.onRef('r.id', '=', 'ts.id').on('r.kind', '=', TENANT_SERVICE_KIND))
    .select(['ts.id', 'ts.status', 's.template', 'r.spec'])
    .where('ts.tenant_id', '=', tenantId)
    .where('s.key', '=', key)
    .forUpdate()
    .executeTakeFirst();
  if (!row || row.status === 'removed') throw notFound(`service ${key} of this tenant`);
  return {
    id: row.id,
    status: row.status,
    template: serviceTemplateSchema.parse(row.template),
    spec: tenantServiceSpecSchema.parse(row.spec),
  };
}

/**
 * Unsubscribe: the route goes at once (edges hear it on commit); the
 * reconciler stops the container and takes a final backup, and destroys the
 * container and database after the grace period. Idempotent.
 */
export async function unsubscribe(
  db: Kysely<DB>,
  deps: Pick<SubscriptionDeps, 'serviceGraceHours' | 'publicUrl'> & { baseDomain: string },
  tenantId: string,
  key: string,
): Promise<string> {
  return db.transaction().execute(async (trx) => {
    const current = await liveSpec(trx, tenantId, key);
    if (current.status === 'removing') return current.id;
    const removeAfter = new Date(Date.now() + deps.serviceGraceHours * 3_600_000);
    await deleteRoute(trx, `${current.spec.slug}.${deps.baseDomain}`, current.template.route.path);
    await trx
      .updateTable('tenant_services')
      .set({
        status: 'removing',
        status_reason: `unsubscribed; the container and its data are destroyed after ${removeAfter.toISOString()}`,
        updated_at: sql`now()`,
      })
      .where('id', '=', current.id)
      .execute();
    const spec: TenantServiceSpec = { ...current.spec, removeAfter: removeAfter.toISOString() };
    await applyResourceIn(trx, { kind: TENANT_SERVICE_KIND, id: current.id, tenantId, spec });
    await emitServiceEvent(trx, 'service.removed', current.id, { destroyAfter: removeAfter.toISOString() });
    return current.id;
  });
}

/** Change a tenant service's resources (an operator's decision); capacity is checked for the new claim. */
export async function setServiceResources(
  db: Kysely<DB>,
  deps: SubscriptionDeps,
  tenantId: string,
  key: string,
  change: Partial<Claim>,
): Promise<string> {
  const id = await db.transaction().execute(async (trx) => {
    const current = await liveSpec(trx, tenantId, key);
    if (current.status === 'removing') {
      throw new DomainError('conflict', `service ${key} is being removed; its resources cannot change`);
    }
    const resources = { ...current.spec.resources, ...change };
    if (resources.request_memory_mb !== undefined && resources.request_memory_mb > resources.memory_mb) {
      throw badRequest(
        `request_memory_mb: ${resources.request_memory_mb} MB is above the limit memory_mb of ${resources.memory_mb} MB`,
      );
    }
    const least = current.template.min_memory_mb;
    if (least !== undefined && resources.memory_mb < least) {
      throw badRequest(
        `${key} needs at least ${least} MB of memory; ${resources.memory_mb} MB is too little`,
      );
    }
    await checkCapacity(trx, deps, resources, key, current.id);
    const spec: TenantServiceSpec = { ...current.spec, resources };
    await applyResourceIn(trx, { kind: TENANT_SERVICE_KIND, id: current.id, tenantId, spec });
    return current.id;
  });
  // A lower request may leave room for what waits for it.
  await wakeCapacityWaiters(db);
  return id;
}

/**
 * Purge: start the removal of every service of a tenant that is not yet
 * removed (no grace period, no final backup: the tenant's own grace period is
 * over). Returns how many are still not removed.
 */
export async function removeTenantServices(db: Kysely<DB>, tenantId: string): Promise<number> {
  const rows = await db
    .selectFrom('tenant_services')
    .select('id')
    .where('tenant_id', '=', tenantId)
    .where('status', '!=', 'removed')
    .execute();
  for (const r of rows) await deleteResource(db, { kind: TENANT_SERVICE_KIND, id: r.id });
  return rows.length;
}
