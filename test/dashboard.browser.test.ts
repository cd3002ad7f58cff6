import path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadCatalog } from '../src/catalog/load.ts';
import { syncCatalog } from '../src/catalog/sync.ts';
import { upsertRoute } from '../src/edge/routes-store.ts';
import { appendAudit } from '../src/identity/audit.ts';
import { startDashboard, type RunningDashboard } from './support/dashboard.ts';
import { createHarness, PASSWORD, type Harness } from './support/identity.ts';
import { launchChromium, pageInspector, skipBrowser, signInToWorkspace } from './support/browser.ts';

/**
 * The tenant dashboard (dashboard/server.mjs, its own process against the real
 * API and database) in Chromium, as an owner: the overview (each service's
 * state in words, URL, uptime over 24 h / 7 d / 30 d, open incident; retry a
 * failed service; unsubscribe through a confirmation that says when the data
 * is destroyed and how to undo, then undo; subscribe with the price shown, and
 * the plan's limit); the team (invite by e-mail link, the invitee sets a
 * password and is signed in, the link works once; change a role; remove a
 * member); the activity log in pages; backups with "Back up now"; usage
 * against the plan with the 80% and 100% warnings; a member's narrower view.
 * Every page: no serious or critical axe-core violation, screenshots at
 * 1280 px and 390 px in test-output/dashboard/, no horizontal scroll at 390 px.
 */
const OUT = path.resolve('test-output/dashboard');

let h: Harness;
let dash: RunningDashboard;
let browser: Browser;
let base: string;
let inspect: Awaited<ReturnType<typeof pageInspector>>;
const hour = 3_600_000;

async function status(key: string): Promise<string | undefined> {
  const row = await h.db.db
    .selectFrom('tenant_services as ts')
    .innerJoin('services as s', 's.id', 'ts.service_id')
    .select('ts.status')
    .where('s.key', '=', key)
    .where('ts.tenant_id', '=', h.a.id)
    .executeTakeFirst();
  return row?.status;
}

async function subscribe(service: string): Promise<string> {
  const res = await h.api.inject({
    method: 'POST',
    url: `/api/v1/tenants/${h.a.slug}/services`,
    headers: h.bearer(h.a.owner.token),
    payload: { service },
  });
  expect(res.statusCode, res.body).toBe(202);
  return res.json<{ id: string }>().id;
}

