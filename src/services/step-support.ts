import { emitServiceEvent } from '../events/emit.ts';
import { sql } from 'kysely';
import { isDomainError } from '../core/errors.ts';
import type { ReconcileStep } from '../core/reconcile.ts';
import { serviceUrl } from '../core/services.ts';
import type { Database } from '../db/database.ts';
import { routeStateFor } from '../core/tenants.ts';
import { writeOutbox } from '../orchestrator/outbox.ts';
import { tenantOwnerEmail } from '../db/owner.ts';
import type { Deployment } from './deploy-context.ts';
import type { TenantServiceSpec } from './subscriptions.ts';

/** What the tenant service reconciler's steps share beyond their own effect. */

/** A service's route is `provisioning` until it has answered its health check once. */
export function routeState(d: Deployment) {
  return d.status === 'active' ? routeStateFor(d.tenantStatus) : 'provisioning';
}

/** The outbox key of a subscription's ready email: one per subscription, however often it is reconciled. */
export function readyEmailKey(id: string, spec: TenantServiceSpec): string {
  return spec.subscribedAt ? `service-ready:${id}:${spec.subscribedAt}` : `service-ready:${id}`;
}

export async function sendReadyEmail(
  deps: { db: Database; publicUrl: string },
  d: Deployment,
): Promise<void> {
  const owner = await tenantOwnerEmail(deps.db, d.tenantId);
  const url = serviceUrl(deps.publicUrl, d.spec.slug, d.template.route.path);
  await writeOutbox(deps.db, {
    key: readyEmailKey(d.id, d.spec),
    kind: 'email',
    payload: {
      template: 'service-ready',
      tenantId: d.tenantId,
      to: owner,
      subject: `${d.template.name} is ready`,
      text: `${d.template.name} is ready at ${url}\n\nSign in with your workspace account.\n`,
    },
  });
}

/**
 * A step whose failure a retry cannot fix (a refused capacity, an image the
 * driver cannot run, a service that never became healthy) also marks the
 * tenant service `failed` with the reason, for the tenant to see.
 */
export function failing(
  db: Database,
  step: ReconcileStep<TenantServiceSpec>,
): ReconcileStep<TenantServiceSpec> {
  return {
    ...step,
    async apply(ctx, found) {
      try {
        return await step.apply(ctx, found);
      } catch (err) {
        if (isDomainError(err) && !err.retryable) {
          await db.transaction().execute(async (trx) => {
            const changed = await trx
              .updateTable('tenant_services')
              .set({
                status: 'failed',
                status_reason: `${step.name}: ${err.message}`,
                updated_at: sql`now()`,
              })
              .where('id', '=', ctx.resource.id)
              .where('status', 'not in', ['removing', 'removed', 'failed'])
              .executeTakeFirst();
            if (changed.numUpdatedRows > 0n) await emitServiceEvent(trx, 'service.failed', ctx.resource.id);
          });
        }
        throw err;
      }
    },
  };
}
