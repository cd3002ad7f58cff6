import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalBilling } from '../src/billing/local.ts';
import { meterEventHandler } from '../src/billing/meter-events.ts';
import { StripeBilling } from '../src/billing/stripe.ts';
import { loadPlans } from '../src/catalog/plans.ts';
import { createLogger } from '../src/observability/logger.ts';
import type { OutboxItem } from '../src/orchestrator/outbox.ts';
import { finalHour, queueMeterEvents } from '../src/usage/meters.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import { startStripeApi, type StripeApiStandIn } from './support/stripe-api.ts';

/**
 * Metered billing: a plan that prices requests and mails reports each final
 * hour to Stripe as Billing meter events (`POST /v1/billing/meter_events`)
 * through the outbox, with the right customer, meter, value and an
 * identifier that stays the same when the hour is sent again. Checked against
 * a stand-in that enforces Stripe's contract (see support/stripe-api.ts).
 */
const log = createLogger('silent');
let db: TestDatabase;
let dir: string;
let stripe: StripeApiStandIn;
let plans: ReturnType<typeof loadPlans>;
// An hour inside Stripe's 35-day window.
const HOUR = new Date(Math.floor(Date.now() / 3_600_000) * 3_600_000 - 5 * 3_600_000);
const TENANTS = { metered: 'ten_meteredaaaaaaaaaaaaaaaaa', flat: 'ten_flatbbbbbbbbbbbbbbbbbbbbb' };

async function tenant(id: string, slug: string, plan: string, customer: string | null) {
  await db.db
    .insertInto('tenants')
    .values({ id, slug, company: slug, plan, status: 'active', stripe_customer_id: customer })
    .execute();
}

async function put(
  tenantId: string,
  metric: 'requests' | 'mails_sent' | 'cpu_seconds',
  value: number | null,
) {
  await db.db
    .insertInto('usage_metrics')
    .values({ tenant_id: tenantId, tenant_service_id: null, metric, period_start: HOUR, value })
    .execute();
}

async function outbox(): Promise<(OutboxItem & { id: string })[]> {
  const rows = await db.db
    .selectFrom('outbox')
    .select(['id', 'key', 'kind', 'payload'])
    .where('kind', '=', 'stripe')
    .orderBy('key')
    .execute();
  return rows;
}

beforeAll(async () => {
  db = await createTestDatabase();
  dir = await mkdtemp(path.join(os.tmpdir(), 'aiqso-meters-'));
  const file = path.join(dir, 'plans.yaml');
  await writeFile(
    file,
    [
      'plans:',
      '  - { key: metered, name: Metered, monthly_cents: 1900, services: 2, stripe_price_id: price_m,',
      '      meters: { requests: aiqso_requests, mails_sent: aiqso_mails } }',
      '  - { key: flat, name: Flat, monthly_cents: 4900, services: 2, stripe_price_id: price_f }',
    ].join('\n'),
  );
  plans = loadPlans(file);
  stripe = await startStripeApi(['cus_metered', 'cus_flat']);
  await tenant(TENANTS.metered, 'metered', 'metered', 'cus_metered');
  await tenant(TENANTS.flat, 'flat', 'flat', 'cus_flat');
  await put(TENANTS.metered, 'requests', 150);
  await put(TENANTS.metered, 'mails_sent', 3);
  await put(TENANTS.metered, 'cpu_seconds', 40); // Not a metered amount on any plan.
  await put(TENANTS.flat, 'requests', 999);
}, 60_000);

afterAll(async () => {
  await stripe?.close();
  await db?.drop();
  await rm(dir, { recursive: true, force: true });
});