beforeAll(async () => {
  if (skipBrowser) return;
  h = await createHarness();
  const db = h.db.db;
  await syncCatalog(db, loadCatalog());
  // The workspace's host, so that signing in gets an edge session for it.
  await upsertRoute(db, {
    hostname: 'alpha.localhost',
    tenantId: h.a.id,
    upstream: { host: '127.0.0.1', port: 9 },
  });
  dash = await startDashboard(h, h.a, 'Alpha Widgets');
  base = `http://alpha.localhost:${dash.port}`;
  // Notes runs, with an open incident; Social Media Manager failed its health check.
  const notes = await subscribe('notes');
  await db.updateTable('tenant_services').set({ status: 'active' }).where('id', '=', notes).execute();
  const now = Date.now();
  await db
    .insertInto('health_checks')
    .values({
      target_id: notes,
      target_kind: 'service',
      tenant_id: h.a.id,
      state: 'failing',
      last_result: 'answered 502, expected 200',
      last_probe_at: new Date(now - 1000),
    })
    .execute();
  await db
    .insertInto('health_transitions')
    .values([
      { target_id: notes, tenant_id: h.a.id, healthy: true, at: new Date(now - 48 * hour) },
      { target_id: notes, tenant_id: h.a.id, healthy: false, at: new Date(now - 6 * hour) },
    ])
    .execute();
  await db
    .insertInto('incidents')
    .values({
      id: 'inc_notes_alpha',
      tenant_id: h.a.id,
      target_id: notes,
      target_kind: 'service',
      target_name: 'Notes',
      reason: 'Notes of alpha: GET /healthz answered 502',
      rungs: JSON.stringify([]),
      opened_at: new Date(now - 6 * hour),
    })
    .execute();
  const smm = await subscribe('social-media-manager');
  await db
    .updateTable('tenant_services')
    .set({ status: 'failed', status_reason: 'health check: GET /healthz did not answer 200 within 3 s' })
    .where('id', '=', smm)
    .execute();
  await db.updateTable('resources').set({ phase: 'failed' }).where('id', '=', smm).execute();
  // A finished backup; enough audit rows for two pages of activity.
  await db
    .insertInto('backups')
    .values({
      id: 'bkp_alpha_notes',
      tenant_id: h.a.id,
      tenant_service_id: notes,
      kind: 'database',
      status: 'done',
      service: 'notes',
      snapshot_id: 'a1b2c3d4',
      size_bytes: '2400000',
    })
    .execute();
  for (let i = 0; i < 25; i++) {
    await appendAudit(db, {
      actorType: 'user',
      actorId: h.a.owner.id,
      tenantId: h.a.id,
      action: 'tenant.api_key.create',
      targetType: 'api_key',
      targetId: `key_${i}`,
      sourceIp: '198.51.100.7',
      result: 'success',
      details: {},
    });
  }
  // This month so far: 850,000 requests (85% of Starter's million) and 11 GB stored (110% of 10 GB).
  const month = new Date(`${new Date().toISOString().slice(0, 7)}-01T00:00:00Z`);
  await db
    .insertInto('usage_metrics')
    .values([
      { tenant_id: h.a.id, tenant_service_id: null, metric: 'requests', value: 850_000, period_start: month },
      { tenant_id: h.a.id, tenant_service_id: null, metric: 'disk_bytes', value: 11e9, period_start: month },
    ])
    .execute();
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

const notice = (page: Page) => page.textContent('.notice');

describe.skipIf(skipBrowser)('tenant dashboard in Chromium', { timeout: 240_000 }, () => {
  it('overview, team, activity, backups and usage as an owner; a member sees less', async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    const cspViolations: string[] = [];
    page.on('console', (m) => {
      if (/Content Security Policy/i.test(m.text())) cspViolations.push(m.text());
    });

    await page.goto(`${base}/`);
    expect(await page.textContent('h1')).toBe('Alpha Widgets');
    expect(await page.textContent('main')).toContain('Sign in with your platform account.');
    await inspect(page, 'sign-in');
    await signIn(page, h.a.owner.email);

    // Overview: states in words, URL, uptime over three windows, the open incident, the price.
    const services = page.locator('[aria-label="Your services"]');
    const notesRow = services.locator('tr', { hasText: 'Notes' });
    expect(await notesRow.textContent()).toContain('Not answering');
    expect(await notesRow.textContent()).toContain('http://alpha.localhost:8080/notes/');
    expect(await notesRow.textContent()).toMatch(/24 h 75\.0% · 7 d 8\d\.\d% · 30 d 8\d\.\d%/);
    expect(await notesRow.textContent()).toContain('Notes of alpha: GET /healthz answered 502');
    const smmRow = services.locator('tr', { hasText: 'Social Media Manager' });
    expect(await smmRow.textContent()).toContain(
      'Setting it up failed: it started but did not answer in time.',
    );
    const offer = page.locator('[aria-label="Add a service"]');
    expect(await offer.textContent()).toContain(
      'Included in your Starter plan ($49.00 a month): 1 of 2 services in use.',
    );
    await inspect(page, 'overview');

    // Retry the failed service: it is being set up again, and the plan is now full.
    await smmRow.getByRole('button', { name: 'Retry' }).click();
    await expect.poll(() => notice(page)).toContain('Social Media Manager is being set up again');
    expect(await status('social-media-manager')).toBe('pending');
    expect(await offer.textContent()).toContain("Your plan's 2 services are in use: unsubscribe one first.");

    // Unsubscribe Notes through its confirmation: when the data goes, and how to undo.
    const dialog = page.locator('#unsubscribe-0');
    expect(await dialog.isVisible()).toBe(false);
    await notesRow.locator('text=Unsubscribe…').click();
    expect(await dialog.isVisible()).toBe(true);
    const text = (await dialog.textContent())!;
    expect(text).toContain('Its data is kept for 7 days, until');
    expect(text).toContain('and then destroyed for good. To undo, subscribe to Notes again before then');
    await inspect(page, 'confirm-unsubscribe');
    // Cancel changes nothing.
    await dialog.locator('text=Cancel').click();
    expect(await dialog.isVisible()).toBe(false);
    expect(await status('notes')).toBe('active');
    await notesRow.locator('text=Unsubscribe…').click();
    await dialog.locator('button[type=submit]').click();
    await expect.poll(() => notice(page)).toContain('Notes is unsubscribed. Its data is destroyed after');
    expect(await status('notes')).toBe('removing');
    expect(await notesRow.textContent()).toContain('Unsubscribed');

    // With a place free, subscribe to the Content Creation Suite at the price shown.
    await page.click('text=Subscribe to Content Creation Suite');
    await expect.poll(() => notice(page)).toContain('Content Creation Suite is being set up');
    expect(await status('content-suite')).toBe('pending');
    // Undoing the unsubscribe now meets the plan's limit: the refusal says so.
    await notesRow.getByRole('button', { name: 'Subscribe again' }).click();
    await expect
      .poll(() => page.textContent('.notice.error'))
      .toContain('the Starter plan allows 2 services');
    expect(await status('notes')).toBe('removing');
    await inspect(page, 'overview-refused');

    // Team: invite by e-mail link.
    await page.click('nav >> text=Team');
    await page.waitForURL(`${base}/team`);
    await inspect(page, 'team');
    // An address already in use: the reason next to the field, the address and role kept.
    await page.fill('#f-invite-email', h.a.member.email);
    await page.selectOption('#f-invite-role', 'tenant_owner');
    await page.click('text=Send invitation');
    await page.waitForSelector('#f-invite-email-error');
    expect(await page.textContent('#f-invite-email-error')).toContain('already exists');
    expect(await page.inputValue('#f-invite-email')).toBe(h.a.member.email);
    expect(await page.inputValue('#f-invite-role')).toBe('tenant_owner');
    expect(await page.getAttribute('#f-invite-email', 'aria-invalid')).toBe('true');
    await inspect(page, 'team-invite-refused');
    await page.selectOption('#f-invite-role', 'tenant_member');
    await page.fill('#f-invite-email', 'newbie@alpha.test');
    await page.click('text=Send invitation');
    await expect.poll(() => notice(page)).toContain('Invitation sent to newbie@alpha.test.');
    expect(await page.textContent('[aria-label="Open invitations"]')).toContain('newbie@alpha.test');
    const mail = await h.db.db
      .selectFrom('outbox')
      .select('payload')
      .where('key', 'like', 'invitation:%')
      .executeTakeFirstOrThrow();
    const payload = mail.payload as { to: string; text: string };
    expect(payload.to).toBe('newbie@alpha.test');
    const link = /(http\S+\/invite\?token=[\w-]+)/.exec(payload.text)![1]!;
    const token = new URL(link).searchParams.get('token')!;

    // The invitee opens the link, is refused a password that is their address, then signs in.
    const invitee = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const inv = await invitee.newPage();
    await inv.goto(`${base}/invite?token=${token}`);
    expect(await inv.textContent('h1')).toBe('Join Alpha Widgets');
    await inspect(inv, 'invite');
    await inv.fill('#f-password', 'newbie!!!!!!!');
    await inv.click('main button[type=submit]');
    await expect.poll(() => inv.textContent('#f-password-error')).toContain('must not be your email address');
    expect(await inv.getAttribute('#f-password', 'aria-invalid')).toBe('true');
    await inspect(inv, 'invite-error');
    await inv.fill('#f-password', 'a long and unusual passphrase 7');
    await inv.click('main button[type=submit]');
    await expect.poll(() => inv.textContent('main')).toContain('Signed in as newbie@alpha.test (member)');
    expect(await inv.textContent('.notice')).toContain('Welcome to Alpha Widgets.');
    // The link works once.
    const again = await inv.goto(`${base}/invite?token=${token}`);
    expect(again!.status()).toBe(200);
    await inv.fill('#f-password', 'another long passphrase 8');
    await inv.click('main button[type=submit]');
    await expect
      .poll(() => inv.textContent('.notice'))
      .toContain('This invitation link is not valid any more');
    await invitee.close();

    // Roles: the member becomes an owner; then the new member is removed, through a confirmation.
    await page.goto(`${base}/team`);
    expect(await page.textContent('[aria-label="Open invitations"], .empty')).toContain(
      'No open invitations',
    );
    const members = page.locator('[aria-label="Team members"]');
    const memberRow = members.locator('tr', { hasText: h.a.member.email });
    await memberRow.locator('select').selectOption('tenant_owner');
    await memberRow.locator('text=Change role').click();
    await expect.poll(() => notice(page)).toContain(`${h.a.member.email} is now owner.`);
    const newbieRow = members.locator('tr', { hasText: 'newbie@alpha.test' });
    await newbieRow.locator('text=Remove…').click();
    const remove = page.locator('.dialog:target');
    expect(await remove.textContent()).toContain('is signed out everywhere at once');
    await inspect(page, 'confirm-remove');
    await remove.locator('button[type=submit]').click();
    await expect
      .poll(() => notice(page))
      .toContain('newbie@alpha.test is removed from the team and signed out.');
    expect(
      await h.db.db
        .selectFrom('users')
        .select('id')
        .where('email', '=', 'newbie@alpha.test')
        .executeTakeFirst(),
    ).toBeUndefined();

    // Activity: the audit log, newest first, in pages of 20.
    await page.click('nav >> text=Activity');
    await page.waitForURL(`${base}/activity`);
    const activity = page.locator('[aria-label=Activity]');
    expect(await activity.locator('tbody tr').count()).toBe(20);
    expect(await activity.textContent()).toContain('Removed a member');
    expect(await activity.textContent()).toContain(h.a.owner.email);
    await inspect(page, 'activity');
    await page.click('text=Older entries');
    await page.waitForURL(/activity\?before=\d+/);
    expect(await activity.locator('tbody tr').count()).toBeGreaterThan(0);
    expect(await activity.textContent()).toContain('Created an API key');
    expect(await page.textContent('.pager')).toContain('Newest');

    // Backups: the list, and back up now (once every 10 minutes).
    await page.click('nav >> text=Backups');
    await page.waitForURL(`${base}/backups`);
    expect(await page.textContent('[aria-label=Backups]')).toContain('2.4 MB');
    await inspect(page, 'backups');
    await page.getByRole('button', { name: 'Back up now' }).click();
    await expect.poll(() => notice(page)).toContain('A backup is running');
    await page.getByRole('button', { name: 'Back up now' }).click();
    await expect.poll(() => page.textContent('.notice.error')).toContain('back up again after 10 minutes');

    // Usage: this month against the plan, with the 80% and 100% warnings.
    await page.click('nav >> text=Usage');
    await page.waitForURL(`${base}/usage`);
    const usage = (await page.textContent('main'))!;
    expect(usage).toContain('Requests: you have used 85% of what your plan includes this month.');
    expect(usage).toContain(
      'Storage: you have used 110% of what your plan includes this month, more than it includes.',
    );
    expect(await page.textContent('[aria-label="Usage this month"]')).toContain('1,000,000 requests');
    await inspect(page, 'usage');

    // Errors: a page that does not exist, with a way back.
    const missing = await page.goto(`${base}/nowhere`);
    expect(missing!.status()).toBe(404);
    expect(await page.getAttribute('main a.button', 'href')).toBe('./');
    await inspect(page, 'not-found');

    // A member: no owner pages, no owner buttons.
    const created = await h.api.inject({
      method: 'POST',
      url: `/api/v1/tenants/${h.a.slug}/users`,
      headers: h.bearer(h.a.owner.token),
      payload: { email: 'reader@alpha.test', password: PASSWORD, role: 'tenant_member' },
    });
    expect(created.statusCode, created.body).toBe(201);
    const other = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const mp = await other.newPage();
    await signIn(mp, 'reader@alpha.test');
    expect(await mp.locator('header nav a').allTextContents()).toEqual([
      'Overview',
      'Team',
      'Usage',
      'Security',
      'Preferences',
    ]);
    expect(await mp.locator('text=Unsubscribe…').count()).toBe(0);
    await inspect(mp, 'member-overview');
    await mp.goto(`${base}/team`);
    expect(await mp.locator('#f-invite-email').count()).toBe(0);
    expect(await mp.locator('text=Remove…').count()).toBe(0);
    await mp.goto(`${base}/activity`);
    expect(await mp.textContent('.notice.error')).toContain('Only owners can read the activity log.');
    await other.close();

    // Cancel the workspace (the owner): the grace date, a confirmation, then cancelled.
    await page.goto(`${base}/workspace`);
    expect(await page.textContent('main')).toContain('The data is kept for 90 days, until');
    await inspect(page, 'workspace');
    await page.getByRole('link', { name: 'Cancel the workspace…' }).click();
    const confirm = page.locator('#confirm-cancel');
    expect(await confirm.isVisible()).toBe(true);
    await inspect(page, 'confirm-cancel');
    await confirm.locator('button[type=submit]').click();
    await expect.poll(() => page.textContent('h1')).toBe('Alpha Widgets is cancelled');
    const gone = await h.db.db
      .selectFrom('tenants')
      .select(['status', 'purge_after'])
      .where('id', '=', h.a.id)
      .executeTakeFirstOrThrow();
    expect(gone.status).toBe('cancelled');
    const purge = `${gone.purge_after!.toISOString().slice(0, 16).replace('T', ' ')} UTC`;
    expect(await page.textContent('.notice')).toContain(`The data is deleted for good after ${purge}.`);
    await inspect(page, 'cancelled');
    const audit = await h.db.db
      .selectFrom('audit_log')
      .select(['action', 'actor_id'])
      .where('tenant_id', '=', h.a.id)
      .where('action', '=', 'tenant.cancel.owner')
      .execute();
    expect(audit).toEqual([{ action: 'tenant.cancel.owner', actor_id: h.a.owner.id }]);
    expect(cspViolations).toEqual([]);
    await context.close();
  });
});
