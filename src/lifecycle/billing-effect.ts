import type { Transaction } from 'kysely';
import type { BillingAction } from '../billing/decide.ts';
import { routeStateFor } from '../core/tenants.ts';
import type { DB } from '../db/tables.ts';
import { requestReconcile } from '../orchestrator/queue.ts';
import { applyResourceIn } from '../orchestrator/resources.ts';
import { TENANT_KIND } from '../core/kinds.ts';

/**
 * A billing transition's effect on the orchestrator, in the billing event's
 * transaction: a paid checkout writes the tenant's spec (which queues its
 * reconcile); suspension, reactivation and cancellation re-reconcile it so the
 * edge and its containers follow the new status.
 */
export async function tenantBillingEffect(
  trx: Transaction<DB>,
  tenantId: string,
  action: BillingAction,
): Promise<void> {
  if (action.action === 'provision') {
    const t = await trx
      .selectFrom('tenants')
      .select(['slug', 'company'])
      .where('id', '=', tenantId)
      .executeTakeFirstOrThrow();
    await applyResourceIn(trx, {
      kind: TENANT_KIND,
      id: tenantId,
      tenantId,
      spec: { slug: t.slug, company: t.company },
    });
    return;
  }
  // The edge follows at once (the route change NOTIFYs every edge on commit); containers follow on reconcile.
  const status = await trx
    .selectFrom('tenants')
    .select('status')
    .where('id', '=', tenantId)
    .executeTakeFirstOrThrow();
  await trx
    .updateTable('routes')
    .set({ state: routeStateFor(status.status), updated_at: new Date() })
    .where('tenant_id', '=', tenantId)
    .where('upstream_host', 'is not', null)
    .execute();
  await requestReconcile(trx, { kind: TENANT_KIND, id: tenantId }, { reason: `billing: ${action.action}` });
}
