import { sql } from 'kysely';
import type { BillingPort, CheckoutRequest, CheckoutSession, SubscriptionState } from '../core/billing.ts';
import { DomainError } from '../core/errors.ts';
import type { Database } from '../db/database.ts';
import { subscriptionObject, toSubscriptionState } from './events.ts';
import {
  localId,
  nowSeconds,
  signPayload,
  stripeEvent,
  stripeObject,
  type SignedPayload,
} from './stripe-objects.ts';

/** Hands a signed event to the platform's own `POST /webhooks/stripe`. */
export type WebhookDelivery = (signed: SignedPayload) => Promise<void>;

export interface LocalBillingOptions {
  db: Database;
  publicUrl: string;
  webhookSecret: string;
  deliver: WebhookDelivery;
  /** Monthly price shown on the local checkout page, in cents. */
  priceCents?: number;
}

interface SessionData {
  tenant_id: string;
  customer_email: string;
  plan: string;
  success_url: string;
  cancel_url: string;
  status: 'open' | 'complete';
  customer?: string;
  subscription?: string;
}

/**
 * Local billing mode: what Stripe would do, kept in `local_billing_objects`.
 * Paying, failing a payment or cancelling sends the same signed events Stripe
 * sends, through the same webhook.
 */
export class LocalBilling implements BillingPort {
  readonly mode = 'local' as const;
  constructor(private readonly options: LocalBillingOptions) {}

  async createCheckout(request: CheckoutRequest): Promise<CheckoutSession> {
    const id = localId('cs');
    const data: SessionData = {
      tenant_id: request.tenantId,
      customer_email: request.customerEmail,
      plan: request.plan,
      success_url: request.successUrl,
      cancel_url: request.cancelUrl,
      status: 'open',
    };
    await this.options.db
      .insertInto('local_billing_objects')
      .values({ id, kind: 'checkout_session', tenant_id: request.tenantId, data: JSON.stringify(data) })
      .execute();
    return { id, url: `${this.options.publicUrl}/billing/checkout/${id}` };
  }

  async session(id: string): Promise<(SessionData & { id: string }) | undefined> {
    const row = await this.options.db
      .selectFrom('local_billing_objects')
      .select(['id', 'data'])
      .where('id', '=', id)
      .where('kind', '=', 'checkout_session')
      .executeTakeFirst();
    return row ? { id: row.id, ...(row.data as unknown as SessionData) } : undefined;
  }

  /**
   * Complete a checkout: create the customer and an active subscription, then
   * send checkout.session.completed, customer.subscription.created and
   * invoice.paid. Paying twice sends nothing new.
   */
  async pay(sessionId: string): Promise<{ successUrl: string }> {
    const { db } = this.options;
    const result = await db.transaction().execute(async (trx) => {
      const row = await trx
        .selectFrom('local_billing_objects')
        .select('data')
        .where('id', '=', sessionId)
        .where('kind', '=', 'checkout_session')
        .forUpdate()
        .executeTakeFirst();
      if (!row) throw new DomainError('not_found', `no checkout session ${sessionId}`);
      const session = row.data as unknown as SessionData;
      if (session.status === 'complete') return { session, events: [] };
      const customer = localId('cus');
      const subscription = localId('sub');
      const periodEnd = nowSeconds() + 30 * 86_400;
      const sub = stripeObject('subscription', {
        id: subscription,
        customer,
        status: 'active',
        cancel_at_period_end: false,
        metadata: { tenant_id: session.tenant_id, plan: session.plan },
        items: {
          object: 'list',
          data: [
            {
              id: localId('si'),
              price: { id: `price_local_${session.plan}` },
              current_period_end: periodEnd,
            },
          ],
        },
      });
      const done: SessionData = { ...session, status: 'complete', customer, subscription };
      await trx
        .updateTable('local_billing_objects')
        .set({ data: JSON.stringify(done), updated_at: sql`now()` })
        .where('id', '=', sessionId)
        .execute();
      await trx
        .insertInto('local_billing_objects')
        .values([
          {
            id: customer,
            kind: 'customer',
            tenant_id: session.tenant_id,
            data: JSON.stringify(stripeObject('customer', { id: customer, email: session.customer_email })),
          },
          { id: subscription, kind: 'subscription', tenant_id: session.tenant_id, data: JSON.stringify(sub) },
        ])
        .execute();
      const checkout = stripeObject('checkout.session', {
        id: sessionId,
        object: 'checkout.session',
        mode: 'subscription',
        status: 'complete',
        payment_status: 'paid',
        client_reference_id: session.tenant_id,
        customer,
        customer_email: session.customer_email,
        subscription,
        success_url: session.success_url,
        cancel_url: session.cancel_url,
        url: null,
      });
      const events = [
        stripeEvent('checkout.session.completed', checkout),
        stripeEvent('customer.subscription.created', sub),
        stripeEvent(
          'invoice.paid',
          this.invoice(customer, subscription, { status: 'paid', attempt_count: 1 }),
        ),
      ];
      return { session, events };
    });
    for (const event of result.events) await this.send(event);
    return { successUrl: result.session.success_url };
  }

