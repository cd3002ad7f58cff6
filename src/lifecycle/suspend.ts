import { DomainError } from '../core/errors.ts';
import { canTransition, OPERATOR_SUSPENSION, type TenantStatus } from '../core/tenants.ts';
import { applyTenantAction } from '../billing/process.ts';
import type { BillingAction } from '../billing/decide.ts';
import type { Database } from '../db/database.ts';
import { tenantBillingEffect } from './billing-effect.ts';

export interface StatusChange {
  id: string;
  slug: string;
  status: TenantStatus;
  statusReason: string | null;
  /** False when the tenant already had the status asked for. */
  changed: boolean;
}

/**
 * An operator suspends or reactivates a tenant: the same transition and
 * effect billing applies (the tenant row and its audit row, its routes at
 * once, a reconcile), in one transaction holding the tenant's row lock.
 * Idempotent: suspending a suspended tenant changes nothing. Reactivation
 * lifts any suspension, also one for payment.
 */
export async function setTenantSuspended(
  db: Database,
  tenantId: string,
  suspend: boolean,
  options: { graceDays: number; actorId?: string | null },
): Promise<StatusChange> {
  return db.transaction().execute(async (trx) => {
    const before = await trx
      .selectFrom('tenants')
      .select(['slug', 'status'])
      .where('id', '=', tenantId)
      .forUpdate()
      .executeTakeFirst();
    if (!before) throw new DomainError('not_found', `no tenant ${tenantId}`);
    const target: TenantStatus = suspend ? 'suspended' : 'active';
    const changed = before.status !== target;
    if (changed) {
      // Reactivation brings back a suspended tenant only, never one still provisioning or cancelled.
      if (!canTransition(before.status, target) || (!suspend && before.status !== 'suspended')) {
        throw new DomainError(
          'conflict',
          `${before.slug} is ${before.status} and cannot be ${suspend ? 'suspended' : 'reactivated'}`,
          { details: { status: before.status } },
        );
      }
      const action: BillingAction = suspend
        ? { action: 'suspend', reason: OPERATOR_SUSPENSION }
        : { action: 'reactivate' };
      await applyTenantAction(
        trx,
        tenantId,
        action,
        options.graceDays,
        {
          actorType: 'operator',
          actorId: options.actorId ?? null,
          from: before.status,
        },
        tenantBillingEffect,
      );
    }
    const after = await trx
      .selectFrom('tenants')
      .select(['slug', 'status', 'status_reason'])
      .where('id', '=', tenantId)
      .executeTakeFirstOrThrow();
    return {
      id: tenantId,
      slug: after.slug,
      status: after.status,
      statusReason: after.status_reason,
      changed,
    };
  });
}
