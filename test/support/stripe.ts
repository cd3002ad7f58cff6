import { signPayload, stripeEvent, stripeObject, localId } from '../../src/billing/stripe-objects.ts';

/** Stripe-format events as Stripe would send them, for tests (built on Stripe's published fixtures). */
export function checkoutCompleted(tenantId: string, subscription: string, customer = localId('cus')) {
  return stripeEvent(
    'checkout.session.completed',
    stripeObject('checkout.session', {
      id: localId('cs'),
      mode: 'subscription',
      status: 'complete',
      payment_status: 'paid',
      client_reference_id: tenantId,
      customer,
      subscription,
    }),
  );
}

export function subscriptionEvent(
  type: 'created' | 'updated' | 'deleted',
  fields: { id: string; customer: string; status: string; tenantId?: string },
  created?: number,
) {
  return stripeEvent(
    `customer.subscription.${type}`,
    stripeObject('subscription', {
      id: fields.id,
      customer: fields.customer,
      status: fields.status,
      metadata: fields.tenantId ? { tenant_id: fields.tenantId } : {},
    }),
    created,
  );
}

export function invoiceEvent(
  type: 'paid' | 'payment_failed',
  subscription: string,
  fields: { attempt_count?: number; next_payment_attempt?: number | null } = {},
) {
  return stripeEvent(
    `invoice.${type}`,
    stripeObject('invoice', {
      id: localId('in'),
      subscription,
      parent: { type: 'subscription_details', subscription_details: { subscription, metadata: {} } },
      attempt_count: 1,
      next_payment_attempt: null,
      ...fields,
    }),
  );
}

export function signed(event: object, secret: string, timestamp?: number) {
  const { payload, signature } = signPayload(JSON.stringify(event), secret, timestamp);
  return {
    method: 'POST' as const,
    url: '/webhooks/stripe',
    payload,
    headers: { 'content-type': 'application/json', 'stripe-signature': signature },
  };
}

/** The items in random order (Stripe delivers events in any order). */
export function shuffle<T>(items: T[]): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}