describe('Stripe meter events', () => {
  it('a plan names its meters by event name; anything else in `meters` is refused at load', async () => {
    expect(plans[0]!.meters).toEqual({ requests: 'aiqso_requests', mails_sent: 'aiqso_mails' });
    const bad = path.join(dir, 'bad.yaml');
    await writeFile(
      bad,
      'plans:\n  - { key: x, name: X, monthly_cents: 1, services: 1, stripe_price_id: null, meters: { cpu: m } }\n',
    );
    expect(() => loadPlans(bad)).toThrow(/plans\.0\.meters: Unrecognized key: "cpu"/);
  });

  it('reports the hour two hours before the pass, once its edge counts are final', () => {
    expect(finalHour(new Date('2031-05-01T14:00:00Z'))).toEqual(new Date('2031-05-01T12:00:00Z'));
  });

  it('queues one event per metered amount of a paying tenant on a metered plan, once', async () => {
    expect(await queueMeterEvents({ db: db.db, plans, log }, HOUR)).toBe(2);
    expect(await queueMeterEvents({ db: db.db, plans, log }, HOUR)).toBe(0);
    const items = await outbox();
    const id = (metric: string) => `aiqso:${TENANTS.metered}:${metric}:${HOUR.toISOString()}`;
    expect(items.map((i) => i.payload)).toEqual([
      {
        type: 'meter_event',
        eventName: 'aiqso_mails',
        customerId: 'cus_metered',
        value: 3,
        identifier: id('mails_sent'),
        timestamp: HOUR.toISOString(),
      },
      {
        type: 'meter_event',
        eventName: 'aiqso_requests',
        customerId: 'cus_metered',
        value: 150,
        identifier: id('requests'),
        timestamp: HOUR.toISOString(),
      },
    ]);
  });

  it('sends them to Stripe with the customer, meter, value and identifier; a resend counts nothing twice', async () => {
    const billing = new StripeBilling({
      secretKey: 'sk_test_aiqso',
      priceFor: () => undefined,
      endpoint: stripe.endpoint,
    });
    const deliver = meterEventHandler(billing);
    const items = await outbox();
    await db.db.transaction().execute(async (trx) => {
      for (const item of items) await deliver(item, trx);
    });
    const at = Math.floor(HOUR.getTime() / 1000);
    expect(stripe.events).toEqual([
      {
        event_name: 'aiqso_mails',
        identifier: `aiqso:${TENANTS.metered}:mails_sent:${HOUR.toISOString()}`,
        timestamp: at,
        payload: { stripe_customer_id: 'cus_metered', value: '3' },
      },
      {
        event_name: 'aiqso_requests',
        identifier: `aiqso:${TENANTS.metered}:requests:${HOUR.toISOString()}`,
        timestamp: at,
        payload: { stripe_customer_id: 'cus_metered', value: '150' },
      },
    ]);
    // A worker killed after Stripe took the event and before the outbox marked it delivered sends it
    // again, through a Stripe outage (the library retries with the same idempotency key).
    stripe.failNext(1);
    await db.db.transaction().execute(async (trx) => deliver(items[1]!, trx));
    expect(stripe.events).toHaveLength(2);
  });

  it('says what Stripe refused; local mode checks the customer and sends nothing', async () => {
    const billing = new StripeBilling({
      secretKey: 'sk_test_aiqso',
      priceFor: () => undefined,
      endpoint: stripe.endpoint,
    });
    const event = {
      eventName: 'aiqso_requests',
      customerId: 'cus_unknown',
      value: 5,
      identifier: 'aiqso:test:unknown-customer',
      timestamp: HOUR,
    };
    await expect(billing.recordMeterEvent(event)).rejects.toThrow(
      /Stripe: could not record the meter event aiqso:test:unknown-customer: No such customer: 'cus_unknown'/,
    );
    const deliver = meterEventHandler(billing);
    await expect(
      db.db
        .transaction()
        .execute(async (trx) =>
          deliver({ key: 'meter:bad', kind: 'stripe', payload: { type: 'meter_event', value: 1.5 } }, trx),
        ),
    ).rejects.toThrow(/payload\.value must be a positive whole number/);

    const local = new LocalBilling({ db: db.db, publicUrl: 'http://localhost' });
    await expect(local.recordMeterEvent(event)).rejects.toThrow(/no customer cus_unknown/);
  });
});