  /** A failed renewal payment on which Stripe has given up retrying (dunning exhausted). */
  async failPayment(subscriptionId: string): Promise<void> {
    const state = await this.updateSubscription(subscriptionId, { status: 'unpaid' });
    await this.send(
      stripeEvent(
        'invoice.payment_failed',
        this.invoice(state.customerId, subscriptionId, {
          status: 'open',
          attempt_count: 4,
          next_payment_attempt: null,
        }),
      ),
    );
  }

  /** A successful payment of the outstanding invoice. */
  async recoverPayment(subscriptionId: string): Promise<void> {
    const state = await this.updateSubscription(subscriptionId, { status: 'active' });
    await this.send(
      stripeEvent(
        'invoice.paid',
        this.invoice(state.customerId, subscriptionId, { status: 'paid', attempt_count: 1 }),
      ),
    );
  }

  async getSubscription(id: string): Promise<SubscriptionState | undefined> {
    const data = await this.findSubscription(id);
    return data ? toSubscriptionState(subscriptionObject.parse(data)) : undefined;
  }

  async cancelSubscription(id: string): Promise<void> {
    const raw = await this.rawSubscription(id);
    if (raw.status === 'canceled') return;
    const updated = { ...raw, status: 'canceled', canceled_at: nowSeconds(), ended_at: nowSeconds() };
    await this.store(id, updated);
    await this.send(stripeEvent('customer.subscription.deleted', updated));
  }

  private invoice(customer: string | null, subscription: string, fields: Record<string, unknown>) {
    return stripeObject('invoice', {
      id: localId('in'),
      customer,
      subscription,
      parent: {
        type: 'subscription_details',
        quote_details: null,
        subscription_details: { metadata: {}, subscription },
      },
      next_payment_attempt: null,
      ...fields,
    });
  }

  private async findSubscription(id: string): Promise<Record<string, unknown> | undefined> {
    const row = await this.options.db
      .selectFrom('local_billing_objects')
      .select('data')
      .where('id', '=', id)
      .where('kind', '=', 'subscription')
      .executeTakeFirst();
    return row?.data;
  }

  private async rawSubscription(id: string): Promise<Record<string, unknown>> {
    const data = await this.findSubscription(id);
    if (!data) throw new DomainError('not_found', `no subscription ${id}`);
    return data;
  }

  private async updateSubscription(id: string, fields: Record<string, unknown>): Promise<SubscriptionState> {
    const updated = { ...(await this.rawSubscription(id)), ...fields };
    await this.store(id, updated);
    await this.send(stripeEvent('customer.subscription.updated', updated));
    return toSubscriptionState(subscriptionObject.parse(updated));
  }

  private async store(id: string, data: Record<string, unknown>): Promise<void> {
    await this.options.db
      .updateTable('local_billing_objects')
      .set({ data: JSON.stringify(data), updated_at: sql`now()` })
      .where('id', '=', id)
      .execute();
  }

  private send(event: object): Promise<void> {
    return this.options.deliver(signPayload(JSON.stringify(event), this.options.webhookSecret));
  }
}
