import { createHash, randomBytes } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import type { PortalRequest, PortalSession } from '../core/billing.ts';
import { DomainError } from '../core/errors.ts';
import type { DB } from '../db/tables.ts';
import { subscriptionObject, toSubscriptionState } from './events.ts';
import { localId, nowSeconds, stripeObject } from './stripe-objects.ts';

/**
 * Local billing mode's stand-in for Stripe's Customer Portal: a session is a
 * `billing_portal.session` object in `local_billing_objects`, for one
 * customer, opened by a link carrying a random secret. Only the secret's
 * SHA-256 is stored, so the table does not hold the credential; the link
 * opens that tenant's page, and nothing else, for `LOCAL_PORTAL_MINUTES`.
 * Like Stripe's, the portal shows what billing knows of the customer; local
 * billing keeps no payment method and issues no invoice, so it shows the
 * subscriptions and the checkouts paid (simulated, nothing charged).
 */
export const LOCAL_PORTAL_MINUTES = 15;

/** Where the platform serves the local portal; the secret rides in `?session=`, which logs redact. */
export const LOCAL_PORTAL_PATH = '/billing/portal';

const sha256 = (secret: string) => createHash('sha256').update(secret).digest('hex');

export interface LocalPortalView {
  tenant: { slug: string; company: string | null };
  customer: { id: string; email: string | null };
  subscriptions: {
    id: string;
    status: string;
    priceId: string | null;
    cancelAtPeriodEnd: boolean;
    currentPeriodEnd: Date | null;
    startedAt: Date | null;
  }[];
  /** Checkouts paid in local billing mode: simulated, nothing was charged. */
  payments: { checkout: string; plan: string; paidAt: Date }[];
  returnUrl: string;
  expiresAt: Date;
}

/**
 * A portal session for the tenant's local customer, refused (409) when local
 * billing has no such customer for that tenant. The tenant's expired sessions
 * are removed on the way, so they do not pile up.
 */
export async function createLocalPortalSession(
  db: Kysely<DB>,
  publicUrl: string,
  request: PortalRequest,
): Promise<PortalSession> {
  const secret = randomBytes(32).toString('base64url');
  const created = nowSeconds();
  const expiresAt = created + LOCAL_PORTAL_MINUTES * 60;
  await db.transaction().execute(async (trx) => {
    const customer = await trx
      .selectFrom('local_billing_objects')
      .select('id')
      .where('id', '=', request.customerId)
      .where('kind', '=', 'customer')
      .where('tenant_id', '=', request.tenantId)
      .executeTakeFirst();
    if (!customer) {
      throw new DomainError(
        'conflict',
        `local billing has no customer ${request.customerId} for this workspace; it gets one when its checkout is paid`,
      );
    }
    await trx
      .deleteFrom('local_billing_objects')
      .where('kind', '=', 'billing_portal_session')
      .where('tenant_id', '=', request.tenantId)
      .where(sql<boolean>`(data->>'expires_at')::bigint <= ${created}`)
      .execute();
    const id = localId('bps');
    // Stripe's object without its `url` (the credential), and with what the link is checked against.
    const { url: _url, ...session } = stripeObject('billing_portal.session', {
      id,
      created,
      customer: request.customerId,
      return_url: request.returnUrl,
      configuration: null,
      flow: null,
      expires_at: expiresAt,
      secret_sha256: sha256(secret),
    });
    await trx
      .insertInto('local_billing_objects')
      .values({
        id,
        kind: 'billing_portal_session',
        tenant_id: request.tenantId,
        data: JSON.stringify(session),
      })
      .execute();
  });
  return { url: `${publicUrl}${LOCAL_PORTAL_PATH}?session=${secret}` };
}

/**
 * What the portal session `secret` opens: its tenant's customer, subscriptions
 * and paid checkouts; `expired` once its time is over; undefined for a secret
 * that opens nothing.
 */
export async function localPortalView(
  db: Kysely<DB>,
  secret: string,
): Promise<LocalPortalView | 'expired' | undefined> {
  const row = await db
    .selectFrom('local_billing_objects')
    .select(['tenant_id', 'data'])
    .where('kind', '=', 'billing_portal_session')
    .where(sql<boolean>`data->>'secret_sha256' = ${sha256(secret)}`)
    .executeTakeFirst();
  if (!row?.tenant_id) return undefined;
  const session = row.data as { customer: string; return_url: string; expires_at: number };
  if (session.expires_at <= nowSeconds()) return 'expired';
  const tenantId = row.tenant_id;
  const tenant = await db
    .selectFrom('tenants')
    .select(['slug', 'company'])
    .where('id', '=', tenantId)
    .executeTakeFirst();
  if (!tenant) return undefined;
  const objects = await db
    .selectFrom('local_billing_objects')
    .select(['id', 'kind', 'data', 'updated_at'])
    .where('tenant_id', '=', tenantId)
    .where('kind', 'in', ['customer', 'subscription', 'checkout_session'])
    .orderBy('created_at', 'desc')
    .execute();
  const customer = objects.find((o) => o.kind === 'customer' && o.id === session.customer);
  const subscriptions = objects
    .filter((o) => o.kind === 'subscription' && o.data.customer === session.customer)
    .map((o) => {
      const state = toSubscriptionState(subscriptionObject.parse(o.data));
      const created = typeof o.data.created === 'number' ? new Date(o.data.created * 1000) : null;
      return { ...state, startedAt: created };
    });
  const payments = objects
    .filter((o) => o.kind === 'checkout_session' && o.data.customer === session.customer)
    .filter((o) => o.data.status === 'complete')
    .map((o) => ({ checkout: o.id, plan: String(o.data.plan), paidAt: o.updated_at }));
  return {
    tenant,
    customer: {
      id: session.customer,
      email: typeof customer?.data.email === 'string' ? customer.data.email : null,
    },
    subscriptions: subscriptions.map((s) => ({
      id: s.id,
      status: s.status,
      priceId: s.priceId,
      cancelAtPeriodEnd: s.cancelAtPeriodEnd,
      currentPeriodEnd: s.currentPeriodEnd,
      startedAt: s.startedAt,
    })),
    payments,
    returnUrl: session.return_url,
    expiresAt: new Date(session.expires_at * 1000),
  };
}
