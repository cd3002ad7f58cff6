import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalBilling } from '../src/billing/local.ts';
import { processBillingEvent } from '../src/billing/process.ts';
import { StripeBilling } from '../src/billing/stripe.ts';
import { loadCatalog } from '../src/catalog/load.ts';
import { loadPlans, PLANS_FILE, type Plan } from '../src/catalog/plans.ts';
import { syncCatalog } from '../src/catalog/sync.ts';
import type { ApiServer } from '../src/api/server.ts';
import { buildApi } from '../src/platform/api.ts';
import { createLogger } from '../src/observability/logger.ts';
import { createMetrics } from '../src/observability/metrics.ts';
import { warnPlanAllowances } from '../src/usage/monthly.ts';
import { processStripeEvents, subscribeLocally } from './support/billing-plans.ts';
import { createHarness, type Harness } from './support/identity.ts';
import { signed } from './support/stripe.ts';
import { startStripeApi, type StripeApiStandIn } from './support/stripe-api.ts';

/**
 * Changing a tenant's plan (GET /api/v1/tenants/{t}/billing, POST …/billing/plan):
 * in local billing mode the change is the subscription's new price and its
 * customer.subscription.updated event, written together; in Stripe mode the
 * subscription item's price is updated through Stripe's API (a stand-in
 * enforcing its contract) and the webhook event brings the change. Either
 * way the plan, and with it the services limit and what usage is measured
 * against, changes when the event is processed. The refusals: unknown plan,
 * same plan, a downgrade below the services in use, a tenant not active,
 * a member, another tenant.
 */
let h: Harness;
let plans: Plan[];
let local: LocalBilling;

const url = (slug: string, rest = '') => `/api/v1/tenants/${slug}/billing${rest}`;
type Overview = {
  mode: string;
  status: string;
  plan: {
    key: string;
    name: string;
    monthlyCents: number;
    services: number;
    includes: Record<string, number>;
  };
  subscription: { status: string; currentPeriodEnd: string | null; pendingPlan: string | null } | null;
  servicesInUse: number;
  plans: { key: string; monthlyCents: number }[];
};
type ErrorBody = { error: { code: string; message: string; details?: Record<string, unknown> } };

async function overview(token: string, api: ApiServer = h.api, slug = h.a.slug) {
  const res = await api.inject({ method: 'GET', url: url(slug), headers: h.bearer(token) });
  expect(res.statusCode, res.body).toBe(200);
  return res.json<Overview>();
}

const change = (plan: unknown, token = h.a.owner.token, api: ApiServer = h.api, slug = h.a.slug) =>
  api.inject({ method: 'POST', url: url(slug, '/plan'), headers: h.bearer(token), payload: { plan } });

const planOf = async (tenantId: string) =>
  (await h.db.db.selectFrom('tenants').select('plan').where('id', '=', tenantId).executeTakeFirstOrThrow())
    .plan;

const unprocessed = () =>
  h.db.db
    .selectFrom('inbox')
    .select(['id', 'type', 'payload'])
    .where('source', '=', 'stripe')
    .where('processed_at', 'is', null)
    .execute();

async function subscribeService(service: string, slug = h.a.slug, token = h.a.owner.token) {
  return h.api.inject({
    method: 'POST',
    url: `/api/v1/tenants/${slug}/services`,
    headers: h.bearer(token),
    payload: { service },
  });
}

beforeAll(async () => {
  h = await createHarness();
  plans = loadPlans(PLANS_FILE);
  await syncCatalog(h.db.db, loadCatalog());
  local = new LocalBilling({ db: h.db.db, publicUrl: 'http://localhost:8080' });
  await subscribeLocally(h.db.db, plans, { id: h.a.id, email: h.a.owner.email }, 'starter');
}, 60_000);

afterAll(() => h?.close());

