import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadCatalog } from '../src/catalog/load.ts';
import { loadPlans, PLANS_FILE } from '../src/catalog/plans.ts';
import { whyNotRunnable } from '../src/catalog/runnable.ts';
import { syncCatalog } from '../src/catalog/sync.ts';
import { filesMailer, mailFileName } from '../src/mail/files.ts';
import { emailHandler } from '../src/orchestrator/mail-handlers.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import { freePort } from '../src/db/embedded.ts';
import { startTestEdge, type TestEdge } from './support/edge.ts';
import { launchChromium, pageInspector, skipBrowser } from './support/browser.ts';

/**
 * The portal's public pages in Chromium, on a real edge and API over a real
 * database: the front page (plans with prices and what each includes, from
 * catalog/plans.yaml as GET /api/v1/plans gives them; only the services this
 * platform's driver runs, as GET /api/v1/catalog gives them), into signup
 * with the plan chosen by keyboard, errors next to their fields with the plan
 * and the opt-in kept, then checkout; a password reset by e-mail (the link
 * from the mail, a refused password, the change, the spent link); "find my
 * workspace". Every page: no serious or critical axe-core violation,
 * screenshots at 1280 px and 390 px in test-output/portal/, no horizontal
 * scroll at 390 px.
 */
const OUT = path.resolve('test-output/portal');
const PASSWORD = 'correct horse battery staple 42';
const NEW_PASSWORD = 'a fresh passphrase for spring';
const OWNER = 'owner@browser-co.test';

let testDb: TestDatabase;
let edge: TestEdge;
let browser: Browser;
let base: string;
let inspect: Awaited<ReturnType<typeof pageInspector>>;
let mailDir: string;

beforeAll(async () => {
  if (skipBrowser) return;
  testDb = await createTestDatabase();
  await syncCatalog(testDb.db, loadCatalog());
  // The platform's public URL is the edge's own, so redirects and mailed links lead back to it.
  const port = await freePort();
  base = `http://localhost:${port}`;
  edge = await startTestEdge(testDb, {
    env: { AIQSO_DRIVER: 'process', AIQSO_PUBLIC_URL: base },
    listen: { httpPort: port },
  });
  mailDir = await mkdtemp(path.join(os.tmpdir(), 'aiqso-portal-mail-'));
  inspect = await pageInspector(OUT);
  browser = await launchChromium();
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await edge?.close();
  await testDb?.drop();
  if (mailDir) await rm(mailDir, { recursive: true, force: true });
});

/** Tab (at most 60 times) until the focused element's text is `text`; fails when it never is. */
async function tabTo(page: Page, text: string): Promise<void> {
  for (let i = 0; i < 60; i++) {
    await page.keyboard.press('Tab');
    const focused = await page.evaluate<string>("document.activeElement?.textContent?.trim() ?? ''");
    if (focused === text) return;
  }
  throw new Error(`no focusable element "${text}" by keyboard`);
}

/** The outbox's pending mail delivered as the worker does; the latest mail to `to`, decoded. */
async function lastMailTo(to: string): Promise<string> {
  const send = emailHandler(filesMailer(mailDir), { address: 'noreply@aiqso.test' });
  const pending = await testDb.db
    .selectFrom('outbox')
    .selectAll()
    .where('kind', '=', 'email')
    .where('status', '=', 'pending')
    .execute();
  for (const row of pending) {
    await testDb.db.transaction().execute(async (trx) => {
      await send({ key: row.key, kind: row.kind, payload: row.payload }, trx);
      await trx.updateTable('outbox').set({ status: 'delivered' }).where('id', '=', row.id).execute();
    });
  }
  const sent = await testDb.db
    .selectFrom('emails')
    .select('outbox_key')
    .where('recipient', '=', to)
    .orderBy('id', 'desc')
    .executeTakeFirstOrThrow();
  const eml = await readFile(path.join(mailDir, mailFileName(sent.outbox_key)), 'utf8');
  return eml.replace(/=\r?\n/g, '').replace(/=3D/g, '=');
}

