import type { BillingPort } from '../../src/core/billing.ts';
import { LocalBilling } from '../../src/billing/local.ts';
import { processBillingEvent } from '../../src/billing/process.ts';
import type { Plan } from '../../src/catalog/plans.ts';
import type { Database } from '../../src/db/database.ts';

/**
 * Billing for plan-change tests: a tenant signed up through local billing
 * mode's checkout (paid, its events processed), and processing whatever
 * billing events wait in the inbox, as a worker does.
 */
export async function processStripeEvents(db: Database, billing: BillingPort, plans: Plan[]) {
  const waiting = await db
    .selectFrom('inbox')
    .select('id')
    .where('source', '=', 'stripe')
    .where('processed_at', 'is', null)
    .orderBy('received_at')
    .execute();
  const results = [];
  for (const { id } of waiting) {
    results.push(await processBillingEvent({ db, billing, graceDays: 30, plans }, id));
  }
  return results;
}

/** A paid local subscription for `tenantId` on `plan`, its events processed: its id. */
export async function subscribeLocally(
  db: Database,
  plans: Plan[],
  tenant: { id: string; email: string },
  plan: string,
): Promise<string> {
  const local = new LocalBilling({ db, publicUrl: 'http://localhost:8080' });
  const session = await local.createCheckout({
    tenantId: tenant.id,
    customerEmail: tenant.email,
    plan,
    successUrl: 'http://localhost:8080/done',
    cancelUrl: 'http://localhost:8080/cancel',
  });
  await local.pay(session.id);
  await processStripeEvents(db, local, plans);
  const row = await db
    .selectFrom('subscriptions')
    .select('stripe_subscription_id')
    .where('tenant_id', '=', tenant.id)
    .executeTakeFirstOrThrow();
  return row.stripe_subscription_id!;
}
