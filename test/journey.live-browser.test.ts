import path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import { driverCases, startLivePlatform, type LivePlatform } from './support/live-platform.ts';
import { launchChromium, pageInspector, signInToWorkspace, skipBrowser } from './support/browser.ts';

/**
 * A customer's whole first visit in Chromium, against a real `aiqso up`
 * (process driver, local billing, the test's PostgreSQL) and nothing staged:
 * the front page → signup → checkout → the thank-you page following the real
 * provisioning into the live workspace → sign-in there → subscribe to Notes →
 * open the service through the edge with the session the sign-in gave → its
 * Logs page → unsubscribe through the confirmation. Another browser, signed
 * in nowhere, is refused the service. Every page: no serious or critical
 * axe-core violation, screenshots at 1280 px and 390 px in
 * test-output/journey/, no horizontal scroll at 390 px.
 */
const OUT = path.resolve('test-output/journey');
const EMAIL = 'owner@journey.test';
const PASSWORD = 'a journey through the whole portal';

let testDb: TestDatabase;
let platform: LivePlatform;
let browser: Browser;
let inspect: Awaited<ReturnType<typeof pageInspector>>;

beforeAll(async () => {
  if (skipBrowser) return;
  testDb = await createTestDatabase();
  platform = await startLivePlatform({
    databaseUrl: testDb.url,
    driver: driverCases().find((d) => d.name === 'process')!,
  });
  inspect = await pageInspector(OUT);
  browser = await launchChromium();
}, 180_000);

afterAll(async () => {
  await browser?.close();
  await platform?.stop(testDb.db);
  await testDb?.drop();
}, 120_000);

/** The overview's row for one service. */
const serviceRow = (page: Page, name: string) =>
  page.locator('[aria-label="Your services"] tr', { hasText: name });

describe.skipIf(skipBrowser)('a customer in Chromium on a live platform', { timeout: 300_000 }, () => {
  it('signs up, pays, lands in the live workspace, signs in, subscribes, opens the service, reads its logs and unsubscribes', async () => {
    const portal = `http://localhost:${platform.port}`;
    const workspace = `http://journey.localhost:${platform.port}`;
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    const cspViolations: string[] = [];
    page.on('console', (m) => {
      if (/Content Security Policy/i.test(m.text())) cspViolations.push(m.text());
    });

    // The front page into signup.
    await page.goto(`${portal}/`);
    await inspect(page, 'front');
    await page.goto(`${portal}/signup?plan=starter`);
    await page.fill('#f-company', 'Journey Works');
    await page.fill('#f-slug', 'journey');
    await page.fill('#f-email', EMAIL);
    await page.fill('#f-password', PASSWORD);
    await page.click('button[type=submit]');
    await page.waitForURL(/\/billing\/checkout\/cs_local/);
    await inspect(page, 'checkout');

    // Paid: the thank-you page follows the real provisioning and takes the browser to the workspace.
    await page.click('button:has-text("Pay")');
    await page.waitForURL(/\/signup\/welcome\?tenant=journey/, { waitUntil: 'commit' });
    await page.waitForURL(`${workspace}/`, { waitUntil: 'commit', timeout: 120_000 });
    await page.waitForLoadState();
    expect(await page.textContent('h1')).toBe('Journey Works');
    await inspect(page, 'workspace-sign-in');

    // Signed in to the workspace.
    await signInToWorkspace(page, workspace, EMAIL, PASSWORD);
    await inspect(page, 'overview');

    // Subscribe to Notes at the price shown; the overview says when it runs.
    await page.click('text=Subscribe to Notes');
    await expect.poll(() => page.textContent('main')).toContain('Notes is being set up');
    await expect
      .poll(
        async () => {
          await page.goto(`${workspace}/`);
          return serviceRow(page, 'Notes').textContent();
        },
        { timeout: 120_000, interval: 1000 },
      )
      .toContain('Running');
    const notes = serviceRow(page, 'Notes');
    expect(await notes.textContent()).toContain(`${workspace}/notes/`);
    await inspect(page, 'overview-running');

    // Open the service: the edge admits this browser with the session its sign-in gave.
    await notes.getByRole('link', { name: 'Notes', exact: true }).click();
    await page.waitForURL(`${workspace}/notes/`);
    const served = await page.reload();
    expect(served?.status()).toBe(200);
    expect(await page.locator('#f-password').count()).toBe(0);
    await inspect(page, 'service');
    // Another browser, signed in nowhere, is sent to sign in instead.
    const stranger = await browser.newContext();
    const strangerPage = await stranger.newPage();
    await strangerPage.goto(`${workspace}/notes/`);
    expect(await strangerPage.locator('#f-password').count()).toBe(1);
    expect(await strangerPage.textContent('main')).not.toContain(EMAIL);
    await stranger.close();

    // Its logs.
    await page.goto(`${workspace}/`);
    await page.click('a[aria-label="Logs of Notes"]');
    await expect.poll(() => page.textContent('h1')).toBe('Logs of Notes');
    expect((await page.locator('pre[role=log]').textContent())?.length).toBeGreaterThan(0);
    await inspect(page, 'logs');

    // Unsubscribe through the confirmation, which says when the data is destroyed.
    await page.goto(`${workspace}/`);
    await serviceRow(page, 'Notes').locator('text=Unsubscribe…').click();
    const dialog = page.getByRole('dialog', { name: 'Unsubscribe from Notes?' });
    expect(await dialog.textContent()).toContain('Its data is kept for 7 days, until');
    await inspect(page, 'confirm-unsubscribe');
    await dialog.locator('button[type=submit]').click();
    await expect
      .poll(() => page.textContent('main'))
      .toContain('Notes is unsubscribed. Its data is destroyed after');
    expect(await serviceRow(page, 'Notes').textContent()).toContain('Unsubscribed');
    const { rows } = await testDb.pool.query<{ status: string }>(
      `SELECT ts.status FROM tenant_services ts JOIN services s ON s.id = ts.service_id
         JOIN tenants t ON t.id = ts.tenant_id WHERE t.slug = 'journey' AND s.key = 'notes'`,
    );
    expect(rows).toEqual([{ status: 'removing' }]);
    expect(cspViolations).toEqual([]);
    await context.close();
  });
});
