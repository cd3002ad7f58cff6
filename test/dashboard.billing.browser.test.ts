import path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalBilling } from '../src/billing/local.ts';
import { loadCatalog } from '../src/catalog/load.ts';
import { loadPlans, PLANS_FILE, type Plan } from '../src/catalog/plans.ts';
import { syncCatalog } from '../src/catalog/sync.ts';
import { upsertRoute } from '../src/edge/routes-store.ts';
import { processStripeEvents, subscribeLocally } from './support/billing-plans.ts';
import { startDashboard, type RunningDashboard } from './support/dashboard.ts';
import { createHarness, PASSWORD, type Harness } from './support/identity.ts';
import { launchChromium, pageInspector, skipBrowser, signInToWorkspace } from './support/browser.ts';

/**
 * The tenant dashboard's Billing page (dashboard/billing.mjs, the dashboard in
 * its own process against the real API and database, local billing mode) in
 * Chromium: the plan with its price and what it includes, the subscription's
 * state, the plans on offer; changing the plan through a confirmation saying
 * what changes and the price (Cancel changes nothing; done with the keyboard
 * too), the plan following once the subscription update is processed; a
 * downgrade blocked while more services are in use, and the API's refusal
 * shown when the page was stale; a member sees no Billing. Every page: no
 * serious or critical axe-core violation, screenshots at 1280 and 390 px in
 * test-output/dashboard-billing/, no horizontal scroll at 390 px.
 */
const OUT = path.resolve('test-output/dashboard-billing');

let h: Harness;
let dash: RunningDashboard;
let browser: Browser;
let base: string;
let plans: Plan[];
let local: LocalBilling;
let inspect: Awaited<ReturnType<typeof pageInspector>>;

async function subscribe(service: string): Promise<void> {
  const res = await h.api.inject({
    method: 'POST',
    url: `/api/v1/tenants/${h.a.slug}/services`,
    headers: h.bearer(h.a.owner.token),
    payload: { service },
  });
  expect(res.statusCode, res.body).toBe(202);
}

const planOf = async () =>
  (await h.db.db.selectFrom('tenants').select('plan').where('id', '=', h.a.id).executeTakeFirstOrThrow())
    .plan;

const waitingEvents = async () =>
  (
    await h.db.db
      .selectFrom('inbox')
      .select('id')
      .where('source', '=', 'stripe')
      .where('processed_at', 'is', null)
      .execute()
  ).length;

beforeAll(async () => {
  if (skipBrowser) return;
  h = await createHarness();
  plans = loadPlans(PLANS_FILE);
  await syncCatalog(h.db.db, loadCatalog());
  await upsertRoute(h.db.db, {
    hostname: 'alpha.localhost',
    tenantId: h.a.id,
    upstream: { host: '127.0.0.1', port: 9 },
  });
  local = new LocalBilling({ db: h.db.db, publicUrl: 'http://localhost:8080' });
  await subscribeLocally(h.db.db, plans, { id: h.a.id, email: h.a.owner.email }, 'starter');
  await subscribe('notes');
  dash = await startDashboard(h, h.a, 'Alpha Widgets');
  base = `http://alpha.localhost:${dash.port}`;
  inspect = await pageInspector(OUT);
  browser = await launchChromium();
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await dash?.stop();
  await h?.close();
});

const signIn = (page: Page, email: string, password = PASSWORD) =>
  signInToWorkspace(page, base, email, password);

const notice = (page: Page) => page.textContent('main .notice[role=status], main .notice[role=alert]');

