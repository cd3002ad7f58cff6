import { sql, type Kysely } from 'kysely';
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
import { DomainError } from '../core/errors.ts';
import type { Database } from '../db/database.ts';
import type { DB } from '../db/tables.ts';
import { subscriptionObject, toSubscriptionState } from './events.ts';
import { createLocalPortalSession, localPortalView, type LocalPortalView } from './local-portal.ts';
import { localId, nowSeconds, stripeEvent, stripeObject } from './stripe-objects.ts';
import { writeStripeEvent } from './webhook.ts';

export interface LocalBillingOptions {
  db: Database;
  publicUrl: string;
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
 * Paying, failing a payment or cancelling makes the same events Stripe sends
 * and writes them into the inbox in the transaction that changes the objects,
 * so a crash never leaves a change without its events (nor events without the
 * change); the workers process them like Stripe's.
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
   * Complete a checkout: create the customer and an active subscription, and
   * with them checkout.session.completed, customer.subscription.created and
   * invoice.paid, in one transaction. Paying again sends nothing new: the
   * events of the first Pay are already in the inbox.
   */
  async pay(sessionId: string): Promise<{ successUrl: string }> {
    const { db } = this.options;
    const session = await db.transaction().execute(async (trx) => {
      const row = await trx
        .selectFrom('local_billing_objects')
        .select('data')
        .where('id', '=', sessionId)
        .where('kind', '=', 'checkout_session')
        .forUpdate()
        .executeTakeFirst();
      if (!row) throw new DomainError('not_found', `no checkout session ${sessionId}`);
      const session = row.data as unknown as SessionData;
      if (session.status === 'complete') return session;
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
      await writeStripeEvent(trx, stripeEvent('checkout.session.completed', checkout));
      await writeStripeEvent(trx, stripeEvent('customer.subscription.created', sub));
      await writeStripeEvent(
        trx,
        stripeEvent(
          'invoice.paid',
          this.invoice(customer, subscription, { status: 'paid', attempt_count: 1 }),
        ),
      );
      return session;
    });
    return { successUrl: session.success_url };
  }

  /** A failed renewal payment on which Stripe has given up retrying (dunning exhausted). */
  async failPayment(subscriptionId: string): Promise<void> {
    await this.options.db.transaction().execute(async (trx) => {
      const state = await this.updateSubscription(trx, subscriptionId, { status: 'unpaid' });
      const invoice = this.invoice(state.customerId, subscriptionId, {
        status: 'open',
        attempt_count: 4,
        next_payment_attempt: null,
      });
      await writeStripeEvent(trx, stripeEvent('invoice.payment_failed', invoice));
    });
  }

  /** A successful payment of the outstanding invoice. */
  async recoverPayment(subscriptionId: string): Promise<void> {
    await this.options.db.transaction().execute(async (trx) => {
      const state = await this.updateSubscription(trx, subscriptionId, { status: 'active' });
      const invoice = this.invoice(state.customerId, subscriptionId, { status: 'paid', attempt_count: 1 });
      await writeStripeEvent(trx, stripeEvent('invoice.paid', invoice));
    });
  }

  async getSubscription(id: string): Promise<SubscriptionState | undefined> {
    const data = await this.findSubscription(this.options.db, id);
    return data ? toSubscriptionState(subscriptionObject.parse(data)) : undefined;
  }

  async cancelSubscription(id: string): Promise<void> {
    await this.options.db.transaction().execute(async (trx) => {
      const raw = await this.rawSubscription(trx, id);
      if (raw.status === 'canceled') return;
      const updated = { ...raw, status: 'canceled', canceled_at: nowSeconds(), ended_at: nowSeconds() };
      await this.store(trx, id, updated);
      await writeStripeEvent(trx, stripeEvent('customer.subscription.deleted', updated));
    });
  }

  async changePrice(subscriptionId: string, price: string, plan: string): Promise<PriceChange> {
    return this.options.db
      .transaction()
      .execute((trx) => this.changePriceIn(trx, subscriptionId, price, plan));
  }

  /**
   * A plan change as Stripe makes it when a subscription item's price is
   * updated: the subscription with its new price, and the
   * `customer.subscription.updated` event, written in the caller's
   * transaction (with the checks it made), so a crash leaves both or neither.
   * Asking again for the price it has changes nothing and sends nothing.
   */
  async changePriceIn(
    trx: Kysely<DB>,
    subscriptionId: string,
    price: string,
    plan: string,
  ): Promise<PriceChange> {
    const raw = await this.rawSubscription(trx, subscriptionId);
    const state = toSubscriptionState(subscriptionObject.parse(raw));
    if (state.status === 'canceled') {
      throw new DomainError('conflict', `subscription ${subscriptionId} is canceled; its plan cannot change`);
    }
    if (state.priceId === price) return 'already_requested';
    const items = raw.items as { data: Array<Record<string, unknown>> };
    const [first, ...rest] = items.data;
    if (!first) throw new DomainError('conflict', `subscription ${subscriptionId} has no item to change`);
    await this.updateSubscription(trx, subscriptionId, {
      items: { ...items, data: [{ ...first, price: { ...(first.price as object), id: price } }, ...rest] },
      metadata: { ...(raw.metadata as Record<string, string> | null), plan },
    });
    return 'requested';
  }

  /** The stand-in for Stripe's Customer Portal, served by the platform (local-portal.ts). */
  openPortal(request: PortalRequest): Promise<PortalSession> {
    return createLocalPortalSession(this.options.db, this.options.publicUrl, request);
  }

  /** What a local portal link opens (the route that serves it renders this). */
  portal(secret: string): Promise<LocalPortalView | 'expired' | undefined> {
    return localPortalView(this.options.db, secret);
  }

  /**
   * Local billing mode charges nothing: a meter event is checked as Stripe
   * would check it (a customer it knows) and not sent anywhere. The delivered
   * outbox item (kind `stripe`) is the record of what Stripe would have got.
   */
  async recordMeterEvent(event: MeterEvent): Promise<void> {
    const customer = await this.options.db
      .selectFrom('local_billing_objects')
      .select('id')
      .where('id', '=', event.customerId)
      .where('kind', '=', 'customer')
      .executeTakeFirst();
    if (!customer) throw new DomainError('not_found', `no customer ${event.customerId}`);
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

  private async findSubscription(
    db: Kysely<DB>,
    id: string,
    lock = false,
  ): Promise<Record<string, unknown> | undefined> {
    const row = await db
      .selectFrom('local_billing_objects')
      .select('data')
      .where('id', '=', id)
      .where('kind', '=', 'subscription')
      .$if(lock, (q) => q.forUpdate())
      .executeTakeFirst();
    return row?.data;
  }

  private async rawSubscription(trx: Kysely<DB>, id: string): Promise<Record<string, unknown>> {
    const data = await this.findSubscription(trx, id, true);
    if (!data) throw new DomainError('not_found', `no subscription ${id}`);
    return data;
  }

  private async updateSubscription(
    trx: Kysely<DB>,
    id: string,
    fields: Record<string, unknown>,
  ): Promise<SubscriptionState> {
    const updated = { ...(await this.rawSubscription(trx, id)), ...fields };
    await this.store(trx, id, updated);
    await writeStripeEvent(trx, stripeEvent('customer.subscription.updated', updated));
    return toSubscriptionState(subscriptionObject.parse(updated));
  }

  private async store(trx: Kysely<DB>, id: string, data: Record<string, unknown>): Promise<void> {
    await trx
      .updateTable('local_billing_objects')
      .set({ data: JSON.stringify(data), updated_at: sql`now()` })
      .where('id', '=', id)
      .execute();
  }
}
