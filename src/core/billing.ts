/**
 * The billing port: how the platform takes payment. `src/billing/stripe.ts`
 * talks to Stripe; `src/billing/local.ts` is local billing mode
 * (AIQSO_BILLING=local): a checkout page whose Pay button writes the same
 * Stripe-format events into the same inbox the webhook fills, so one code
 * path processes both.
 */

export interface CheckoutRequest {
  tenantId: string;
  customerEmail: string;
  plan: string;
  successUrl: string;
  cancelUrl: string;
}

export interface CheckoutSession {
  id: string;
  url: string;
}

/** The fields of a Stripe subscription the platform acts on. */
export interface SubscriptionState {
  id: string;
  customerId: string | null;
  status: string;
  priceId: string | null;
  cancelAtPeriodEnd: boolean;
  currentPeriodEnd: Date | null;
  tenantId: string | null;
}

/**
 * One hour of one metered amount for one customer, as a Stripe Billing meter
 * event. `identifier` is the same for every attempt at the same hour, so Stripe
 * counts it once however often it is sent.
 */
export interface MeterEvent {
  eventName: string;
  customerId: string;
  /** A whole number. */
  value: number;
  identifier: string;
  timestamp: Date;
}

export type PriceChange = 'requested' | 'already_requested';

/**
 * Where a customer manages payment methods and sees invoices: Stripe's
 * Customer Portal, or local billing mode's own page. `returnUrl` is where the
 * portal links back to (the workspace's Billing page).
 */
export interface PortalRequest {
  tenantId: string;
  customerId: string;
  returnUrl: string;
}

export interface PortalSession {
  /** The portal's address: a short-lived credential for this one customer. */
  url: string;
}

export interface BillingPort {
  readonly mode: 'stripe' | 'local';
  createCheckout(request: CheckoutRequest): Promise<CheckoutSession>;
  /** The subscription as it is now, for acting on the current object when an event is stale. */
  getSubscription(id: string): Promise<SubscriptionState | undefined>;
  cancelSubscription(id: string): Promise<void>;
  /**
   * Ask for the subscription's price to become `price` (a plan change). The
   * platform's plan changes only when the resulting
   * `customer.subscription.updated` event is processed. `already_requested`:
   * the subscription has that price now, so nothing was sent.
   */
  changePrice(subscriptionId: string, price: string, plan: string): Promise<PriceChange>;
  /** A portal session for the customer (Stripe: `POST /v1/billing_portal/sessions`). */
  openPortal(request: PortalRequest): Promise<PortalSession>;
  /** Report metered usage (Stripe: `POST /v1/billing/meter_events`; local mode sends nothing). */
  recordMeterEvent(event: MeterEvent): Promise<void>;
}

/** Stripe subscription statuses in which the customer keeps service. */
export const PAID_STATUSES = new Set(['active', 'trialing']);

/** Stripe subscription statuses that end service (after dunning, or cancelled). */
export const SUSPENDING_STATUSES = new Set(['unpaid', 'incomplete_expired', 'paused']);
