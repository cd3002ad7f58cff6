import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { localId, signPayload } from '../src/billing/stripe-objects.ts';
import { loadConfig } from '../src/config/load.ts';
import { DASHBOARD_REQUEST_MB } from '../src/services/hosts.ts';
import { countRows, createTestDatabase, type TestDatabase } from './support/db.ts';
import { driverCases, pollUntil, startLivePlatform, type LivePlatform } from './support/live-platform.ts';
import { startSmtpSink, type SmtpSink } from './support/smtp.ts';
import { checkoutCompleted, invoiceEvent, shuffle, subscriptionEvent } from './support/stripe.ts';

// Stripe delivers at least once and in any order; attackers send what they like. Whatever
// arrives, one paid signup gives one tenant, one container and one welcome email.
let smtp: SmtpSink;
let testDb: TestDatabase;
let platform: LivePlatform;
const processDriver = driverCases().find((d) => d.name === 'process')!;

beforeAll(async () => {
  smtp = await startSmtpSink();
  testDb = await createTestDatabase();
  platform = await startLivePlatform({
    databaseUrl: testDb.url,
    driver: processDriver,
    env: { SMTP_URL: `smtp://127.0.0.1:${smtp.port}` },
  });
}, 180_000);
afterAll(async () => {
  await platform?.stop(testDb.db);
  await testDb.drop();
  await smtp.close();
}, 120_000);

/** No reconcile, outbox or inbox work left to do. */
async function quiet(): Promise<void> {
  for (let i = 0; i < 600; i++) {
    const pending =
      (await countRows(testDb, 'SELECT 1 FROM inbox WHERE processed_at IS NULL')) +
      (await countRows(testDb, "SELECT 1 FROM outbox WHERE status = 'pending'")) +
      (await countRows(testDb, 'SELECT 1 FROM graphile_worker._private_jobs WHERE run_at <= now()'));
    if (pending === 0) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('the platform did not settle');
}

describe(
  'duplicated, shuffled, forged and stale Stripe events (process driver)',
  { timeout: 240_000 },
  () => {
    it('give one tenant, one container, one welcome email, and 4xx for the bad ones', async () => {
      const signup = await platform.signup({
        company: 'Initrode',
        slug: 'initrode',
        email: 'owner@initrode.test',
      });
      expect(signup.status).toBe(201);
      const tenant = await testDb.db
        .selectFrom('tenants')
        .select('id')
        .where('slug', '=', 'initrode')
        .executeTakeFirstOrThrow();
      const sub = localId('sub');
      const customer = localId('cus');
      const events = [
        checkoutCompleted(tenant.id, sub, customer),
        subscriptionEvent('created', { id: sub, customer, status: 'active', tenantId: tenant.id }),
        invoiceEvent('paid', sub),
      ];

      // The bad ones first: none may be stored or acted on.
      const forged = await platform.sendEvent(events[0]!, { secret: 'whsec_not_the_platforms_secret' });
      const stale = await platform.sendEvent(events[0]!, { timestamp: Math.floor(Date.now() / 1000) - 600 });
      const garbled = signPayload('{"id": "evt_1", "type": ', platform.webhookSecret);
      const malformed = await fetch(`http://127.0.0.1:${platform.port}/webhooks/stripe`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'stripe-signature': garbled.signature },
        body: garbled.payload,
      });
      const unsigned = await fetch(`http://127.0.0.1:${platform.port}/webhooks/stripe`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(events[0]),
      });
      expect([forged, stale, malformed.status, unsigned.status]).toEqual([400, 400, 400, 400]);
      expect(await countRows(testDb, 'SELECT 1 FROM inbox')).toBe(0);
      expect((await platform.page('initrode')).status).toBe(404);

      // Every event twice, shuffled, all at once.
      const answers = await Promise.all(shuffle([...events, ...events]).map((e) => platform.sendEvent(e)));
      expect(answers).toEqual([200, 200, 200, 200, 200, 200]);

      const live = await platform.until('initrode', (p) => p.status === 200, 120_000);
      expect(live.body).toContain('<h1>Initrode</h1>');
      expect(await smtp.to('owner@initrode.test')).toHaveLength(1);

      // Redeliveries after the tenant is live change nothing either.
      for (const event of events) expect(await platform.sendEvent(event)).toBe(200);
      await quiet();
      expect(await countRows(testDb, 'SELECT 1 FROM tenants')).toBe(1);
      expect(await countRows(testDb, 'SELECT 1 FROM subscriptions')).toBe(1);
      expect(await countRows(testDb, 'SELECT 1 FROM inbox')).toBe(3);
      expect(await countRows(testDb, "SELECT 1 FROM outbox WHERE key LIKE 'welcome:%'")).toBe(1);
      const compute = await processDriver.open(platform.dataDir, testDb.db);
      const containers = await compute.list();
      await compute.close();
      expect(containers.map((c) => [c.name.endsWith('-dashboard'), c.state])).toEqual([[true, 'running']]);
      expect(smtp.received.filter((m) => m.to.includes('owner@initrode.test'))).toHaveLength(1);
      const status = await testDb.db
        .selectFrom('tenants')
        .select('status')
        .where('id', '=', tenant.id)
        .executeTakeFirstOrThrow();
      expect(status.status).toBe('active');
    });
  },
);

