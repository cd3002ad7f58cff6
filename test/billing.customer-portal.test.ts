import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import { LocalBilling } from '../src/billing/local.ts';
import { StripeBilling } from '../src/billing/stripe.ts';
import { loadCatalog } from '../src/catalog/load.ts';
import { loadPlans, PLANS_FILE, type Plan } from '../src/catalog/plans.ts';
import { syncCatalog } from '../src/catalog/sync.ts';
import type { ApiServer } from '../src/api/server.ts';
import { buildApi } from '../src/platform/api.ts';
import { createLogger } from '../src/observability/logger.ts';
import { createMetrics } from '../src/observability/metrics.ts';
import { subscribeLocally } from './support/billing-plans.ts';
import { createHarness, type Harness } from './support/identity.ts';
import { startStripeApi, type StripeApiStandIn } from './support/stripe-api.ts';

/**
 * Payment methods and invoices (POST /api/v1/tenants/{t}/billing/portal): a
 * portal session for the tenant's billing customer, returning to the
 * workspace's Billing page. In local billing mode the platform serves the
 * portal itself: a page for that one tenant (its subscription and the
 * checkouts it paid, simulated), opened by a short-lived secret link; in
 * Stripe mode it is a Customer Portal session made through Stripe's API (a
 * stand-in enforcing its contract). The refusals: a member, another tenant, an
 * API key or an operator, no billing customer (409), and Stripe refusing or
 * out of reach (502, in words).
 */
let h: Harness;
let plans: Plan[];
let local: LocalBilling;

type ErrorBody = { error: { code: string; message: string } };
const portalUrl = (slug: string) => `/api/v1/tenants/${slug}/billing/portal`;

const openPortal = (token: string, slug = h.a.slug, api: ApiServer = h.api) =>
  api.inject({ method: 'POST', url: portalUrl(slug), headers: h.bearer(token) });

/** The local portal page behind `url` (an address on the platform), as a browser asks for it. */
async function visit(url: string) {
  const target = new URL(url);
  return h.api.inject({
    method: 'GET',
    url: `${target.pathname}${target.search}`,
    headers: { accept: 'text/html' },
  });
}

/** A tenant of its own, active, with an owner signed in (no checkout, so no billing customer). */
const newTenant = (slug: string) => h.ownedTenant(slug);

const auditRows = (tenantId: string) =>
  h.db.db
    .selectFrom('audit_log')
    .select(['actor_id', 'result', 'details'])
    .where('tenant_id', '=', tenantId)
    .where('action', '=', 'tenant.billing.portal')
    .orderBy('id')
    .execute();

beforeAll(async () => {
  h = await createHarness();
  plans = loadPlans(PLANS_FILE);
  await syncCatalog(h.db.db, loadCatalog());
  local = new LocalBilling({ db: h.db.db, publicUrl: h.config.publicUrl });
  await subscribeLocally(h.db.db, plans, { id: h.a.id, email: h.a.owner.email }, 'starter');
}, 60_000);

afterAll(() => h?.close());

