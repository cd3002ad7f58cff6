import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import Stripe from 'stripe';
import type { ErrorBody } from '../src/api/errors.ts';
import { signPayload } from '../src/billing/stripe-objects.ts';
import type { ApiServer } from '../src/api/server.ts';
import { testApi } from './support/api.ts';
import { countRows, createTestDatabase, type TestDatabase } from './support/db.ts';
import { checkoutCompleted, signed } from './support/stripe.ts';

let testDb: TestDatabase;
let api: ApiServer;
let secret: string;
const TENANT = 'ten_01jdwebhook00000000000000aa';

beforeAll(async () => {
  testDb = await createTestDatabase();
  const built = await testApi(testDb);
  api = built.api;
  secret = built.billing.webhookSecret;
  await testDb.pool.query("INSERT INTO tenants (id, slug, company) VALUES ($1, 'webhook', 'Webhook Ltd')", [
    TENANT,
  ]);
});
afterAll(async () => {
  await api.close();
  await testDb.drop();
});

const inboxCount = () => countRows(testDb, 'SELECT 1 FROM inbox');
const errorOf = (res: { json: <T>() => T }) => res.json<ErrorBody>().error;

describe('POST /webhooks/stripe', () => {
  it('stores a signed event once and answers a redelivery as a duplicate', async () => {
    const event = checkoutCompleted(TENANT, 'sub_localtest1');
    const first = await api.inject(signed(event, secret));
    expect(first.statusCode).toBe(200);
    expect(first.json()).toEqual({ received: true, duplicate: false });
    const again = await api.inject(signed(event, secret));
    expect(again.json()).toEqual({ received: true, duplicate: true });
    const { rows } = await testDb.pool.query('SELECT id, type FROM inbox WHERE id = $1', [event.id]);
    expect(rows).toEqual([{ id: event.id, type: 'checkout.session.completed' }]);
    // Stored with the one job that processes it; this process (an API, an edge) processes nothing itself.
    const jobs = await testDb.pool.query(
      'SELECT task_identifier, attempts FROM graphile_worker.jobs WHERE key = $1',
      [`inbox:${event.id}`],
    );
    expect(jobs.rows).toEqual([{ task_identifier: 'inbox', attempts: 0 }]);
    await new Promise((r) => setTimeout(r, 300));
    expect(
      await countRows(testDb, 'SELECT 1 FROM inbox WHERE id = $1 AND processed_at IS NULL', [event.id]),
    ).toBe(1);
  });

  it('accepts a signature a little ahead of this clock (within the tolerance)', async () => {
    const event = checkoutCompleted(TENANT, 'sub_localahead');
    const res = await api.inject(signed(event, secret, Math.floor(Date.now() / 1000) + 200));
    expect(res.json()).toEqual({ received: true, duplicate: false });
  });

  it.each([
    [
      'a signature made with another secret',
      () => signed(checkoutCompleted(TENANT, 'sub_x'), 'whsec_wrong'),
      /does not match/,
    ],
    [
      'a stale signature (301 s old)',
      () => signed(checkoutCompleted(TENANT, 'sub_x'), secret, Math.floor(Date.now() / 1000) - 301),
      /tolerance/,
    ],
    [
      'a tampered payload',
      () => {
        const req = signed(checkoutCompleted(TENANT, 'sub_x'), secret);
        return { ...req, payload: req.payload.replace(TENANT, 'ten_01jdother000000000000000aa') };
      },
      /does not match/,
    ],
    [
      'no signature header',
      () => ({
        ...signed(checkoutCompleted(TENANT, 'sub_x'), secret),
        headers: { 'content-type': 'application/json' },
      }),
      /missing Stripe-Signature/,
    ],
    [
      'a garbage signature header',
      () => {
        const req = signed(checkoutCompleted(TENANT, 'sub_x'), secret);
        return { ...req, headers: { ...req.headers, 'stripe-signature': 'nonsense' } };
      },
      /malformed|does not match/,
    ],
    ['a signed body that is not JSON', () => ({ ...signed({}, secret), payload: '{not json' }), /.+/],
    [
      'a checkout event without a tenant reference',
      () => {
        const event = checkoutCompleted(TENANT, 'sub_x') as { data: { object: Record<string, unknown> } };
        event.data.object.client_reference_id = null;
        return signed(event, secret);
      },
      /malformed event: checkout.session.completed: client_reference_id/,
    ],
    [
      'an object that is not an event',
      () => signed({ id: 'cus_123', object: 'customer' }, secret),
      /not a Stripe event|no id/,
    ],
    [
      'a signature dated 301 s in the future',
      () => signed(checkoutCompleted(TENANT, 'sub_x'), secret, Math.floor(Date.now() / 1000) + 301),
      /^Stripe-Signature timestamp is more than 300 s in the future/,
    ],
    [
      'a signature dated days in the future',
      () => signed(checkoutCompleted(TENANT, 'sub_x'), secret, Math.floor(Date.now() / 1000) + 3 * 86_400),
      /in the future/,
    ],
    [
      'a signed body nested 20,000 levels deep',
      () => {
        const event = checkoutCompleted(TENANT, 'sub_x');
        const payload = JSON.stringify(event).replace(
          '"livemode":false',
          `"livemode":false,"deep":${'['.repeat(20_000)}${']'.repeat(20_000)}`,
        );
        const { signature } = signPayload(payload, secret);
        return {
          ...signed(event, secret),
          payload,
          headers: { ...signed(event, secret).headers, 'stripe-signature': signature },
        };
      },
      /^event body is nested deeper than 64 levels$/,
    ],
    [
      'a NUL in a string of a signed event',
      () => {
        const event = checkoutCompleted(TENANT, 'sub_x') as { data: { object: Record<string, unknown> } };
        event.data.object.customer_email = 'a\u0000@example.com';
        return signed(event, secret);
      },
      /^event\.data\.object\.customer_email: contains the control character U\+0000$/,
    ],
  ])('refuses %s with a 400 and stores nothing', async (_label, request, message) => {
    const before = await inboxCount();
    const res = await api.inject(request());
    expect(res.statusCode).toBe(400);
    expect(errorOf(res).message).toMatch(message);
    expect(await inboxCount()).toBe(before);
  });

  it('refuses a non-JSON content type with 415', async () => {
    const res = await api.inject({
      ...signed(checkoutCompleted(TENANT, 'sub_x'), secret),
      headers: { 'content-type': 'text/plain' },
    });
    expect(res.statusCode).toBe(415);
  });
});

describe('signPayload (how tests and tools sign events as Stripe does)', () => {
  it('makes the header the Stripe SDK makes, which the SDK verifies', () => {
    const payload = JSON.stringify(checkoutCompleted(TENANT, 'sub_sig'));
    const timestamp = 1_764_000_000;
    const ours = signPayload(payload, 'whsec_test_secret', timestamp);
    expect(ours.signature).toBe(
      Stripe.webhooks.generateTestHeaderString({ payload, secret: 'whsec_test_secret', timestamp }),
    );
    const now = signPayload(payload, 'whsec_test_secret');
    expect(Stripe.webhooks.constructEvent(payload, now.signature, 'whsec_test_secret')).toMatchObject({
      type: 'checkout.session.completed',
    });
    expect(() => Stripe.webhooks.constructEvent(payload, now.signature, 'whsec_other')).toThrow(
      /No signatures found/,
    );
  });
});
