import Stripe from 'stripe';
import type {
  BillingPort,
  CheckoutRequest,
  CheckoutSession,
  MeterEvent,
  PortalRequest,
  PortalSession,
  PriceChange,
  SubscriptionState,
} from '../core/billing.ts';
import { randomUUID } from 'node:crypto';
import { DomainError } from '../core/errors.ts';
import { subscriptionObject, toSubscriptionState } from './events.ts';

export interface StripeBillingOptions {
  secretKey: string;
  /** Stripe price id for a plan key. */
  priceFor(plan: string): string | undefined;
  /** Overrides for a Stripe-compatible endpoint (host, port, protocol). */
  endpoint?: { host: string; port: number; protocol: 'http' | 'https' };
}

/** The billing port on Stripe's API. Calls carry idempotency keys so a retried step creates nothing twice. */
export class StripeBilling implements BillingPort {
  readonly mode = 'stripe' as const;
  private readonly stripe: Stripe;

  constructor(private readonly options: StripeBillingOptions) {
    this.stripe = new Stripe(options.secretKey, {
      maxNetworkRetries: 2,
      timeout: 20_000,
      ...(options.endpoint ?? {}),
    });
  }

  async createCheckout(request: CheckoutRequest): Promise<CheckoutSession> {
    const price = this.options.priceFor(request.plan);
    if (!price)
      throw new DomainError('validation_failed', `plan: no Stripe price configured for "${request.plan}"`);
    try {
      const session = await this.stripe.checkout.sessions.create(
        {
          mode: 'subscription',
          client_reference_id: request.tenantId,
          customer_email: request.customerEmail,
          line_items: [{ price, quantity: 1 }],
          subscription_data: { metadata: { tenant_id: request.tenantId, plan: request.plan } },
          metadata: { tenant_id: request.tenantId },
          success_url: request.successUrl,
          cancel_url: request.cancelUrl,
        },
        { idempotencyKey: `checkout:${request.tenantId}:${request.plan}` },
      );
      if (!session.url) throw new Error('Stripe returned a checkout session without a URL');
      return { id: session.id, url: session.url };
    } catch (err) {
      throw this.failure('create a checkout session', err);
    }
  }

  async getSubscription(id: string): Promise<SubscriptionState | undefined> {
    try {
      const sub = await this.stripe.subscriptions.retrieve(id);
      return toSubscriptionState(subscriptionObject.parse(sub));
    } catch (err) {
      if ((err as { statusCode?: number }).statusCode === 404) return undefined;
      throw this.failure('read a subscription', err);
    }
  }

  async cancelSubscription(id: string): Promise<void> {
    try {
      await this.stripe.subscriptions.cancel(id, undefined, { idempotencyKey: `cancel:${id}` });
    } catch (err) {
      if ((err as { statusCode?: number }).statusCode === 404) return;
      throw this.failure('cancel a subscription', err);
    }
  }

  /**
   * A plan change: the subscription's item gets the plan's price
   * (`POST /v1/subscriptions/{id}` with `items[0][id]` and `items[0][price]`),
   * prorated as Stripe does by default. The subscription is read as it is now
   * first: when it has the price already, nothing is sent. The idempotency key
   * is this request's own, so the SDK's retries of the call after a network
   * failure change the price once; a second request finds the price set.
   */
  async changePrice(subscriptionId: string, price: string, plan: string): Promise<PriceChange> {
    let sub: Stripe.Subscription;
    try {
      sub = await this.stripe.subscriptions.retrieve(subscriptionId);
    } catch (err) {
      if ((err as { statusCode?: number }).statusCode === 404)
        throw new DomainError('conflict', `Stripe has no subscription ${subscriptionId}`);
      throw this.failure('read a subscription', err);
    }
    if (sub.status === 'canceled' || sub.status === 'incomplete_expired') {
      throw new DomainError(
        'conflict',
        `subscription ${subscriptionId} is ${sub.status}; its plan cannot change`,
      );
    }
    const item = sub.items.data[0];
    if (!item) throw new DomainError('conflict', `subscription ${subscriptionId} has no item to change`);
    if (item.price.id === price) return 'already_requested';
    try {
      await this.stripe.subscriptions.update(
        subscriptionId,
        { items: [{ id: item.id, price }], metadata: { plan } },
        { idempotencyKey: `plan:${subscriptionId}:${price}:${randomUUID()}` },
      );
      return 'requested';
    } catch (err) {
      throw this.failure('change the subscription price', err);
    }
  }

  /**
   * A Customer Portal session (`POST /v1/billing_portal/sessions` with the
   * customer and the page to return to), on the portal configuration set as
   * the default in Stripe's dashboard: what the customer may change there
   * (payment methods, invoices, billing details) is configured at Stripe.
   * Each call opens a new session; nothing changes until the customer acts
   * in it, so no idempotency key of our own is needed (the SDK adds one to
   * its own retries). A refusal (an unknown customer, no portal configuration
   * saved) is a dependency failure in Stripe's words.
   */
  async openPortal(request: PortalRequest): Promise<PortalSession> {
    try {
      const session = await this.stripe.billingPortal.sessions.create({
        customer: request.customerId,
        return_url: request.returnUrl,
      });
      return { url: session.url };
    } catch (err) {
      throw this.failure('open the customer portal', err);
    }
  }

  /**
   * A meter event, sent with its identifier as the idempotency key too: a
   * retry after a crash (sent, but not marked sent) gets Stripe's stored
   * answer instead of a second event.
   */
  async recordMeterEvent(event: MeterEvent): Promise<void> {
    try {
      await this.stripe.billing.meterEvents.create(
        {
          event_name: event.eventName,
          payload: { stripe_customer_id: event.customerId, value: String(event.value) },
          identifier: event.identifier,
          timestamp: Math.floor(event.timestamp.getTime() / 1000),
        },
        { idempotencyKey: `meter:${event.identifier}` },
      );
    } catch (err) {
      throw this.failure(`record the meter event ${event.identifier}`, err);
    }
  }

  private failure(what: string, err: unknown): DomainError {
    if (err instanceof DomainError) return err;
    return new DomainError('dependency_failed', `Stripe: could not ${what}: ${(err as Error).message}`, {
      cause: err,
    });
  }
}