describe('local billing mode: the platform serves the portal', () => {
  it("answers a link to the tenant's own page: subscription, payments, no card, the way back", async () => {
    const res = await openPortal(h.a.owner.token);
    expect(res.statusCode, res.body).toBe(201);
    const { url } = res.json<{ url: string }>();
    expect(url).toMatch(new RegExp(`^${h.config.publicUrl}/billing/portal\\?session=[A-Za-z0-9_-]{43}$`));

    const page = await visit(url);
    expect(page.statusCode, page.body).toBe(200);
    expect(page.headers['content-type']).toMatch(/^text\/html/);
    expect(page.headers['content-security-policy']).toContain("default-src 'none'");
    expect(page.headers['referrer-policy']).toBe('no-referrer');
    const html = page.body;
    expect(html).toContain('<h1>Payment methods and invoices</h1>');
    expect(html).toContain('alpha Inc.');
    expect(html).toContain(`Billed to: ${h.a.owner.email}`);
    expect(html).toContain('Starter plan');
    expect(html).toContain('$49.00 a month');
    expect(html).toMatch(/State: <span class="badge ok">active<\/span>/);
    expect(html).toMatch(/Renews on \d{4}-\d{2}-\d{2}\. Started on \d{4}-\d{2}-\d{2}\./);
    expect(html).toContain('no card is kept, no invoice is issued and nothing is charged');
    expect(html).toContain('there is no card to add, change or remove');
    expect(html).toContain('<td>Checkout for the Starter plan</td><td>Nothing (simulated)</td>');
    expect(html).toContain(
      `<a class="button" href="http://alpha.localhost:8080/billing">Back to your workspace</a>`,
    );
    expect(html).not.toContain('<script');
    expect(html).not.toContain(h.b.owner.email);

    // The link is the credential: the database keeps only its SHA-256.
    const secret = new URL(url).searchParams.get('session')!;
    const stored = await h.db.db
      .selectFrom('local_billing_objects')
      .select(['tenant_id', 'data'])
      .where('kind', '=', 'billing_portal_session')
      .execute();
    expect(stored).toHaveLength(1);
    expect(stored[0]!.tenant_id).toBe(h.a.id);
    expect(JSON.stringify(stored[0]!.data)).not.toContain(secret);
    expect(stored[0]!.data).toMatchObject({
      object: 'billing_portal.session',
      return_url: 'http://alpha.localhost:8080/billing',
      livemode: false,
    });

    const audit = await auditRows(h.a.id);
    expect(audit.at(-1)).toMatchObject({ actor_id: h.a.owner.id, result: 'success' });
  });

  it('shows the subscription as local billing holds it now (a failed payment)', async () => {
    const sub = (
      await h.db.db
        .selectFrom('subscriptions')
        .select('stripe_subscription_id')
        .where('tenant_id', '=', h.a.id)
        .executeTakeFirstOrThrow()
    ).stripe_subscription_id!;
    await local.failPayment(sub);
    try {
      const { url } = (await openPortal(h.a.owner.token)).json<{ url: string }>();
      const html = (await visit(url)).body;
      expect(html).toMatch(/State: <span class="badge off">unpaid<\/span>/);
    } finally {
      await local.recoverPayment(sub);
    }
  });

  it('refuses a member (403), another tenant (404), an API key and an operator (403)', async () => {
    const member = await openPortal(h.a.member.token);
    expect(member.statusCode, member.body).toBe(403);

    const other = await openPortal(h.b.owner.token);
    expect(other.statusCode, other.body).toBe(404);
    expect(other.body).not.toContain('alpha Inc.');
    expect(other.body).not.toContain('/billing/portal?session=');

    const key = await h.api.inject({
      method: 'POST',
      url: `/api/v1/tenants/${h.a.slug}/api-keys`,
      headers: h.bearer(h.a.owner.token),
      payload: { name: 'billing integration', role: 'tenant_owner' },
    });
    expect(key.statusCode, key.body).toBe(201);
    const byKey = await openPortal(key.json<{ key: string }>().key);
    expect(byKey.statusCode, byKey.body).toBe(403);
    expect(byKey.json<ErrorBody>().error.message).toMatch(
      /signed-in owner of the workspace, not with an API key/,
    );

    const admin = await openPortal(h.admin.token);
    expect(admin.statusCode, admin.body).toBe(403);

    // Each refusal is audited with who asked; none made a session.
    const audit = await auditRows(h.a.id);
    expect(audit.some((a) => a.actor_id === h.a.member.id && a.result !== 'success')).toBe(true);
    expect(audit.some((a) => a.actor_id === h.admin.id && a.result !== 'success')).toBe(true);
    const sessions = await h.db.db
      .selectFrom('local_billing_objects')
      .select('id')
      .where('kind', '=', 'billing_portal_session')
      .execute();
    expect(sessions).toHaveLength(2);
  });

  it('a tenant without a billing customer gets a 409 in words', async () => {
    const res = await openPortal(h.b.owner.token, h.b.slug);
    expect(res.statusCode, res.body).toBe(409);
    expect(res.json<ErrorBody>().error.message).toBe(
      'bravo has no billing customer yet, so there are no payment methods or invoices to show; it gets one when its checkout is paid',
    );
  });

  it("one tenant's link opens that tenant only; a changed, malformed or expired link opens nothing", async () => {
    await subscribeLocally(h.db.db, plans, { id: h.b.id, email: h.b.owner.email }, 'business');
    const aLink = (await openPortal(h.a.owner.token)).json<{ url: string }>().url;
    const bRes = await openPortal(h.b.owner.token, h.b.slug);
    expect(bRes.statusCode, bRes.body).toBe(201);
    const bLink = bRes.json<{ url: string }>().url;
    const bPage = (await visit(bLink)).body;
    expect(bPage).toContain('bravo Inc.');
    expect(bPage).toContain(`Billed to: ${h.b.owner.email}`);
    expect(bPage).toContain('Business plan');
    expect(bPage).toContain('href="http://bravo.localhost:8080/billing"');
    expect(bPage).not.toContain(h.a.owner.email);
    expect(bPage).not.toContain('alpha');

    // One character changed: nothing (a page in words, nothing of either tenant).
    const secret = new URL(aLink).searchParams.get('session')!;
    const changed = `${secret.slice(0, -1)}${secret.endsWith('A') ? 'B' : 'A'}`;
    const forged = await visit(`${h.config.publicUrl}/billing/portal?session=${changed}`);
    expect(forged.statusCode).toBe(404);
    expect(forged.body).toContain('This link opens nothing.');
    expect(forged.body).not.toContain('alpha');
    const malformed = await visit(`${h.config.publicUrl}/billing/portal?session=x`);
    expect(malformed.statusCode).toBe(400);
    expect((await visit(`${h.config.publicUrl}/billing/portal`)).statusCode).toBe(400);

    // Past its time the link opens nothing of the tenant, and says what to do.
    await h.db.db
      .updateTable('local_billing_objects')
      .set({ data: sql`jsonb_set(data, '{expires_at}', to_jsonb(extract(epoch from now())::bigint - 1))` })
      .where('kind', '=', 'billing_portal_session')
      .where('tenant_id', '=', h.a.id)
      .execute();
    const expired = await visit(aLink);
    expect(expired.statusCode).toBe(410);
    expect(expired.body).toContain(
      'This link has expired. Open Payment methods and invoices again from your workspace&#39;s Billing page.',
    );
    expect(expired.body).not.toContain(h.a.owner.email);
    expect(expired.body).not.toContain('Starter');
    // A new link works, and the expired sessions are gone with its making.
    const fresh = (await openPortal(h.a.owner.token)).json<{ url: string }>().url;
    expect((await visit(fresh)).statusCode).toBe(200);
    const left = await h.db.db
      .selectFrom('local_billing_objects')
      .select('id')
      .where('kind', '=', 'billing_portal_session')
      .where('tenant_id', '=', h.a.id)
      .execute();
    expect(left).toHaveLength(1);
  });
});