describe.skipIf(skipBrowser)('Billing page in Chromium', { timeout: 240_000 }, () => {
  it('shows the plan and changes it through a confirmation; the plan follows once processed', async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    const cspViolations: string[] = [];
    page.on('console', (m) => {
      if (/Content Security Policy/i.test(m.text())) cspViolations.push(m.text());
    });
    await signIn(page, h.a.owner.email);
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Billing' }).click();
    expect(await page.textContent('h1')).toBe('Billing');
    expect(
      await page.getByRole('navigation', { name: 'Main' }).locator('[aria-current=page]').textContent(),
    ).toBe('Billing');

    const card = page.locator('main > .card').first();
    const cardText = (await card.textContent())!;
    expect(cardText).toContain('Starter plan');
    expect(cardText).toContain('$49.00 a month');
    expect(cardText).toContain('Up to 2 services');
    expect(cardText).toContain('10 GB of storage included');
    expect(cardText).toContain('1,000,000 requests a month included');
    expect(cardText).toContain('1 service in use');
    expect(cardText).toMatch(/Subscription: Active Renews on \d{4}-\d{2}-\d{2}\./);
    expect(await page.textContent('main')).toContain(
      'Local billing mode: payments are simulated and nothing is charged.',
    );
    const offer = page.locator('main ul.grid');
    expect(await offer.locator('li.card', { hasText: 'Starter' }).textContent()).toContain('Your plan');
    const business = offer.locator('li.card', { hasText: 'Business' });
    expect(await business.textContent()).toContain('$149.00 a month');
    expect(await business.textContent()).toContain('Up to 6 services');
    await inspect(page, 'billing');

    // The confirmation says what changes and the price; Cancel changes nothing.
    const dialog = page.locator('#plan-business');
    expect(await dialog.isVisible()).toBe(false);
    await business.getByRole('link', { name: 'Change to Business…' }).click();
    expect(await dialog.isVisible()).toBe(true);
    const text = (await dialog.textContent())!;
    expect(text).toContain('Change to Business?');
    expect(text).toContain(
      'Your plan changes from Starter ($49.00 a month) to Business ($149.00 a month): up to 6 services, 50 GB of storage included, 10,000,000 requests a month included, instead of up to 2 services, 10 GB of storage included, 1,000,000 requests a month included.',
    );
    expect(text).toContain('Local billing mode: nothing is charged.');
    await inspect(page, 'billing-confirm');
    await dialog.getByRole('link', { name: 'Cancel' }).click();
    expect(await dialog.isVisible()).toBe(false);
    expect(await waitingEvents()).toBe(0);

    // With the keyboard: the link opens the dialog, its button confirms.
    await business.getByRole('link', { name: 'Change to Business…' }).focus();
    await page.keyboard.press('Enter');
    expect(await dialog.isVisible()).toBe(true);
    await dialog.getByRole('button', { name: 'Change to Business for $149.00 a month' }).focus();
    await page.keyboard.press('Enter');
    await expect
      .poll(() => notice(page))
      .toContain(
        'Your plan is changing from starter to business; this page shows it once the payment provider confirms it.',
      );
    expect(await waitingEvents()).toBe(1);
    expect(await planOf()).toBe('starter');
    await inspect(page, 'billing-requested');

    // The worker processes the subscription update: the page shows Business.
    await processStripeEvents(h.db.db, local, plans);
    expect(await planOf()).toBe('business');
    await page.goto(`${base}/billing`);
    expect(await page.locator('main > .card').first().textContent()).toContain('Business plan');
    expect(await page.locator('main > .card').first().textContent()).toContain('$149.00 a month');
    expect(await offer.locator('li.card', { hasText: 'Business' }).textContent()).toContain('Your plan');
    await inspect(page, 'billing-business');
    // The activity log has both: the owner's request and the change.
    await page.goto(`${base}/activity`);
    const activity = (await page.textContent('main'))!;
    expect(activity).toContain('Asked to change the plan');
    expect(activity).toContain('The plan changed');

    // A stale page: a downgrade confirmed after a third service was taken is refused, in words.
    await subscribe('social-media-manager');
    await page.goto(`${base}/billing`);
    await offer
      .locator('li.card', { hasText: 'Starter' })
      .getByRole('link', { name: 'Change to Starter…' })
      .click();
    expect(await page.locator('#plan-starter').textContent()).toContain(
      'Business ($149.00 a month) to Starter ($49.00 a month)',
    );
    await subscribe('content-suite');
    await page.locator('#plan-starter').getByRole('button').click();
    await expect
      .poll(() => notice(page))
      .toContain('the Starter plan allows 2 services and alpha has 3; unsubscribe 1 service first');
    expect(await waitingEvents()).toBe(0);
    // Loaded now, the page says so before anyone tries.
    await page.goto(`${base}/billing`);
    expect(await offer.locator('li.card', { hasText: 'Starter' }).textContent()).toContain(
      'Unsubscribe 1 service first: Starter allows 2 and you have 3.',
    );
    expect(await page.locator('#plan-starter').count()).toBe(0);
    await inspect(page, 'billing-downgrade-blocked');
    expect(cspViolations).toEqual([]);
    await context.close();
  });

  it('a member sees no Billing link, and the page says it is for owners', async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    await signIn(page, h.a.member.email);
    expect(
      await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Billing' }).count(),
    ).toBe(0);
    await page.goto(`${base}/billing`);
    expect(await page.textContent('main')).toContain('Only owners can see and change billing.');
    await inspect(page, 'billing-member');
    // A forged form post (the session's cookies, no CSRF token) changes nothing.
    const cookies = (await context.cookies()).map((c) => `${c.name}=${c.value}`).join('; ');
    const res = await fetch(`http://127.0.0.1:${dash.port}/billing-plan`, {
      method: 'POST',
      headers: { cookie: cookies, 'content-type': 'application/x-www-form-urlencoded' },
      body: 'plan=starter',
      redirect: 'manual',
    });
    expect(res.status).toBe(403);
    expect(await waitingEvents()).toBe(0);
    await context.close();
  });
});
