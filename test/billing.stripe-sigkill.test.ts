import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { localId } from '../src/billing/stripe-objects.ts';
import { newId } from '../src/core/ids.ts';
import { countRows, createTestDatabase, type TestDatabase } from './support/db.ts';
import {
  mailsByRecipient,
  randomInt,
  sleep,
  startKilledPlatform,
  type KilledPlatform,
  tenantFacts,
} from './support/killed-platform.ts';
import { pollUntil, viaEdge } from './support/live-platform.ts';
import { checkoutCompleted, invoiceEvent, signed, subscriptionEvent } from './support/stripe.ts';

/**
 * The Stripe path under kill -9: events arrive at the webhook of a real
 * `aiqso up`, which is killed at a random moment between an event's arrival
 * and the tenant's activation (right after the webhook's 200 in a third of
 * the runs), and started again at once, as a crashed platform is. Stripe
 * redelivers what it got no 200 for. The platform restarted in one run is the
 * one killed in the next, so a run's tenants may also be recovering when it
 * dies. In the end every tenant is active once, with one welcome mail, and a
 * redelivery of every event changes nothing.
 */
const RUNS = 50;
const TENANTS_PER_RUN = 1;

let testDb: TestDatabase;
let platform: KilledPlatform;

beforeAll(async () => {
  testDb = await createTestDatabase({ max: 4 });
  platform = await startKilledPlatform(testDb);
}, 180_000);
afterAll(async () => {
  await platform?.close();
  await testDb?.drop();
}, 120_000);

interface Sent {
  event: { id: string };
  acked: boolean;
}

async function newTenant(serial: number) {
  const id = newId('tenant');
  const slug = `k${serial}`;
  const email = `owner${serial}@kill.test`;
  await testDb.db
    .insertInto('tenants')
    .values({ id, slug, company: `Kill ${serial} Ltd` })
    .execute();
  await testDb.db
    .insertInto('users')
    .values({ id: newId('user'), email, role: 'tenant_owner', tenant_id: id })
    .execute();
  return { id, slug, email };
}

/** What Stripe sends for a paid checkout, in its usual order. */
function paidCheckout(tenantId: string) {
  const sub = localId('sub');
  const customer = localId('cus');
  return [
    checkoutCompleted(tenantId, sub, customer),
    subscriptionEvent('created', { id: sub, customer, status: 'active', tenantId }),
    invoiceEvent('paid', sub),
  ];
}

async function deliver(sent: Sent, secret: string): Promise<boolean> {
  const req = signed(sent.event, secret);
  const res = await fetch(`${platform.base}${req.url}`, {
    method: 'POST',
    headers: req.headers,
    body: req.payload,
  });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`webhook answered ${res.status}: ${text.slice(0, 300)}`);
  const body = JSON.parse(text) as { duplicate?: boolean };
  sent.acked = true;
  return body.duplicate === true;
}

describe('Stripe events while the platform is killed at random points', () => {
  it(
    `activate every tenant once, with one welcome mail, over ${RUNS} kills`,
    { timeout: 900_000 },
    async () => {
      const secret = await platform.webhookSecret();
      const tenants: { id: string; slug: string; email: string }[] = [];
      const sent: Sent[] = [];
      let afterAck = 0;
      for (let run = 0; run < RUNS; run++) {
        const batch = await Promise.all(
          Array.from({ length: TENANTS_PER_RUN }, (_, i) => newTenant(run * TENANTS_PER_RUN + i)),
        );
        tenants.push(...batch);
        const events = batch.flatMap((t) => paidCheckout(t.id)).map((event) => ({ event, acked: false }));
        sent.push(...events);
        // Checkouts first, then the rest, as Stripe mostly sends them; a failed send is a kill in flight.
        const ordered = [...events.filter((_, i) => i % 3 === 0), ...events.filter((_, i) => i % 3 !== 0)];
        if (run % 3 === 0) {
          // Right after the 200 of the first checkout event.
          await deliver(ordered[0]!, secret);
          afterAck++;
          await platform.killAndRestart();
        } else {
          const sending = (async () => {
            for (const s of ordered) await deliver(s, secret);
          })();
          sending.catch(() => undefined);
          // Somewhere between the first arrival and the activation (about 1–2 s here).
          await sleep(run % 3 === 1 ? randomInt(40) : randomInt(2500));
          await platform.killAndRestart();
          await sending.catch(() => undefined);
        }
        // Stripe retries what it got no 200 for.
        for (const s of sent.filter((x) => !x.acked)) await deliver(s, secret);
      }
      expect(platform.kills()).toBe(RUNS);
      expect(afterAck).toBeGreaterThanOrEqual(Math.floor(RUNS / 3));

      const ids = tenants.map((t) => t.id);
      const settled = await pollUntil(
        async () => ({
          facts: await tenantFacts(testDb, 'id', ids),
          welcomes: await countRows(testDb, "SELECT 1 FROM emails WHERE template = 'welcome'"),
        }),
        (v) => v.facts.every((f) => f.status === 'active') && v.welcomes >= tenants.length,
        240_000,
        500,
      );
      expect(settled.facts.filter((f) => f.status !== 'active')).toEqual([]);
      for (const f of settled.facts) expect([f.id, f.activated, f.provisioned]).toEqual([f.id, 1, 1]);
      const mails = await mailsByRecipient(platform.dataDir);
      for (const t of tenants) expect([t.email, mails.get(t.email) ?? 0]).toEqual([t.email, 1]);
      for (const t of tenants.filter((_, i) => i % 10 === 0)) {
        const page = await viaEdge(`${t.slug}.localhost:${platform.port}`, platform.port);
        expect([t.slug, page.status]).toEqual([t.slug, 200]);
      }

      // Stripe redelivers everything once more: each is a duplicate, and nothing changes.
      const inbox = await countRows(testDb, 'SELECT 1 FROM inbox');
      for (const s of sent) expect(await deliver(s, secret)).toBe(true);
      await sleep(1500);
      expect(await countRows(testDb, 'SELECT 1 FROM inbox')).toBe(inbox);
      expect(await countRows(testDb, 'SELECT 1 FROM inbox WHERE processed_at IS NULL')).toBe(0);
      expect(await tenantFacts(testDb, 'id', ids)).toEqual(settled.facts);
      expect(await countRows(testDb, "SELECT 1 FROM emails WHERE template = 'welcome'")).toBe(tenants.length);
      expect(await mailsByRecipient(platform.dataDir)).toEqual(mails);
    },
  );
});
