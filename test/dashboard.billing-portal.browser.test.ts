import { request } from 'node:http';
import path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadCatalog } from '../src/catalog/load.ts';
import { loadPlans, PLANS_FILE } from '../src/catalog/plans.ts';
import { syncCatalog } from '../src/catalog/sync.ts';
import { freePort } from '../src/db/embedded.ts';
import { startBuiltinEdge, type RunningEdge } from '../src/edge/start.ts';
import { upsertRoute } from '../src/edge/routes-store.ts';
import { createLogger } from '../src/observability/logger.ts';
import { createMetrics } from '../src/observability/metrics.ts';
import { subscribeLocally } from './support/billing-plans.ts';
import { startDashboard, type RunningDashboard } from './support/dashboard.ts';
import { createHarness, PASSWORD, type Harness } from './support/identity.ts';
import { launchChromium, pageInspector, skipBrowser, signInToWorkspace } from './support/browser.ts';

/**
 * The Billing page's "Payment methods and invoices" in Chromium, in local
 * billing mode, as a browser meets it: the workspace and the platform behind
 * the real builtin edge on one port (`alpha.localhost` → the tenant's dashboard
 * process, `localhost` → the platform), the dashboard against the real API and
 * database. The owner's button goes to the platform's portal page for that
 * tenant (the form's redirect allowed by the page's CSP), which shows the
 * subscription and the payment local billing recorded and links back to the
 * workspace; a refusal is shown on the Billing page in words; a member's
 * hand-made post gets the API's refusal, never a link; a changed link opens
 * nothing. Every page: no serious or critical axe-core violation, screenshots
 * at 1280 and 390 px in test-output/dashboard-billing-portal/, no horizontal
 * scroll at 390 px.
 */
const OUT = path.resolve('test-output/dashboard-billing-portal');

let h: Harness;
let dash: RunningDashboard;
let edge: RunningEdge;
let browser: Browser;
let port: number;
let workspace: string;
let platform: string;
let inspect: Awaited<ReturnType<typeof pageInspector>>;

beforeAll(async () => {
  if (skipBrowser) return;
  port = await freePort();
  platform = `http://localhost:${port}`;
  workspace = `http://alpha.localhost:${port}`;
  h = await createHarness({ env: { AIQSO_PUBLIC_URL: platform } });
  const plans = loadPlans(PLANS_FILE);
  await syncCatalog(h.db.db, loadCatalog());
  await subscribeLocally(h.db.db, plans, { id: h.a.id, email: h.a.owner.email }, 'starter');
  dash = await startDashboard(h, h.a, 'Alpha Widgets', { AIQSO_PUBLIC_URL: platform });
  await upsertRoute(h.db.db, {
    hostname: 'alpha.localhost',
    tenantId: h.a.id,
    upstream: { host: '127.0.0.1', port: dash.port },
  });
  edge = await startBuiltinEdge(
    {
      config: h.config,
      log: createLogger('silent'),
      database: h.db,
      metrics: createMetrics(),
      api: h.api,
    },
    { bind: '127.0.0.1', httpPort: port },
  );
  inspect = await pageInspector(OUT);
  browser = await launchChromium();
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await edge?.close();
  await dash?.stop();
  await h?.close();
});

const signIn = (page: Page, email: string, password = PASSWORD) =>
  signInToWorkspace(page, workspace, email, password);

/** A form post to the workspace through the edge, as a browser would send it (its Host, its cookies). */
function postForm(
  target: string,
  cookie: string,
  body: string,
): Promise<{ status: number; location: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        method: 'POST',
        path: target,
        headers: {
          host: `alpha.localhost:${port}`,
          cookie,
          'content-type': 'application/x-www-form-urlencoded',
        },
      },
      (res) => {
        res.resume();
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, location: String(res.headers.location ?? '') }),
        );
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const notice = (page: Page) => page.textContent('main .notice[role=status], main .notice[role=alert]');

