import { sql, type Kysely } from 'kysely';
import type { Plan } from '../catalog/plans.ts';
import { conflict, notFound } from '../core/errors.ts';
import type { DB } from '../db/tables.ts';
import { TENANT_SERVICE_KIND } from '../core/kinds.ts';
import { requestReconcile } from '../orchestrator/queue.ts';
import { retryResourceIn } from '../orchestrator/resources.ts';
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
