import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { ApiServer } from '../src/api/server.ts';
import type { LocalBilling } from '../src/billing/local.ts';
import { newId } from '../src/core/ids.ts';
import type { Runner } from 'graphile-worker';
import { testApi } from './support/api.ts';
import { startBillingWorker } from './support/billing-worker.ts';
import { countRows, createTestDatabase, type TestDatabase } from './support/db.ts';
import { checkoutCompleted, invoiceEvent, shuffle, signed, subscriptionEvent } from './support/stripe.ts';

let testDb: TestDatabase;
let api: ApiServer;
let local: LocalBilling;
let secret: string;
let tenantId: string;
let worker: Runner;

beforeAll(async () => {
  testDb = await createTestDatabase();
  const built = await testApi(testDb);
  api = built.api;
  local = built.billing.local!;
  secret = built.billing.webhookSecret;
  worker = await startBillingWorker(built.config, testDb);
});
afterAll(async () => {
  await worker.stop();
  await api.close();
  await testDb.drop();
});
beforeEach(async () => {
  tenantId = newId('tenant');
  const slug = `t${tenantId.slice(-10)}`;
  await testDb.pool.query('INSERT INTO tenants (id, slug, company) VALUES ($1, $2, $3)', [
    tenantId,
    slug,
    'Acme',
  ]);
});

async function tenant() {
  const { rows } = await testDb.pool.query<{
    status: string;
    status_reason: string | null;
    purge_after: Date | null;
  }>('SELECT status, status_reason, purge_after FROM tenants WHERE id = $1', [tenantId]);
  return rows[0]!;
}

/** Wait until every stored event has been processed (a worker processes them after the webhook answers). */
async function settled() {
  for (let i = 0; i < 200; i++) {
    if ((await countRows(testDb, 'SELECT 1 FROM inbox WHERE processed_at IS NULL')) === 0) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error('events were not processed');
}

async function deliver(events: object[]) {
  for (const event of events) {
    const res = await api.inject(signed(event, secret));
    expect(res.statusCode).toBe(200);
  }
  await settled();
}

/** Pay a local checkout for the current tenant and mark it active; returns its subscription id. */
async function paidActiveTenant(): Promise<string> {
  const session = await local.createCheckout({
    tenantId,
    customerEmail: 'o@a.test',
    plan: 'starter',
    successUrl: 'http://l/',
    cancelUrl: 'http://l/',
  });
  await local.pay(session.id);
  await settled();
  await testDb.pool.query("UPDATE tenants SET status = 'active' WHERE id = $1", [tenantId]);
  return (await local.session(session.id))!.subscription!;
}

describe('Stripe events, delivered at least once and in any order', () => {
  it('local billing checkout → Pay moves the tenant to provisioning through the same inbox', async () => {
    const session = await local.createCheckout({
      tenantId,
      customerEmail: 'owner@acme.test',
      plan: 'starter',
      successUrl: 'http://localhost/welcome',
      cancelUrl: 'http://localhost/cancel',
    });
    const page = await api.inject({ url: new URL(session.url).pathname });
    expect(page.statusCode).toBe(200);
    expect(page.body).toContain('<button type="submit">Pay</button>');
    const paid = await api.inject({ method: 'POST', url: `${new URL(session.url).pathname}/pay` });
    expect(paid.statusCode).toBe(303);
    expect(paid.headers.location).toBe('http://localhost/welcome');
    await settled();
    expect((await tenant()).status).toBe('provisioning');
    const subs = await testDb.pool.query('SELECT status FROM subscriptions WHERE tenant_id = $1', [tenantId]);
    expect(subs.rows).toEqual([{ status: 'active' }]);
    // Paying again sends nothing new.
    const before = await countRows(testDb, 'SELECT 1 FROM inbox');
    await api.inject({ method: 'POST', url: `${new URL(session.url).pathname}/pay` });
    expect(await countRows(testDb, 'SELECT 1 FROM inbox')).toBe(before);
  });

  it('the same events twice, shuffled, give one transition and one subscription', async () => {
    const sub = `sub_local${tenantId.slice(-26)}`;
    const customer = `cus_local${tenantId.slice(-26)}`;
    const events = [
      checkoutCompleted(tenantId, sub, customer),
      subscriptionEvent('created', { id: sub, customer, status: 'active', tenantId }),
      invoiceEvent('paid', sub),
    ];
    await deliver(shuffle([...events, ...events]));
    expect((await tenant()).status).toBe('provisioning');
    expect(await countRows(testDb, 'SELECT 1 FROM subscriptions WHERE tenant_id = $1', [tenantId])).toBe(1);
    const ids = events.map((e) => e.id);
    expect(await countRows(testDb, 'SELECT 1 FROM inbox WHERE id = ANY($1)', [ids])).toBe(3);
  });

  it('payment failure suspends after dunning, payment reactivates', async () => {
    const subId = await paidActiveTenant();

    // An early failed attempt that Stripe will retry changes nothing.
    await deliver([
      invoiceEvent('payment_failed', subId, {
        attempt_count: 1,
        next_payment_attempt: Math.floor(Date.now() / 1000) + 86_400,
      }),
    ]);
    expect((await tenant()).status).toBe('active');

    await local.failPayment(subId);
    await settled();
    expect(await tenant()).toMatchObject({ status: 'suspended', status_reason: 'payment_failed' });

    await local.recoverPayment(subId);
    await settled();
    expect(await tenant()).toMatchObject({ status: 'active', status_reason: null });
  });

  it('a stale "active" update arriving after cancellation leaves the tenant cancelled', async () => {
    const subId = await paidActiveTenant();
    const stale = subscriptionEvent(
      'updated',
      { id: subId, customer: 'cus_x', status: 'active', tenantId },
      Math.floor(Date.now() / 1000) - 60,
    );

    await local.cancelSubscription(subId);
    await settled();
    const cancelled = await tenant();
    expect(cancelled.status).toBe('cancelled');
    expect(cancelled.purge_after!.getTime()).toBeGreaterThan(Date.now() + 89 * 86_400_000);

    await deliver([stale]);
    expect((await tenant()).status).toBe('cancelled');
  });

  it('payment does not lift a suspension an operator made', async () => {
    const sub = `sub_local${tenantId.slice(-26)}`;
    await deliver([checkoutCompleted(tenantId, sub)]);
    await testDb.pool.query(
      "UPDATE tenants SET status = 'suspended', status_reason = 'abuse report' WHERE id = $1",
      [tenantId],
    );
    await deliver([invoiceEvent('paid', sub)]);
    expect(await tenant()).toMatchObject({ status: 'suspended', status_reason: 'abuse report' });
  });
});