describe('Stripe mode: a Customer Portal session (a stand-in enforcing the API contract)', () => {
  let stripe: StripeApiStandIn;
  let api: ApiServer;
  let stripeOpen = true;

  beforeAll(async () => {
    const stripePlans = plans.map((p) => ({ ...p, stripe_price_id: `price_1${p.key}Monthly` }));
    stripe = await startStripeApi(['cus_tenantc'], { prices: stripePlans.map((p) => p.stripe_price_id) });
    const prices = new Map(stripePlans.map((p) => [p.key, p.stripe_price_id]));
    const billing = new StripeBilling({
      secretKey: 'sk_test_aiqso',
      priceFor: (k) => prices.get(k),
      endpoint: stripe.endpoint,
    });
    api = await buildApi({
      config: h.config,
      log: createLogger('silent'),
      database: { ...h.db, mode: 'external' },
      metrics: createMetrics(),
      billing: { port: billing, webhookSecret: 'whsec_portal_test' },
      plans: stripePlans,
      identity: { rateLimitNamespace: `aiqso-test-${h.db.name}-stripe` },
    });
    await api.ready();
    // Tenant B, signed up through Stripe Checkout: its customer as Stripe holds it.
    await h.db.db
      .updateTable('tenants')
      .set({ stripe_customer_id: 'cus_tenantc' })
      .where('id', '=', h.b.id)
      .execute();
  }, 60_000);

  afterAll(async () => {
    await api?.close();
    if (stripeOpen) await stripe?.close();
  });

  it("answers the session's URL; Stripe saw the customer and the Billing page to return to", async () => {
    const before = stripe.requests.length;
    const res = await openPortal(h.b.owner.token, h.b.slug, api);
    expect(res.statusCode, res.body).toBe(201);
    const calls = stripe.requests.slice(before);
    expect(calls.map((c) => `${c.method} ${c.path}`)).toEqual(['POST /v1/billing_portal/sessions']);
    expect(Object.fromEntries(calls[0]!.form)).toEqual({
      customer: 'cus_tenantc',
      return_url: 'http://bravo.localhost:8080/billing',
    });
    const session = stripe.portalSessions.at(-1)!;
    expect(session).toMatchObject({
      object: 'billing_portal.session',
      customer: 'cus_tenantc',
      return_url: 'http://bravo.localhost:8080/billing',
      livemode: false,
    });
    expect(res.json()).toEqual({ url: session.url });
    expect(session.url).toMatch(/^https:\/\/billing\.stripe\.com\/p\/session\/test_/);
    const audit = await auditRows(h.b.id);
    expect(audit.at(-1)).toMatchObject({ actor_id: h.b.owner.id, result: 'success' });
  });

  it('a tenant without a customer is a 409, and Stripe is not called', async () => {
    const c = await newTenant(`portal${Date.now() % 100000}`);
    const before = stripe.requests.length;
    const res = await openPortal(c.token, c.slug, api);
    expect(res.statusCode, res.body).toBe(409);
    expect(res.json<ErrorBody>().error.message).toMatch(/has no billing customer yet/);
    expect(stripe.requests.length).toBe(before);
  });

  it("Stripe refusing is a 502 in Stripe's words, never a stack", async () => {
    // Tenant A's customer is local billing's, which this Stripe account does not know.
    const unknown = await openPortal(h.a.owner.token, h.a.slug, api);
    expect(unknown.statusCode, unknown.body).toBe(502);
    const message = unknown.json<ErrorBody>().error.message;
    expect(message).toMatch(/^Stripe: could not open the customer portal: No such customer: 'cus_local/);
    expect(unknown.body).not.toMatch(/\bat .*\.(ts|js):\d+/);

    stripe.portalConfigured = false;
    try {
      const unsaved = await openPortal(h.b.owner.token, h.b.slug, api);
      expect(unsaved.statusCode, unsaved.body).toBe(502);
      expect(unsaved.json<ErrorBody>().error.message).toContain(
        'Stripe: could not open the customer portal: You can’t create a portal session in test mode until you save your customer portal settings',
      );
    } finally {
      stripe.portalConfigured = true;
    }
  });

  it('the stand-in refuses what Stripe refuses', async () => {
    const post = (form: Record<string, string>, key = 'sk_test_aiqso') =>
      fetch(`http://${stripe.endpoint.host}:${stripe.endpoint.port}/v1/billing_portal/sessions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams(form).toString(),
      }).then(async (r) => ({ status: r.status, body: (await r.json()) as ErrorBody }));
    const url = 'https://bravo.example.com/billing';
    expect((await post({ customer: 'cus_tenantc', return_url: url }, 'pk_test_x')).status).toBe(401);
    const noCustomer = await post({ return_url: url });
    expect(noCustomer.body.error.message).toBe('Missing required param: customer.');
    const stranger = await post({ customer: 'cus_nobody', return_url: url });
    expect(stranger.body.error.message).toBe("No such customer: 'cus_nobody'");
    const badUrl = await post({ customer: 'cus_tenantc', return_url: 'not a url' });
    expect(badUrl.status).toBe(400);
    expect(badUrl.body.error.message).toBe('Not a valid URL');
    const unknownParam = await post({ customer: 'cus_tenantc', return_url: url, tenant: 'bravo' });
    expect(unknownParam.body.error.message).toBe('Received unknown parameter: tenant');
    const json = await fetch(
      `http://${stripe.endpoint.host}:${stripe.endpoint.port}/v1/billing_portal/sessions`,
      {
        method: 'POST',
        headers: { authorization: 'Bearer sk_test_aiqso', 'content-type': 'application/json' },
        body: JSON.stringify({ customer: 'cus_tenantc', return_url: url }),
      },
    );
    expect(json.status).toBe(400);
    const ok = await post({ customer: 'cus_tenantc', return_url: url, locale: 'auto' });
    expect(ok.status).toBe(200);
  });

  it('a Stripe outage, and Stripe out of reach, are 502s in words', async () => {
    stripe.failNext(10);
    const outage = await openPortal(h.b.owner.token, h.b.slug, api);
    stripe.failNext(0);
    expect(outage.statusCode, outage.body).toBe(502);
    expect(outage.json<ErrorBody>().error.message).toMatch(/^Stripe: could not open the customer portal: /);

    await stripe.close();
    stripeOpen = false;
    const gone = await openPortal(h.b.owner.token, h.b.slug, api);
    expect(gone.statusCode, gone.body).toBe(502);
    expect(gone.json<ErrorBody>().error.message).toMatch(
      /^Stripe: could not open the customer portal: An error occurred with our connection to Stripe/,
    );
    // What it says is for people: no stack, no internals.
    expect(gone.body).not.toMatch(/\bat .*\.(ts|js):\d+/);
  });
});
