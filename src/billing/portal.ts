import type { Kysely } from 'kysely';
import type { BillingPort, PortalSession } from '../core/billing.ts';
import { conflict } from '../core/errors.ts';
import { tenantUrl } from '../core/services.ts';
import type { DB } from '../db/tables.ts';

/**
 * Payment methods and invoices (`POST /api/v1/tenants/{t}/billing/portal`):
 * a portal session for the tenant's billing customer, returning to the
 * workspace's Billing page. Stripe mode opens Stripe's Customer Portal; local
 * billing mode its own page (local-portal.ts). The customer is the one its
 * paid checkout made (`tenants.stripe_customer_id`, else its newest
 * subscription's); a tenant without one has nothing to show (409).
 */
export async function openCustomerPortal(
  deps: { db: Kysely<DB>; billing: BillingPort; publicUrl: string },
  tenantId: string,
): Promise<PortalSession> {
  const tenant = await deps.db
    .selectFrom('tenants')
    .select(['slug', 'stripe_customer_id'])
    .where('id', '=', tenantId)
    .executeTakeFirstOrThrow();
  const subscription = tenant.stripe_customer_id
    ? undefined
    : await deps.db
        .selectFrom('subscriptions')
        .select('stripe_customer_id')
        .where('tenant_id', '=', tenantId)
        .where('stripe_customer_id', 'is not', null)
        .orderBy('created_at', 'desc')
        .executeTakeFirst();
  const customerId = tenant.stripe_customer_id ?? subscription?.stripe_customer_id;
  if (!customerId) {
    throw conflict(
      `${tenant.slug} has no billing customer yet, so there are no payment methods or invoices to show; it gets one when its checkout is paid`,
    );
  }
  return deps.billing.openPortal({
    tenantId,
    customerId,
    returnUrl: `${tenantUrl(deps.publicUrl, tenant.slug)}/billing`,
  });
}
