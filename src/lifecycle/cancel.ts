import { DomainError } from '../core/errors.ts';
import { canTransition } from '../core/tenants.ts';
import { applyTenantAction } from '../billing/process.ts';
import type { BillingAction } from '../billing/decide.ts';
import type { Database } from '../db/database.ts';
import type { TenantStatus } from '../core/tenants.ts';
import { tenantBillingEffect } from './billing-effect.ts';

/** Why a tenant an operator cancelled is cancelled (billing's own says "subscription cancelled"). */
export const OPERATOR_CANCELLATION = 'cancelled by an operator';

export interface CancelOutcome {
  id: string;
  slug: string;
  status: TenantStatus;
  cancelledAt: Date | null;
  purgeAfter: Date | null;
  /** False when the tenant was already cancelled: nothing changed, its purge date stands. */
  changed: boolean;
  /** Stripe subscriptions last seen live: still billing until cancelled in Stripe. */
  liveSubscriptions: string[];
}

/**
 * An operator's cancellation, exactly as a Stripe subscription deletion would
 * do it: the tenant becomes `cancelled` with a purge date `graceDays` away,
 * its routes are suspended at once (the edge hears on commit) and it is
 * reconciled again — the same two functions billing uses, in one transaction
 * holding the tenant's row lock. Stripe is not called: a subscription that is
 * still live there keeps billing until it is cancelled there too (a later
 * payment never revives a cancelled tenant; only a new checkout does).
 * Idempotent: cancelling a cancelled tenant changes nothing.
 */
export async function cancelTenant(
  db: Database,
  tenantId: string,
  /** `by`: who cancels, for the transition's audit row (default: an operator). */
  options: { graceDays: number; reason?: string; by?: { actorType: 'operator' | 'user'; actorId: string } },
): Promise<CancelOutcome> {
  return db.transaction().execute(async (trx) => {
    const before = await trx
      .selectFrom('tenants')
      .select(['slug', 'status'])
      .where('id', '=', tenantId)
      .forUpdate()
      .executeTakeFirst();
    if (!before) throw new DomainError('not_found', `no tenant ${tenantId}`);
    const changed = before.status !== 'cancelled';
    if (changed) {
      if (!canTransition(before.status, 'cancelled')) {
        throw new DomainError('conflict', `${before.slug} is ${before.status} and cannot be cancelled`, {
          details: { status: before.status },
        });
      }
      const action: BillingAction = { action: 'cancel', reason: options.reason ?? OPERATOR_CANCELLATION };
      await applyTenantAction(
        trx,
        tenantId,
        action,
        options.graceDays,
        {
          actorType: options.by?.actorType ?? 'operator',
          actorId: options.by?.actorId,
          from: before.status,
        },
        tenantBillingEffect,
      );
    }
    const after = await trx
      .selectFrom('tenants')
      .select(['slug', 'status', 'cancelled_at', 'purge_after'])
      .where('id', '=', tenantId)
      .executeTakeFirstOrThrow();
    const live = await trx
      .selectFrom('subscriptions')
      .select('stripe_subscription_id')
      .where('tenant_id', '=', tenantId)
      .where('status', 'not in', ['canceled', 'incomplete_expired'])
      .where('stripe_subscription_id', 'is not', null)
      .execute();
    return {
      id: tenantId,
      slug: after.slug,
      status: after.status,
      cancelledAt: after.cancelled_at,
      purgeAfter: after.purge_after,
      changed,
      liveSubscriptions: live.map((r) => r.stripe_subscription_id!),
    };
  });
}
