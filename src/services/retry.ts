import { sql, type Kysely } from 'kysely';
import type { Plan } from '../catalog/plans.ts';
import { conflict, notFound } from '../core/errors.ts';
import type { DB } from '../db/tables.ts';
import { TENANT_SERVICE_KIND } from '../core/kinds.ts';
import { requestReconcile } from '../orchestrator/queue.ts';
import { retryResource, retryResourceIn } from '../orchestrator/resources.ts';
import type { ResourceRef } from '../core/reconcile.ts';
import { checkPlanLimit } from './subscriptions.ts';

/**
 * Deploy a failed tenant service again (`POST …/services/{service}/retry`,
 * `aiqso services retry`): the service is `pending` again and the orchestrator
 * re-runs its steps from a clean failure count, as an operator's retry. Only a
 * failed service can be retried — one whose step failed for good, or whose
 * deployment the orchestrator gave up on — and only while the tenant is active
 * and its plan still has room for it (a failed service does not count against
 * the plan, so another may have taken its place). Returns the tenant service id.
 */
export async function retryService(
  db: Kysely<DB>,
  plans: Plan[],
  tenantId: string,
  key: string,
): Promise<string> {
  return db.transaction().execute(async (trx) => {
    const tenant = await trx
      .selectFrom('tenants')
      .select(['id', 'slug', 'status', 'plan'])
      .where('id', '=', tenantId)
      .forUpdate()
      .executeTakeFirstOrThrow();
    const row = await trx
      .selectFrom('tenant_services as ts')
      .innerJoin('services as s', 's.id', 'ts.service_id')
      .leftJoin('resources as r', (j) => j.onRef('r.id', '=', 'ts.id').on('r.kind', '=', TENANT_SERVICE_KIND))
      .select(['ts.id', 'ts.status', 'r.phase'])
      .where('ts.tenant_id', '=', tenantId)
      .where('s.key', '=', key)
      .forUpdate('ts')
      .executeTakeFirst();
    if (!row || row.status === 'removed') throw notFound(`service ${key} of this tenant`);
    const gaveUp = row.phase === 'failed' && (row.status === 'pending' || row.status === 'deploying');
    if (row.status !== 'failed' && !gaveUp) {
      throw conflict(`service ${key} is ${row.status}; only a failed service can be retried`);
    }
    if (tenant.status !== 'active') {
      throw conflict(`${tenant.slug} is ${tenant.status}; only an active tenant's services can be retried`);
    }
    await checkPlanLimit(trx, plans, tenant, row.id);
    await trx
      .updateTable('tenant_services')
      .set({ status: 'pending', status_reason: null, updated_at: sql`now()` })
      .where('id', '=', row.id)
      .execute();
    const ref = { kind: TENANT_SERVICE_KIND, id: row.id };
    if (!(await retryResourceIn(trx, ref)))
      await requestReconcile(trx, ref, { reason: 'retry', retry: true });
    return row.id;
  });
}

/**
 * An operator's retry of a resource the orchestrator gave up on (`aiqso jobs`
 * lists them): a tenant service is deployed again as `retryService` does it
 * (with its checks: an active tenant, room in the plan); any other resource is
 * reconciled again from a clean failure count. `404` for no such resource,
 * `409` for one that has not failed. Returns the resource's tenant (null for
 * the platform's own).
 */
export async function retryFailedResource(
  db: Kysely<DB>,
  plans: Plan[],
  ref: ResourceRef,
): Promise<{ tenantId: string | null }> {
  const row = await db
    .selectFrom('resources')
    .select(['kind', 'id', 'tenant_id', 'phase', 'deleted'])
    .where('kind', '=', ref.kind)
    .where('id', '=', ref.id)
    .executeTakeFirst();
  if (!row) throw notFound(`resource ${ref.kind}/${ref.id}`);
  if (row.phase !== 'failed') {
    throw conflict(`resource ${ref.kind}/${ref.id} is ${row.phase}; only a failed resource can be retried`);
  }
  if (row.kind === TENANT_SERVICE_KIND) {
    const service = await db
      .selectFrom('tenant_services as ts')
      .innerJoin('services as s', 's.id', 'ts.service_id')
      .select(['ts.tenant_id', 's.key'])
      .where('ts.id', '=', row.id)
      .executeTakeFirst();
    if (!service) throw notFound(`service of resource ${ref.kind}/${ref.id}`);
    await retryService(db, plans, service.tenant_id, service.key);
    return { tenantId: service.tenant_id };
  }
  // A concurrent retry may have taken it first: then this one has nothing left to do.
  if (!(await retryResource(db, ref))) {
    throw conflict(`resource ${ref.kind}/${ref.id} is no longer failed`);
  }
  return { tenantId: row.tenant_id };
}