describe.skipIf(skipBrowser)('the portal in Chromium', { timeout: 180_000 }, () => {
  it('front page → signup with the plan chosen, errors kept by field → checkout', async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    const cspViolations: string[] = [];
    page.on('console', (m) => {
      if (/Content Security Policy|pattern attribute/i.test(m.text())) cspViolations.push(m.text());
    });

    await page.goto(`${base}/`);
    await inspect(page, 'front');
    // The plans as the API gives them: name, price, what each includes.
    const plansApi = (await (await fetch(`${base}/api/v1/plans`)).json()) as {
      plans: { key: string; name: string; monthlyPrice: string; services: number }[];
    };
    expect(plansApi.plans.map((p) => p.key)).toEqual(loadPlans(PLANS_FILE).map((p) => p.key));
    const cards = page.locator('#plans + p + ul.grid > li');
    expect(await cards.count()).toBe(plansApi.plans.length);
    for (const [i, plan] of plansApi.plans.entries()) {
      const text = (await cards.nth(i).textContent()) ?? '';
      expect(text).toContain(plan.name);
      expect(text).toContain(`${plan.monthlyPrice} a month`);
      expect(text).toContain(`Up to ${plan.services} services`);
    }
    expect(await cards.first().textContent()).toContain('$49');
    // The services: exactly those the process driver runs.
    const catalogApi = (await (await fetch(`${base}/api/v1/catalog`)).json()) as {
      services: { name: string }[];
    };
    const offered = await page.locator('#services + ul.grid h3').allTextContents();
    expect(offered.sort()).toEqual(catalogApi.services.map((s) => s.name).sort());
    expect(offered.length).toBeGreaterThan(0);
    const notRunnable = loadCatalog().filter((t) => whyNotRunnable(t, 'process') !== null);
    expect(notRunnable.length).toBeGreaterThan(0);
    for (const t of notRunnable) expect(offered).not.toContain(t.name);

    // By keyboard alone: the second plan's button leads to signup with that plan chosen.
    const second = plansApi.plans[1]!;
    await tabTo(page, `Start with ${second.name}`);
    await page.keyboard.press('Enter');
    await page.waitForURL(`${base}/signup?plan=${second.key}`);
    expect(await page.isChecked(`input[name=plan][value=${second.key}]`)).toBe(true);
    expect(await page.textContent('fieldset.choices')).toContain(`${second.monthlyPrice} a month`);
    expect(await page.isChecked('input[name=marketingEmails]')).toBe(false);
    await inspect(page, 'signup');

    // The browser's own check of the address works: Chromium compiles its pattern.
    const mismatch = () =>
      page.evaluate<boolean>("document.querySelector('#f-slug').validity.patternMismatch");
    await page.fill('#f-slug', 'Bad_Slug');
    expect(await mismatch()).toBe(true);
    await page.fill('#f-slug', 'browser-co');
    expect(await mismatch()).toBe(false);

    // Problems the server finds: each next to its field, all at once; plan and opt-in kept.
    await page.fill('#f-company', 'Browser Co');
    await page.fill('#f-slug', 'www');
    await page.fill('#f-email', OWNER);
    await page.fill('#f-password', 'short pw');
    await page.check('input[name=marketingEmails]');
    await page.click('button[type=submit]');
    await expect.poll(() => page.textContent('[role=alert]')).toContain('Please correct these 2 fields');
    expect(await page.textContent('#f-slug-error')).toBe('is reserved');
    expect(await page.textContent('#f-password-error')).toBe('must be at least 12 characters');
    expect(await page.inputValue('#f-email')).toBe(OWNER);
    expect(await page.inputValue('#f-password')).toBe('');
    expect(await page.isChecked(`input[name=plan][value=${second.key}]`)).toBe(true);
    expect(await page.isChecked('input[name=marketingEmails]')).toBe(true);
    await inspect(page, 'signup-errors');

    // The error summary's links lead to the fields.
    await page.click('[role=alert] a[href="#f-slug"]');
    expect(await page.evaluate<string>('location.hash')).toBe('#f-slug');

    await page.fill('#f-slug', 'browser-co');
    await page.fill('#f-password', PASSWORD);
    await page.click('button[type=submit]');
    await page.waitForURL(/\/billing\/checkout\/cs_local/);
    const owner = await testDb.pool.query<{ plan: string; marketing_emails: boolean; source: string }>(
      `SELECT t.plan, u.marketing_emails, c.source FROM users u JOIN tenants t ON t.id = u.tenant_id
         JOIN consent_records c ON c.user_id = u.id WHERE u.email = $1`,
      [OWNER],
    );
    expect(owner.rows).toEqual([{ plan: second.key, marketing_emails: true, source: 'signup' }]);

    // Paid: the thank-you page follows the provisioning as it happens, without reloading (no worker
    // runs here: the status and steps are written as the billing worker and the tenant's reconciler
    // write them), then takes the browser to the workspace by itself.
    await page.click('button:has-text("Pay")');
    await page.waitForURL(/\/signup\/welcome\?tenant=browser-co/, { waitUntil: 'commit' });
    await page.waitForSelector('ol.timeline li.waiting');
    expect(await page.textContent('main')).toContain('waiting for confirmation');
    await inspect(page, 'welcome-paying');
    const { rows: made } = await testDb.pool.query<{ id: string }>(
      `UPDATE tenants SET status = 'provisioning' WHERE slug = 'browser-co' RETURNING id`,
    );
    await testDb.pool.query(
      `INSERT INTO resources (kind, id, tenant_id, spec, steps) VALUES ('tenant', $1, $1, '{}', $2)`,
      [
        made[0]!.id,
        JSON.stringify([
          { name: 'placement', state: 'done', attempts: 1 },
          { name: 'dashboard container', state: 'running', attempts: 1 },
        ]),
      ],
    );
    await page.waitForSelector('ol.timeline li.running');
    expect(await page.textContent('main')).toContain('dashboard container');
    await inspect(page, 'welcome-provisioning');
    await testDb.pool.query(`UPDATE tenants SET status = 'active' WHERE slug = 'browser-co'`);
    await page.waitForURL(`http://browser-co.localhost:${edge.port}/`, { waitUntil: 'commit' });
    expect(cspViolations).toEqual([]);
    await context.close();
  });

  it('password reset by e-mail, and find my workspace', async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();

    await page.goto(`${base}/`);
    await page.click('main a[href="/password-reset"]');
    await page.waitForURL(`${base}/password-reset`);
    await inspect(page, 'password-reset');
    // By keyboard: type the address and press Enter.
    await page.focus('#f-email');
    await page.keyboard.type(OWNER);
    await page.keyboard.press('Enter');
    await expect.poll(() => page.textContent('[role=status]')).toContain('If an account uses this address');
    await inspect(page, 'password-reset-sent');

    const mail = await lastMailTo(OWNER);
    expect(mail).toContain('Subject: Reset your password');
    const link = /(http:\/\/localhost:\d+\/password-reset\/new\?token=[A-Za-z0-9_-]+)/.exec(mail)?.[1];
    expect(link?.startsWith(`${base}/password-reset/new?token=`)).toBe(true);
    await page.goto(link!);
    await inspect(page, 'new-password');
    await page.fill('#f-newPassword', 'password1234');
    await page.click('button[type=submit]');
    await expect.poll(() => page.textContent('#f-newPassword-error')).toBe('is too common; choose another');
    await inspect(page, 'new-password-error');
    await page.fill('#f-newPassword', NEW_PASSWORD);
    await page.click('button[type=submit]');
    await expect.poll(() => page.textContent('h1')).toBe('Your password is changed');
    expect(await page.getAttribute('main a.button', 'href')).toBe(
      `http://browser-co.localhost:${edge.port}/`,
    );
    await inspect(page, 'password-changed');
    const login = await fetch(`${base}/api/v1/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email: OWNER, password: NEW_PASSWORD }),
    });
    expect(login.status).toBe(200);

    // The link was spent.
    const again = await page.goto(link!);
    expect(again!.status()).toBe(410);
    expect(await page.textContent('h1')).toBe('This link no longer works');
    await inspect(page, 'link-gone');

    // Find my workspace: the same words on the page; the mail has the address.
    await page.goto(`${base}/find-workspace`);
    await inspect(page, 'find-workspace');
    await page.fill('#f-email', 'not an address@');
    await page.evaluate("document.querySelector('main form').setAttribute('novalidate', '')");
    await page.click('button[type=submit]');
    await expect.poll(() => page.textContent('#f-email-error')).toContain('expected one address');
    await inspect(page, 'find-workspace-error');
    await page.fill('#f-email', OWNER);
    await page.click('button[type=submit]');
    await expect.poll(() => page.textContent('[role=status]')).toContain('We have sent the addresses');
    const found = await lastMailTo(OWNER);
    expect(found).toContain('Subject: Your workspaces');
    // Paid and set up in the first test: listed without a note (a workspace not ready says why).
    expect(found).toMatch(new RegExp(`http://browser-co\\.localhost:${edge.port}/\\r?\\n`));
    expect(found).not.toContain('(pending payment)');
    await page.fill('#f-email', 'nobody@browser-co.test');
    await page.click('button[type=submit]');
    const sameAnswer = await page.textContent('main');
    expect(sameAnswer).toContain('We have sent the addresses');
    await context.close();
  });
});
