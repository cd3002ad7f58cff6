import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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

/**
 * Local billing mode's Pay under kill -9: a real `aiqso up` is killed at a
 * random moment between Pay's arrival and the tenant's activation (right
 * after Pay's answer in a third of the runs) and started again at once. A
 * customer who saw no answer presses Pay again. In the end every tenant is
 * active once, with one welcome mail, and pressing Pay again changes nothing.
 */
const RUNS = 50;
const TENANTS_PER_RUN = 1;
const PASSWORD = 'correct horse battery staple';

let testDb: TestDatabase;
let platform: KilledPlatform;

beforeAll(async () => {
  testDb = await createTestDatabase({ max: 4 });
  // Fifty runs of signups from one address: no signup limit here.
  platform = await startKilledPlatform(testDb, { AIQSO_SIGNUP_RATE_IP: '0' });
}, 180_000);
afterAll(async () => {
  await platform?.close();
  await testDb?.drop();
}, 120_000);

interface Checkout {
  slug: string;
  email: string;
  payUrl: string;
  answered: boolean;
}

async function signup(serial: number): Promise<Checkout> {
  const slug = `pay${serial}`;
  const email = `owner${serial}@pay.test`;
  const res = await fetch(`${platform.base}/api/v1/signup`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ company: `Pay ${serial} Ltd`, slug, email, password: PASSWORD }),
  });
  if (res.status !== 201) throw new Error(`signup answered ${res.status}: ${await res.text()}`);
  const { checkoutUrl } = (await res.json()) as { checkoutUrl: string };
  return { slug, email, payUrl: `${platform.base}${new URL(checkoutUrl).pathname}/pay`, answered: false };
}

async function pay(checkout: Checkout): Promise<void> {
  const res = await fetch(checkout.payUrl, { method: 'POST', redirect: 'manual' });
  await res.arrayBuffer();
  if (res.status !== 303) throw new Error(`Pay answered ${res.status}`);
  checkout.answered = true;
}

describe('local checkout Pay while the platform is killed at random points', () => {
  it(
    `activates every tenant once, with one welcome mail, over ${RUNS} kills`,
    { timeout: 900_000 },
    async () => {
      const checkouts: Checkout[] = [];
      let afterAnswer = 0;
      for (let run = 0; run < RUNS; run++) {
        const batch: Checkout[] = [];
        for (let i = 0; i < TENANTS_PER_RUN; i++) batch.push(await signup(run * TENANTS_PER_RUN + i));
        checkouts.push(...batch);
        if (run % 3 === 0) {
          // Right after Pay's answer.
          await pay(batch[0]!);
          afterAnswer++;
          await platform.killAndRestart();
        } else {
          const paying = (async () => {
            for (const c of batch) await pay(c);
          })();
          paying.catch(() => undefined);
          await sleep(run % 3 === 1 ? randomInt(40) : randomInt(2500));
          await platform.killAndRestart();
          await paying.catch(() => undefined);
        }
        // Whoever saw no answer presses Pay again.
        for (const c of checkouts.filter((x) => !x.answered)) await pay(c);
      }
      expect(platform.kills()).toBe(RUNS);
      expect(afterAnswer).toBeGreaterThanOrEqual(Math.floor(RUNS / 3));

      const slugs = checkouts.map((c) => c.slug);
      const settled = await pollUntil(
        async () => ({
          facts: await tenantFacts(testDb, 'slug', slugs),
          welcomes: await countRows(testDb, "SELECT 1 FROM emails WHERE template = 'welcome'"),
        }),
        (v) => v.facts.every((f) => f.status === 'active') && v.welcomes >= checkouts.length,
        240_000,
        500,
      );
      expect(settled.facts).toHaveLength(checkouts.length);
      expect(settled.facts.filter((f) => f.status !== 'active')).toEqual([]);
      for (const f of settled.facts) expect([f.slug, f.activated, f.provisioned]).toEqual([f.slug, 1, 1]);
      const mails = await mailsByRecipient(platform.dataDir);
      for (const c of checkouts) expect([c.email, mails.get(c.email) ?? 0]).toEqual([c.email, 1]);
      for (const c of checkouts.filter((_, i) => i % 10 === 0)) {
        const page = await viaEdge(`${c.slug}.localhost:${platform.port}`, platform.port);
        expect([c.slug, page.status]).toEqual([c.slug, 200]);
      }

      // Every customer presses Pay once more: nothing new is sent, nothing changes.
      const inbox = await countRows(testDb, 'SELECT 1 FROM inbox');
      expect(inbox).toBe(checkouts.length * 3);
      for (const c of checkouts) await pay(c);
      await sleep(1500);
      expect(await countRows(testDb, 'SELECT 1 FROM inbox')).toBe(inbox);
      expect(await countRows(testDb, 'SELECT 1 FROM inbox WHERE processed_at IS NULL')).toBe(0);
      expect(await tenantFacts(testDb, 'slug', slugs)).toEqual(settled.facts);
      expect(await countRows(testDb, "SELECT 1 FROM emails WHERE template = 'welcome'")).toBe(
        checkouts.length,
      );
      expect(await mailsByRecipient(platform.dataDir)).toEqual(mails);
    },
  );
});