describe('a paid tenant on a full host (process driver)', { timeout: 180_000 }, () => {
  it('waits at placement with the reason, creates no container, and is placed once the host has room', async () => {
    const host = await testDb.db
      .selectFrom('hosts')
      .select(['id', 'name', 'memory_mb'])
      .executeTakeFirstOrThrow();
    // Room for what runs already (one dashboard's request) and 16 MB, on top of the host's reserve.
    const { reserveMb } = loadConfig(platform.env).hostCapacity;
    await testDb.db
      .updateTable('hosts')
      .set({ memory_mb: reserveMb + DASHBOARD_REQUEST_MB + 16 })
      .where('id', '=', host.id)
      .execute();
    let restored = false;
    try {
      expect(
        (await platform.signup({ company: 'Hooli', slug: 'hooli', email: 'owner@hooli.test' })).status,
      ).toBe(201);
      const tenant = await testDb.db
        .selectFrom('tenants')
        .select('id')
        .where('slug', '=', 'hooli')
        .executeTakeFirstOrThrow();
      expect(await platform.sendEvent(checkoutCompleted(tenant.id, localId('sub'), localId('cus')))).toBe(
        200,
      );
      const step = await pollUntil(
        async () => {
          const r = await testDb.db
            .selectFrom('resources')
            .select('steps')
            .where('id', '=', tenant.id)
            .executeTakeFirst();
          return r?.steps.find((s) => s.name === 'placement');
        },
        (s) => s?.state === 'waiting',
        60_000,
      );
      expect(step?.waitingFor).toBe(
        `capacity: host ${host.name} has 16 MB of memory free; the dashboard needs ${DASHBOARD_REQUEST_MB} MB`,
      );
      expect(step?.lastError).toBeUndefined();
      const compute = await processDriver.open(platform.dataDir, testDb.db);
      const names = (await compute.list()).map((c) => c.name);
      await compute.close();
      expect(names.some((n) => n.includes(tenant.id.replace(/^ten_/, '').toLowerCase()))).toBe(false);
      expect((await platform.page('hooli')).status).not.toBe(200);
      const row = await testDb.db
        .selectFrom('tenants')
        .select(['status', 'host_id'])
        .where('id', '=', tenant.id)
        .executeTakeFirstOrThrow();
      expect(row).toEqual({ status: 'provisioning', host_id: null });

      // The host is given its memory back (as an operator changing the hosts table would): the tenant
      // is placed at its next look, without anyone retrying it.
      await testDb.db
        .updateTable('hosts')
        .set({ memory_mb: host.memory_mb })
        .where('id', '=', host.id)
        .execute();
      restored = true;
      const live = await pollUntil(
        async () =>
          (
            await testDb.db
              .selectFrom('tenants')
              .select('status')
              .where('id', '=', tenant.id)
              .executeTakeFirst()
          )?.status,
        (s) => s === 'active',
        90_000,
      );
      expect(live).toBe('active');
    } finally {
      if (!restored)
        await testDb.db
          .updateTable('hosts')
          .set({ memory_mb: host.memory_mb })
          .where('id', '=', host.id)
          .execute();
    }
  });
});