describe('local billing mode', () => {
  it('shows the plan, its price and what it includes, the subscription and the plans on offer (owners, admins)', async () => {
    const view = await overview(h.a.owner.token);
    expect(view.mode).toBe('local');
    expect(view.status).toBe('active');
    expect(view.plan).toMatchObject({ key: 'starter', name: 'Starter', monthlyCents: 4900, services: 2 });
    expect(view.plan.includes).toEqual({ storage_gb: 10, requests: 1_000_000 });
    expect(view.subscription?.status).toBe('active');
    expect(view.subscription?.pendingPlan).toBeNull();
    // The local checkout's period: 30 days from payment.
    const end = Date.parse(view.subscription!.currentPeriodEnd!);
    expect(end - Date.now()).toBeGreaterThan(29 * 86_400_000);
    expect(view.plans.map((p) => [p.key, p.monthlyCents])).toEqual([
      ['starter', 4900],
      ['business', 14900],
    ]);
    expect(view.servicesInUse).toBe(0);
    expect((await overview(h.admin.token)).plan.key).toBe('starter');
  });

  it('refuses a member (403) and another tenant (404), reading and changing', async () => {
    for (const res of [
      await h.api.inject({ method: 'GET', url: url(h.a.slug), headers: h.bearer(h.a.member.token) }),
      await change('business', h.a.member.token),
    ]) {
      expect(res.statusCode, res.body).toBe(403);
    }
    for (const res of [
      await h.api.inject({ method: 'GET', url: url(h.a.slug), headers: h.bearer(h.b.owner.token) }),
      await change('business', h.b.owner.token),
    ]) {
      expect(res.statusCode, res.body).toBe(404);
      expect(res.body).not.toContain(h.a.owner.email);
      expect(res.body).not.toContain('alpha Inc.');
    }
    expect(await unprocessed()).toEqual([]);
  });

  it('refuses an unknown plan (400 naming it), the same plan (409) and bad bodies (400)', async () => {
    const unknown = await change('gold');
    expect(unknown.statusCode, unknown.body).toBe(400);
    expect(unknown.json<ErrorBody>().error.message).toBe(
      'plan: no plan "gold"; expected one of starter, business',
    );
    const same = await change('starter');
    expect(same.statusCode, same.body).toBe(409);
    expect(same.json<ErrorBody>().error.message).toBe('alpha is on the Starter plan already');
    for (const payload of [{}, { plan: 7 }, { plan: 'business', extra: 1 }]) {
      const res = await h.api.inject({
        method: 'POST',
        url: url(h.a.slug, '/plan'),
        headers: h.bearer(h.a.owner.token),
        payload,
      });
      expect(res.statusCode, res.body).toBe(400);
    }
    expect(await unprocessed()).toEqual([]);
  });

  it('refuses a tenant that is not active (409), and one with no subscription (409)', async () => {
    await h.db.db.updateTable('tenants').set({ status: 'suspended' }).where('id', '=', h.a.id).execute();
    try {
      const res = await change('business');
      expect(res.statusCode, res.body).toBe(409);
      expect(res.json<ErrorBody>().error.message).toBe(
        'alpha is suspended; only an active tenant can change its plan',
      );
    } finally {
      await h.db.db.updateTable('tenants').set({ status: 'active' }).where('id', '=', h.a.id).execute();
    }
    const none = await change('business', h.b.owner.token, h.api, h.b.slug);
    expect(none.statusCode, none.body).toBe(409);
    expect(none.json<ErrorBody>().error.message).toMatch(/^bravo has no subscription to change/);
    expect(await unprocessed()).toEqual([]);
  });

  it('an upgrade is the subscription update event; the plan and its services limit change when it is processed', async () => {
    expect((await subscribeService('notes')).statusCode).toBe(202);
    expect((await subscribeService('social-media-manager')).statusCode).toBe(202);
    const third = await subscribeService('content-suite');
    expect(third.statusCode, third.body).toBe(409);
    expect(third.json<ErrorBody>().error.message).toMatch(/the Starter plan allows 2 services/);

    const res = await change('business');
    expect(res.statusCode, res.body).toBe(202);
    expect(res.json()).toEqual({ from: 'starter', plan: 'business', state: 'requested' });
    // Written with the change: Stripe's event, with the subscription's new price.
    const events = await unprocessed();
    expect(events.map((e) => e.type)).toEqual(['customer.subscription.updated']);
    const sub = (events[0]!.payload as { data: { object: Record<string, unknown> } }).data.object as {
      items: { data: { price: { id: string } }[] };
      metadata: Record<string, string>;
    };
    expect(sub.items.data[0]!.price.id).toBe('price_local_business');
    expect(sub.metadata.plan).toBe('business');
    // Nothing changes before the event is processed: the limit is still Starter's.
    expect(await planOf(h.a.id)).toBe('starter');
    expect((await overview(h.a.owner.token)).subscription?.pendingPlan).toBeNull();
    expect((await subscribeService('content-suite')).statusCode).toBe(409);

    // Asking again before it is processed sends nothing new (idempotent).
    const again = await change('business');
    expect(again.statusCode, again.body).toBe(202);
    expect(again.json<{ state: string }>().state).toBe('already_requested');
    expect(await unprocessed()).toHaveLength(1);

    const results = await processStripeEvents(h.db.db, local, plans);
    expect(results).toHaveLength(1);
    expect(await planOf(h.a.id)).toBe('business');
    const view = await overview(h.a.owner.token);
    expect(view.plan).toMatchObject({ key: 'business', monthlyCents: 14900, services: 6 });
    expect(view.subscription?.pendingPlan).toBeNull();
    expect(view.servicesInUse).toBe(2);
    // Business allows 6: the third service is taken now.
    const now = await subscribeService('content-suite');
    expect(now.statusCode, now.body).toBe(202);
    // Once on the plan, asking for it is the same plan.
    expect((await change('business')).statusCode).toBe(409);

    const audit = await h.db.db
      .selectFrom('audit_log')
      .select(['action', 'actor_id', 'actor_type', 'result', 'details'])
      .where('tenant_id', '=', h.a.id)
      .where('action', 'in', ['tenant.billing.plan', 'tenant.plan_changed'])
      .orderBy('id')
      .execute();
    // The API's calls (refusals included) name the owner; the change itself is the system's, naming the event.
    const asked = audit.filter((a) => a.action === 'tenant.billing.plan');
    expect(asked.some((a) => a.actor_id === h.a.owner.id && a.result === 'success')).toBe(true);
    expect(asked.some((a) => a.actor_id === h.a.member.id && a.result !== 'success')).toBe(true);
    const changed = audit.filter((a) => a.action === 'tenant.plan_changed');
    expect(changed).toHaveLength(1);
    expect(changed[0]).toMatchObject({ actor_type: 'system', details: { from: 'starter', to: 'business' } });
  });

  it('what the plan includes follows the plan: usage is measured against the new allowance', async () => {
    // The same 900,000 requests this month: 90% of Starter's million (B), 9% of Business's ten (A).
    const hourStart = new Date(Math.floor(Date.now() / 3_600_000) * 3_600_000);
    for (const tenantId of [h.a.id, h.b.id]) {
      await h.db.db
        .insertInto('usage_metrics')
        .values({ tenant_id: tenantId, metric: 'requests', value: 900_000, period_start: hourStart })
        .execute();
    }
    await warnPlanAllowances(
      { db: h.db.db, timeZone: 'UTC', plans, log: createLogger('silent') },
      new Date(),
    );
    const warnings = await h.db.db
      .selectFrom('outbox')
      .select('key')
      .where('key', 'like', 'usage-warning:%')
      .execute();
    const keys = warnings.map((w) => w.key);
    expect(keys.some((k) => k.startsWith(`usage-warning:${h.b.id}:`) && k.endsWith(':requests:80'))).toBe(
      true,
    );
    expect(keys.filter((k) => k.startsWith(`usage-warning:${h.a.id}:`))).toEqual([]);
  });

  it('a downgrade below the services in use is refused naming how many to unsubscribe; at the limit it is taken', async () => {
    const res = await change('starter');
    expect(res.statusCode, res.body).toBe(409);
    const body = res.json<ErrorBody>();
    expect(body.error.message).toBe(
      'the Starter plan allows 2 services and alpha has 3; unsubscribe 1 service first',
    );
    expect(body.error.details).toMatchObject({ plan: 'starter', limit: 2, services: 3, unsubscribe: 1 });
    expect(await unprocessed()).toEqual([]);

    const off = await h.api.inject({
      method: 'DELETE',
      url: `/api/v1/tenants/${h.a.slug}/services/content-suite`,
      headers: h.bearer(h.a.owner.token),
    });
    expect(off.statusCode, off.body).toBeLessThan(300);
    const down = await change('starter');
    expect(down.statusCode, down.body).toBe(202);
    await processStripeEvents(h.db.db, local, plans);
    expect(await planOf(h.a.id)).toBe('starter');
    // At Starter's limit again: a third service is refused.
    expect((await subscribeService('content-suite')).statusCode).toBe(409);
  });

  it('the change and its event are written in one transaction: a rollback leaves neither', async () => {
    const sub = (
      await h.db.db
        .selectFrom('subscriptions')
        .select('stripe_subscription_id')
        .where('tenant_id', '=', h.a.id)
        .executeTakeFirstOrThrow()
    ).stripe_subscription_id!;
    await expect(
      h.db.db.transaction().execute(async (trx) => {
        expect(await local.changePriceIn(trx, sub, 'price_local_business', 'business')).toBe('requested');
        throw new Error('crash after the change');
      }),
    ).rejects.toThrow('crash after the change');
    expect((await local.getSubscription(sub))?.priceId).toBe('price_local_starter');
    expect(await unprocessed()).toEqual([]);
  });

  it('events in any order end on the subscription as it is now', async () => {
    // Two changes, processed after both were made and in reverse: the plan is the last price's.
    expect((await change('business')).statusCode).toBe(202);
    await h.api.inject({
      method: 'DELETE',
      url: `/api/v1/tenants/${h.a.slug}/services/social-media-manager`,
      headers: h.bearer(h.a.owner.token),
    });
    expect((await change('starter')).statusCode).toBe(202);
    const events = await unprocessed();
    expect(events).toHaveLength(2);
    expect((await overview(h.a.owner.token)).subscription?.pendingPlan).toBeNull();
    for (const e of [...events].reverse()) {
      await processBillingEvent({ db: h.db.db, billing: local, graceDays: 30, plans }, e.id);
    }
    expect(await planOf(h.a.id)).toBe('starter');
  });

  it("a platform admin may change a tenant's plan too; the audit row names the admin", async () => {
    const res = await change('business', h.admin.token);
    expect(res.statusCode, res.body).toBe(202);
    expect(res.json()).toEqual({ from: 'starter', plan: 'business', state: 'requested' });
    await processStripeEvents(h.db.db, local, plans);
    expect(await planOf(h.a.id)).toBe('business');
    const row = await h.db.db
      .selectFrom('audit_log')
      .select(['actor_id', 'result'])
      .where('tenant_id', '=', h.a.id)
      .where('action', '=', 'tenant.billing.plan')
      .orderBy('id', 'desc')
      .executeTakeFirstOrThrow();
    expect(row).toEqual({ actor_id: h.admin.id, result: 'success' });
  });
});