describe.skipIf(skipBrowser)('Payment methods and invoices in Chromium', { timeout: 240_000 }, () => {
  it('the owner goes to the local portal page and back to the workspace', async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    const cspViolations: string[] = [];
    page.on('console', (m) => {
      if (/Content Security Policy/i.test(m.text())) cspViolations.push(m.text());
    });
    await signIn(page, h.a.owner.email);
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Billing' }).click();
    expect(await page.textContent('h1')).toBe('Billing');
    const heading = page.getByRole('heading', { name: 'Payment methods and invoices' });
    expect(await heading.count()).toBe(1);
    expect(await page.textContent('main')).toContain(
      'Local billing mode keeps no card and issues no invoices; its page shows your subscription and the payments it recorded.',
    );
    await inspect(page, 'billing');

    // With the keyboard: the button leads to the platform's page for this workspace.
    await page.getByRole('button', { name: 'Payment methods and invoices' }).focus();
    await page.keyboard.press('Enter');
    await page.waitForURL(/\/billing\/portal\?session=/);
    const portal = new URL(page.url());
    expect(portal.origin).toBe(platform);
    expect(await page.textContent('h1')).toBe('Payment methods and invoices');
    const main = (await page.textContent('main'))!;
    expect(main).toContain('alpha Inc.');
    expect(main).toContain(`Billed to: ${h.a.owner.email}`);
    expect(main).toContain('Starter plan');
    expect(main).toContain('$49.00 a month');
    expect(main).toMatch(/State: active/);
    expect(main).toMatch(/Renews on \d{4}-\d{2}-\d{2}\./);
    expect(main).toContain(
      'It takes no real payments: no card is kept, no invoice is issued and nothing is charged.',
    );
    expect(main).toContain(
      'None. Local billing mode takes no real payments, so there is no card to add, change or remove.',
    );
    const payments = page.getByRole('region', { name: 'Payments local billing recorded' });
    expect(await payments.locator('tbody tr').count()).toBe(1);
    expect(await payments.locator('tbody tr').textContent()).toContain('Checkout for the Starter plan');
    expect(await payments.locator('tbody tr').textContent()).toContain('Nothing (simulated)');
    expect(main).not.toContain(h.b.owner.email);
    await inspect(page, 'portal');

    // Back to the workspace: its Billing page, still signed in.
    await page.getByRole('link', { name: 'Back to your workspace' }).click();
    await page.waitForURL(`${workspace}/billing`);
    expect(await page.textContent('h1')).toBe('Billing');
    expect(await page.textContent('main')).toContain('Starter plan');

    // The activity log names the owner's visit.
    await page.goto(`${workspace}/activity`);
    expect(await page.textContent('main')).toContain('Opened payment methods and invoices');

    // Another browser with the link changed by one character: nothing of the workspace.
    const stranger = await browser.newPage();
    const secret = portal.searchParams.get('session')!;
    const changed = `${secret.slice(0, -1)}${secret.endsWith('A') ? 'B' : 'A'}`;
    const refused = await stranger.goto(`${platform}/billing/portal?session=${changed}`);
    expect(refused?.status()).toBe(404);
    expect(await stranger.textContent('main')).toContain('This link opens nothing.');
    expect(await stranger.textContent('main')).not.toContain('alpha');
    await inspect(stranger, 'portal-link-refused');
    await stranger.close();
    expect(cspViolations).toEqual([]);
    await context.close();
  });

  it('a refusal is shown on the Billing page in words', async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    await signIn(page, h.a.owner.email);
    await page.goto(`${workspace}/billing`);
    // The billing customer gone from the records (as for a workspace never checked out).
    const customer = await h.db.db
      .selectFrom('tenants')
      .select('stripe_customer_id')
      .where('id', '=', h.a.id)
      .executeTakeFirstOrThrow();
    await h.db.db.updateTable('tenants').set({ stripe_customer_id: null }).where('id', '=', h.a.id).execute();
    await h.db.db
      .updateTable('subscriptions')
      .set({ stripe_customer_id: null })
      .where('tenant_id', '=', h.a.id)
      .execute();
    try {
      await page.getByRole('button', { name: 'Payment methods and invoices' }).click();
      await expect
        .poll(() => notice(page))
        .toContain(
          'alpha has no billing customer yet, so there are no payment methods or invoices to show; it gets one when its checkout is paid',
        );
      expect(page.url()).toMatch(new RegExp(`^${workspace}/billing\\?`));
      await inspect(page, 'billing-portal-refused');
    } finally {
      await h.db.db
        .updateTable('tenants')
        .set({ stripe_customer_id: customer.stripe_customer_id })
        .where('id', '=', h.a.id)
        .execute();
      await h.db.db
        .updateTable('subscriptions')
        .set({ stripe_customer_id: customer.stripe_customer_id })
        .where('tenant_id', '=', h.a.id)
        .execute();
    }
    await context.close();
  });

  it("a member's hand-made post gets the API's refusal, not a link", async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    await signIn(page, h.a.member.email);
    expect(
      await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Billing' }).count(),
    ).toBe(0);
    // The member's own CSRF token (every signed-in page's forms carry it), posted by hand.
    const csrf = (await page.locator('input[name=csrf]').first().getAttribute('value'))!;
    const cookies = (await context.cookies(workspace)).map((c) => `${c.name}=${c.value}`).join('; ');
    const res = await postForm('/billing-portal', cookies, `csrf=${encodeURIComponent(csrf)}`);
    expect(res.status).toBe(303);
    expect(res.location).toMatch(/^billing\?msg=.*&err=1$/);
    expect(decodeURIComponent(res.location)).toContain('this needs the tenant owner role');
    expect(res.location).not.toContain('/billing/portal?session=');
    // Without the token: refused before anything is asked.
    expect((await postForm('/billing-portal', cookies, '')).status).toBe(403);
    await context.close();
  });
});
