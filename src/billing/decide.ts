import { PAID_STATUSES, SUSPENDING_STATUSES } from '../core/billing.ts';
import { canTransition, PAYMENT_SUSPENSION, type TenantStatus } from '../core/tenants.ts';
import type { BillingEvent } from './events.ts';

export interface DunningPolicy {
  /** Suspend after this many failed attempts on one invoice, or when Stripe stops retrying. */
  suspendAfterAttempts: number;
}

export const DEFAULT_DUNNING: DunningPolicy = { suspendAfterAttempts: 3 };

export type BillingAction =
  | { action: 'provision' }
  | { action: 'suspend'; reason: string }
  | { action: 'reactivate' }
  | { action: 'cancel'; reason: string }
  | { action: 'none'; why: string };

export interface TenantBillingView {
  status: TenantStatus;
  statusReason: string | null;
}

const none = (why: string): BillingAction => ({ action: 'none', why });

function reactivate(tenant: TenantBillingView): BillingAction {
  if (tenant.status !== 'suspended') return none(`tenant is ${tenant.status}`);
  if (tenant.statusReason !== PAYMENT_SUSPENSION) return none('suspended by an operator, not for payment');
  return { action: 'reactivate' };
}

function suspend(tenant: TenantBillingView, why: string): BillingAction {
  if (!canTransition(tenant.status, 'suspended')) return none(`tenant is ${tenant.status}`);
  return { action: 'suspend', reason: why };
}

/**
 * What a billing event means for a tenant, decided without I/O. For
 * subscription events the caller passes the subscription as it is now (not
 * as the possibly stale event shows it), so any delivery order converges.
 */
export function decideBillingAction(
  event: BillingEvent,
  tenant: TenantBillingView,
  policy: DunningPolicy = DEFAULT_DUNNING,
): BillingAction {
  switch (event.kind) {
    case 'checkout_completed':
      if (!event.paid) return none('checkout not paid');
      return tenant.status === 'pending_payment' ||
        tenant.status === 'cancelled' ||
        tenant.status === 'failed'
        ? { action: 'provision' }
        : none(`tenant is already ${tenant.status}`);
    case 'subscription_changed': {
      const status = event.deleted ? 'canceled' : event.subscription.status;
      if (status === 'canceled') {
        return canTransition(tenant.status, 'cancelled')
          ? { action: 'cancel', reason: 'subscription cancelled' }
          : none(`tenant is ${tenant.status}`);
      }
      if (PAID_STATUSES.has(status)) return reactivate(tenant);
      if (SUSPENDING_STATUSES.has(status)) return suspend(tenant, PAYMENT_SUSPENSION);
      return none(`subscription is ${status}`);
    }
    case 'invoice_paid':
      return reactivate(tenant);
    case 'invoice_payment_failed':
      if (event.finalAttempt || event.attemptCount >= policy.suspendAfterAttempts) {
        return suspend(tenant, PAYMENT_SUSPENSION);
      }
      return none(`payment attempt ${event.attemptCount} failed; Stripe will retry`);
    case 'ignored':
      return none(`event type ${event.type} is not handled`);
  }
}