describe('Stripe mode (a stand-in enforcing the API contract)', () => {
  let stripe: StripeApiStandIn;
  let api: ApiServer;
  let billing: StripeBilling;
  let stripePlans: Plan[];
  const secret = 'whsec_plan_change_test';
  let subId: string;

  beforeAll(async () => {
    stripePlans = plans.map((p) => ({ ...p, stripe_price_id: `price_1${p.key}Monthly` }));
    stripe = await startStripeApi(['cus_tenantc'], { prices: stripePlans.map((p) => p.stripe_price_id!) });
    const prices = new Map(stripePlans.map((p) => [p.key, p.stripe_price_id!]));
    billing = new StripeBilling({
      secretKey: 'sk_test_aiqso',
      priceFor: (k) => prices.get(k),
      endpoint: stripe.endpoint,
    });
    api = await buildApi({
      config: h.config,
      log: createLogger('silent'),
      database: { ...h.db, mode: 'external' },
      metrics: createMetrics(),
      billing: { port: billing, webhookSecret: secret },
      plans: stripePlans,
      identity: { rateLimitNamespace: `aiqso-test-${h.db.name}-stripe` },
    });
    await api.ready();
    // Tenant B, signed up through Stripe Checkout on Starter: its subscription as Stripe holds it.
    const sub = stripe.addSubscription('cus_tenantc', 'price_1starterMonthly', {
      tenant_id: h.b.id,
      plan: 'starter',
    });
    subId = sub.id as string;
    await h.db.db
      .insertInto('subscriptions')
      .values({
        id: `sub_${'0'.repeat(25)}1`,
        tenant_id: h.b.id,
        stripe_subscription_id: subId,
        stripe_customer_id: 'cus_tenantc',
        stripe_price_id: 'price_1starterMonthly',
        status: 'active',
      })
      .execute();
    await h.db.db
      .updateTable('tenants')
      .set({ stripe_customer_id: 'cus_tenantc' })
      .where('id', '=', h.b.id)
      .execute();
  }, 60_000);

  afterAll(async () => {
    await api?.close();
    await stripe?.close();
  });

  it("updates the subscription item's price through Stripe; the webhook event changes the plan", async () => {
    const before = stripe.requests.length;
    const res = await change('business', h.b.owner.token, api, h.b.slug);
    expect(res.statusCode, res.body).toBe(202);
    expect(res.json()).toEqual({ from: 'starter', plan: 'business', state: 'requested' });
    const calls = stripe.requests.slice(before);
    expect(calls.map((c) => `${c.method} ${c.path}`)).toEqual([
      `GET /v1/subscriptions/${subId}`,
      `POST /v1/subscriptions/${subId}`,
    ]);
    const update = calls[1]!;
    const item = (stripe.subscriptions.get(subId)!.items as { data: { id: string }[] }).data[0]!;
    expect(Object.fromEntries(update.form)).toEqual({
      'items[0][id]': item.id,
      'items[0][price]': 'price_1businessMonthly',
      'metadata[plan]': 'business',
    });
    // Proration is Stripe's default: the platform does not set it.
    expect(update.form.has('proration_behavior')).toBe(false);
    expect(update.idempotencyKey).toMatch(new RegExp(`^plan:${subId}:price_1businessMonthly:`));

    // Our plan has not moved: only the webhook moves it.
    expect(await planOf(h.b.id)).toBe('starter');
    expect((await overview(h.b.owner.token, api, h.b.slug)).subscription?.pendingPlan).toBeNull();

    // Asked again before the event: Stripe's subscription has the price, nothing is sent.
    const n = stripe.requests.length;
    const again = await change('business', h.b.owner.token, api, h.b.slug);
    expect(again.json<{ state: string }>().state).toBe('already_requested');
    expect(stripe.requests.slice(n).map((c) => c.method)).toEqual(['GET']);

    expect(stripe.sent).toHaveLength(1);
    const delivered = await api.inject(signed(stripe.sent[0]!, secret));
    expect(delivered.statusCode, delivered.body).toBe(200);
    await processStripeEvents(h.db.db, billing, stripePlans);
    expect(await planOf(h.b.id)).toBe('business');
    const view = await overview(h.b.owner.token, api, h.b.slug);
    expect(view.mode).toBe('stripe');
    expect(view.plan).toMatchObject({ key: 'business', services: 6 });
    expect(view.subscription?.currentPeriodEnd).not.toBeNull();
    // On the plan, with Stripe's subscription at its price: the same plan, and nothing sent.
    const m = stripe.requests.length;
    const same = await change('business', h.b.owner.token, api, h.b.slug);
    expect(same.statusCode, same.body).toBe(409);
    expect(stripe.requests.slice(m).map((c) => c.method)).toEqual(['GET']);
  });

  it('a stale event is decided on the subscription as it is now', async () => {
    // Back to Starter at Stripe; the older Business event delivered again afterwards changes nothing.
    const res = await change('starter', h.b.owner.token, api, h.b.slug);
    expect(res.statusCode, res.body).toBe(202);
    const [older, newer] = [stripe.sent[0]!, stripe.sent[1]!];
    expect((await api.inject(signed(newer, secret))).statusCode).toBe(200);
    await processStripeEvents(h.db.db, billing, stripePlans);
    expect(await planOf(h.b.id)).toBe('starter');
    // The first event again under a new id (a replay of its content): processed on Stripe's current price.
    const replay = { ...older, id: `evt_replay${Date.now()}` };
    expect((await api.inject(signed(replay, secret))).statusCode).toBe(200);
    await processStripeEvents(h.db.db, billing, stripePlans);
    expect(await planOf(h.b.id)).toBe('starter');
  });

  it('the stand-in refuses what Stripe refuses', async () => {
    const item = (stripe.subscriptions.get(subId)!.items as { data: { id: string }[] }).data[0]!;
    const post = (form: Record<string, string>) =>
      fetch(`http://${stripe.endpoint.host}:${stripe.endpoint.port}/v1/subscriptions/${subId}`, {
        method: 'POST',
        headers: {
          authorization: 'Bearer sk_test_aiqso',
          'content-type': 'application/x-www-form-urlencoded',
        },
        body: new URLSearchParams(form).toString(),
      }).then(async (r) => ({ status: r.status, body: (await r.json()) as ErrorBody }));
    const noPrice = await post({ 'items[0][id]': item.id, 'items[0][price]': 'price_nope' });
    expect(noPrice.status).toBe(400);
    expect(noPrice.body.error.message).toBe("No such price: 'price_nope'");
    const notItem = await post({ 'items[0][id]': 'si_other', 'items[0][price]': 'price_1businessMonthly' });
    expect(notItem.status).toBe(400);
    const unknownParam = await post({ plan: 'business' });
    expect(unknownParam.body.error.message).toBe('Received unknown parameter: plan');
    const proration = await post({ proration_behavior: 'sometimes' });
    expect(proration.status).toBe(400);
    const missing = await fetch(
      `http://${stripe.endpoint.host}:${stripe.endpoint.port}/v1/subscriptions/sub_missing`,
      { headers: { authorization: 'Bearer sk_test_aiqso' } },
    );
    expect(missing.status).toBe(404);
  });

  it('a Stripe outage is a 502-class dependency failure, not a change', async () => {
    stripe.failNext(10);
    const res = await change('business', h.b.owner.token, api, h.b.slug);
    expect(res.statusCode, res.body).toBe(502);
    expect(res.json<ErrorBody>().error.message).toMatch(/^Stripe: could not/);
    stripe.failNext(0);
    expect(await planOf(h.b.id)).toBe('starter');
  });
});
