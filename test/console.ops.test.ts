import path from 'node:path';
import os from 'node:os';
import { mkdtempSync, rmSync } from 'node:fs';
import { sql } from 'kysely';
import { Secret, TOTP } from 'otpauth';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadCatalog } from '../src/catalog/load.ts';
import { syncCatalog } from '../src/catalog/sync.ts';
import { loadConfig } from '../src/config/load.ts';
import { newId } from '../src/core/ids.ts';
import { acmeSettings, orderAndRecord } from '../src/edge/renewal.ts';
import { appendAudit } from '../src/identity/audit.ts';
import { hashPassword } from '../src/identity/passwords.ts';
import { INBOX_MAX_ATTEMPTS } from '../src/orchestrator/inbox.ts';
import { startAcmeDns, type AcmeDns } from './support/acme-dns.ts';
import { launchChromium, pageInspector, skipBrowser } from './support/browser.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import { startTestEdge, type TestEdge } from './support/edge.ts';
import { viaEdge } from './support/live-platform.ts';

/**
 * The operator console's operations pages in Chromium, on a real edge and API
 * over a real database, with a local ACME CA: jobs and failed work (retry a
 * resource the orchestrator gave up on, and a received event, each through its
 * confirmation dialog), hosts and capacity (drain and undrain), certificates
 * (renew now from the CA), the audit log (filters, pages by `before`, a bad
 * filter's 400 page) and the chain's verify, intact and after tampering. Every
 * page: no serious or critical axe-core violation, screenshots at 1280 px and
 * 390 px in test-output/console-ops/, no horizontal scroll at 390 px.
 */
const OUT = path.resolve('test-output/console-ops');
const PASSWORD = 'correct horse battery staple 42';
const ADMIN = 'ops@platform.test';

let testDb: TestDatabase;
let edge: TestEdge;
let acme: AcmeDns;
let browser: Browser;
/** The operator's browser, signed in by the first test (a TOTP code works once). */
let context: BrowserContext;
let base: string;
let secret: string;
let brokenId: string;
let acmeId: string;
let hostId: string;
let dataDir: string;
let inspect: Awaited<ReturnType<typeof pageInspector>>;

const totp = (offsetSteps = 0) =>
  TOTP.generate({ secret: Secret.fromBase32(secret), timestamp: Date.now() + offsetSteps * 30_000 });

async function api(method: string, url: string, body?: object, token?: string) {
  const res = await viaEdge(`localhost:${edge.port}`, edge.port, {
    method,
    path: url,
    headers: {
      ...(body ? { 'content-type': 'application/json' } : {}),
      ...(token ? { authorization: `Bearer ${token}` } : {}),
    },
    body: body ? JSON.stringify(body) : undefined,
  });
  return { status: res.status, body: JSON.parse(res.body) as Record<string, unknown> };
}

beforeAll(async () => {
  if (skipBrowser) return;
  testDb = await createTestDatabase();
  const db = testDb.db;
  await syncCatalog(db, loadCatalog());
  acme = await startAcmeDns();
  edge = await startTestEdge(testDb, { env: acme.env });
  base = `http://localhost:${edge.port}`;

  // A tenant whose provisioning the orchestrator gave up on.
  brokenId = newId('tenant');
  await db
    .insertInto('tenants')
    .values({ id: brokenId, slug: 'broken', company: 'Broken Ltd', status: 'provisioning' })
    .execute();
  await db
    .insertInto('resources')
    .values({
      kind: 'tenant',
      id: brokenId,
      tenant_id: brokenId,
      spec: JSON.stringify({ slug: 'broken' }),
      steps: JSON.stringify([]),
      phase: 'failed',
      failures: 7,
      last_error: 'dashboard container: lxc-start exited 1',
      updated_at: new Date(),
    })
    .execute();
  // A Stripe event that failed for good, and an alert that could not be sent.
  await db
    .insertInto('inbox')
    .values({
      id: 'evt_1Gave',
      source: 'stripe',
      type: 'invoice.paid',
      payload: JSON.stringify({}),
      attempts: INBOX_MAX_ATTEMPTS,
      last_error: 'no tenant for customer cus_42',
    })
    .execute();
  await db
    .insertInto('outbox')
    .values({
      key: 'alert:capacity:x',
      kind: 'alert',
      payload: JSON.stringify({}),
      status: 'failed',
      attempts: 5,
      last_error: 'smtp: 550 mailbox unavailable',
    })
    .execute();
  // A host with an active tenant's dashboard on it.
  hostId = newId('host');
  await db
    .insertInto('hosts')
    .values({ id: hostId, name: 'rack1-node1', driver: 'lxc', memory_mb: 16384, cores: 8, disk_gb: 500 })
    .execute();
  acmeId = newId('tenant');
  await db
    .insertInto('tenants')
    .values({ id: acmeId, slug: 'acme', company: 'Acme Corp', status: 'active', host_id: hostId })
    .execute();
  await db
    .insertInto('resources')
    .values({
      kind: 'tenant',
      id: acmeId,
      tenant_id: acmeId,
      spec: JSON.stringify({ slug: 'acme' }),
      steps: JSON.stringify([]),
      phase: 'ready',
      updated_at: new Date(),
    })
    .execute();
  // 60 audit entries of acme's: more than a page of 50.
  for (let i = 0; i < 60; i++) {
    await appendAudit(db, {
      actorType: 'user',
      actorId: 'user_owner',
      tenantId: acmeId,
      action: `tenant.test.${i}`,
      targetType: null,
      targetId: null,
      sourceIp: '192.0.2.7',
      result: 'success',
      details: {},
    });
  }
  // A certificate the platform ordered from the CA.
  dataDir = mkdtempSync(path.join(os.tmpdir(), 'aiqso-console-ops-'));
  const config = loadConfig(
    { ...acme.env, AIQSO_DATA_DIR: dataDir, AIQSO_BASE_DOMAIN: 'localhost' },
    dataDir,
  );
  await orderAndRecord(db, acmeSettings(config, db), ['*.shops.test']);

  // A platform admin enrolled in two-factor through the API.
  await db
    .insertInto('users')
    .values({
      id: newId('user'),
      email: ADMIN,
      role: 'platform_admin',
      tenant_id: null,
      password_hash: await hashPassword(PASSWORD),
    })
    .execute();
  const refused = await api('POST', '/api/v1/auth/login', { email: ADMIN, password: PASSWORD });
  const token = (refused.body.error as { details: { enrolmentToken: string } }).details.enrolmentToken;
  const enrol = await api('POST', '/api/v1/auth/totp/enrol', {}, token);
  secret = new URL(String(enrol.body.otpauthUrl)).searchParams.get('secret')!;
  const confirmed = await api('POST', '/api/v1/auth/totp/confirm', { code: totp() }, token);
  expect(confirmed.status).toBe(200);

  inspect = await pageInspector(OUT);
  browser = await launchChromium();
}, 120_000);

afterAll(async () => {
  await context?.close();
  await browser?.close();
  await edge?.close();
  await acme?.close();
  await testDb?.drop();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

/** Open a page's confirmation dialog, inspect it, confirm, and wait for the page to say it was done. */
async function confirmThrough(page: Page, link: string, dialog: string, done: RegExp, shot: string) {
  expect(await page.isVisible(dialog)).toBe(false);
  await page.click(link);
  expect(await page.isVisible(dialog)).toBe(true);
  await inspect(page, shot);
  await page.click(`${dialog} button[type=submit]`);
  await page.waitForURL(done);
}

describe.skipIf(skipBrowser)('operator console: operations pages in Chromium', { timeout: 240_000 }, () => {
  it('jobs, hosts, certificates and the audit log, with their actions through confirmation dialogs', async () => {
    context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    const cspViolations: string[] = [];
    page.on('console', (m) => {
      if (/Content Security Policy/i.test(m.text())) cspViolations.push(m.text());
    });

    // Not signed in: an operations page asks for a sign-in.
    await page.goto(`${base}/admin/jobs`);
    expect(new URL(page.url()).pathname).toBe('/admin/login');
    await page.fill('#f-email', ADMIN);
    await page.fill('#f-password', PASSWORD);
    await page.click('button[type=submit]');
    await page.waitForURL(/\/admin\/login\/code/);
    await page.fill('#f-code', totp(1));
    await page.click('button[type=submit]');
    await page.waitForURL(`${base}/admin/tenants`);

    // ── Jobs and failed work ──
    await page.click('header nav >> text=Jobs');
    await page.waitForURL(`${base}/admin/jobs`);
    const counts = page.locator('[aria-label=Counts]');
    expect(await counts.textContent()).toMatch(/Resources needing an operator\s*1/);
    expect(await counts.textContent()).toMatch(/Received events failing\s*1/);
    const resources = page.locator('[aria-label="Resources needing an operator"]');
    expect(await resources.textContent()).toContain('dashboard container: lxc-start exited 1');
    expect(await page.textContent('[aria-label="Undelivered side effects"]')).toContain(
      'smtp: 550 mailbox unavailable',
    );
    expect(await page.textContent('main')).toContain('No worker is running');
    await inspect(page, 'jobs');
    const dialog = `#confirm-retry-tenant-${brokenId}`;
    await confirmThrough(
      page,
      `${'[aria-label="Resources needing an operator"]'} >> text=Retry…`,
      dialog,
      /done=retried/,
      'jobs-confirm-retry',
    );
    await expect.poll(() => page.textContent('[role=status]')).toContain('being reconciled again');
    expect(await page.textContent('main')).toContain('Nothing needs an operator');
    // The retry queued its reconcile: the jobs table shows it.
    expect(await page.textContent('[aria-label=Jobs]')).toContain(brokenId);
    const resource = await testDb.pool.query<{ phase: string; failures: number }>(
      'SELECT phase, failures FROM resources WHERE id = $1',
      [brokenId],
    );
    expect(resource.rows[0]).toEqual({ phase: 'reconciling', failures: 0 });
    await confirmThrough(
      page,
      '[aria-label="Received events failing"] >> text=Retry…',
      '#confirm-inbox-evt_1Gave',
      /done=inbox-retried/,
      'jobs-confirm-inbox',
    );
    await expect.poll(() => page.textContent('[role=status]')).toContain('processed again');
    const event = await testDb.pool.query<{ attempts: number }>(
      "SELECT attempts FROM inbox WHERE id = 'evt_1Gave'",
    );
    expect(event.rows[0]!.attempts).toBe(0);
    await inspect(page, 'jobs-after');

    // ── Hosts and capacity ──
    await page.click('header nav >> text=Hosts');
    await page.waitForURL(`${base}/admin/hosts`);
    const hosts = page.locator('[aria-label=Hosts]');
    const row = await hosts.locator('tbody tr').filter({ hasText: 'rack1-node1' }).textContent();
    // The acme dashboard's request: 32 MB, 1 core, 1 GB, one container.
    expect(row).toMatch(/32 of \d+ MB/);
    expect(row).toContain('1 of 8 cores');
    expect(row).toContain('1 of 500 GB');
    expect(row).toContain('active');
    await inspect(page, 'hosts');
    await confirmThrough(
      page,
      '[aria-label=Hosts] >> text=Drain…',
      `#confirm-drain-${hostId}`,
      /done=drained/,
      'hosts-confirm-drain',
    );
    expect(await hosts.textContent()).toContain('draining');
    const drained = await testDb.pool.query<{ draining: boolean }>(
      'SELECT draining FROM hosts WHERE id = $1',
      [hostId],
    );
    expect(drained.rows[0]!.draining).toBe(true);
    await inspect(page, 'hosts-drained');
    await confirmThrough(
      page,
      '[aria-label=Hosts] >> text=Undrain…',
      `#confirm-undrain-${hostId}`,
      /done=undrained/,
      'hosts-confirm-undrain',
    );
    const undrained = await testDb.pool.query<{ draining: boolean }>(
      'SELECT draining FROM hosts WHERE id = $1',
      [hostId],
    );
    expect(undrained.rows[0]!.draining).toBe(false);

    // ── Certificates ──
    await page.click('header nav >> text=Certificates');
    await page.waitForURL(`${base}/admin/certificates`);
    const certs = page.locator('[aria-label=Certificates]');
    expect(await certs.textContent()).toContain('*.shops.test');
    expect(await certs.textContent()).toContain('dns-01');
    // The CA issues for a day: due for renewal, 0 days left.
    expect(await certs.textContent()).toMatch(/due\s*0 days left/);
    await inspect(page, 'certificates');
    const issued = acme.ca.issued;
    await confirmThrough(
      page,
      '[aria-label=Certificates] >> text=Renew now…',
      '#confirm-renew-__shops_test',
      /done=renewed/,
      'certificates-confirm-renew',
    );
    expect(acme.ca.issued).toBe(issued + 1);
    await expect.poll(() => page.textContent('[role=status]')).toContain('renewed');

    // ── Audit log ──
    await page.click('header nav >> text=Audit');
    await page.waitForURL(`${base}/admin/audit`);
    const entries = page.locator('[aria-label="Audit entries"]');
    // Newest first: the renewal this operator just made.
    expect(await entries.locator('tbody tr').first().textContent()).toContain('certificate.renew');
    expect(await entries.textContent()).toContain('host.drain');
    await inspect(page, 'audit');
    await page.fill('#a-tenant', 'acme');
    await page.click('form[role=search] button');
    await page.waitForURL(/tenant=acme/);
    expect(await entries.locator('tbody tr').count()).toBe(50);
    expect(await entries.locator('tbody tr').first().textContent()).toContain('tenant.test.59');
    await page.click('.pager a:text-is("Older")');
    await page.waitForURL(/before=\d+/);
    expect(new URL(page.url()).searchParams.get('tenant')).toBe('acme');
    expect(await entries.locator('tbody tr').count()).toBe(10);
    expect(await entries.locator('tbody tr').last().textContent()).toContain('tenant.test.0');
    expect(await page.locator('.pager a:text-is("Older")').count()).toBe(0);
    await inspect(page, 'audit-older');
    await page.click('.pager a:text-is("Newest")');
    await page.waitForURL((u) => !u.searchParams.has('before'));
    // A time window in the future holds nothing.
    await page.fill('#a-from', '2099-01-01T00:00');
    await page.click('form[role=search] button');
    await expect.poll(() => page.textContent('.empty')).toContain('No audit entries');
    // A bad filter is a 400 page saying what was wrong.
    const bad = await page.goto(`${base}/admin/audit?from=yesterday`);
    expect(bad!.status()).toBe(400);
    expect(await page.textContent('main')).toContain('"from" must be a date');
    await inspect(page, 'audit-bad-filter');
    const badBefore = await page.goto(`${base}/admin/audit?before=abc`);
    expect(badBefore!.status()).toBe(400);

    // ── Verify the chain ──
    await page.goto(`${base}/admin/audit`);
    await page.click('text=verify the chain');
    await page.waitForURL(`${base}/admin/audit/verify`);
    await page.click('text=Verify now');
    await page.waitForURL(/run=1/);
    await expect.poll(() => page.textContent('[role=status]')).toContain('Intact');
    const anchor = (await page.textContent('#audit-anchor'))!.trim();
    expect(anchor).toMatch(/^\d+:[0-9a-f]{64}$/);
    await inspect(page, 'audit-verify-intact');
    await page.fill('#f-expect', anchor);
    await page.click('text=Verify now');
    await expect.poll(() => page.textContent('[role=status]')).toContain('Intact');
    const badHead = await page.goto(`${base}/admin/audit/verify?run=1&expect=12:nothex`);
    expect(badHead!.status()).toBe(400);
    // An intruder with the triggers off edits an entry: verify names it.
    const { rows } = await testDb.pool.query<{ id: string }>(
      "SELECT id FROM audit_log WHERE action = 'tenant.test.30'",
    );
    await testDb.db.transaction().execute(async (trx) => {
      await sql`SET LOCAL session_replication_role = replica`.execute(trx);
      await sql`UPDATE audit_log SET result = 'failure' WHERE id = ${rows[0]!.id}`.execute(trx);
    });
    await page.goto(`${base}/admin/audit/verify`);
    await page.fill('#f-expect', anchor);
    await page.click('text=Verify now');
    await expect
      .poll(() => page.textContent('[role=alert]'))
      .toContain(`first bad row id ${rows[0]!.id} (its content was changed)`);
    expect(await page.textContent('dl.facts')).toContain('content_changed');
    await inspect(page, 'audit-verify-tampered');

    // Every action was the API's, audited as this operator's.
    const audit = await testDb.pool.query<{ action: string }>(
      `SELECT action FROM audit_log WHERE action IN ('resource.retry', 'inbox.retry', 'host.drain', 'host.undrain', 'certificate.renew') ORDER BY id`,
    );
    expect(audit.rows.map((r) => r.action)).toEqual([
      'resource.retry',
      'inbox.retry',
      'host.drain',
      'host.undrain',
      'certificate.renew',
    ]);
    expect(cspViolations).toEqual([]);
    await page.close();
  });

  it('shows a refusal as an error page with the API words, and a form without its CSRF token is refused', async () => {
    const page = await context.newPage();
    // Retrying a resource that is not failed (any more): the API's 409, as a page.
    await page.goto(`${base}/admin/jobs`);
    const csrf = await page.locator('input[name=csrf]').first().inputValue();
    const conflict = await page.request.post(`${base}/admin/jobs/resources/tenant/${acmeId}/retry`, {
      form: { csrf },
    });
    expect(conflict.status()).toBe(409);
    expect(await conflict.text()).toContain('only a failed resource can be retried');
    const noCsrf = await page.request.post(`${base}/admin/hosts/${hostId}/drain`, { form: {} });
    expect(noCsrf.status()).toBe(403);
    const host = await testDb.pool.query<{ draining: boolean }>('SELECT draining FROM hosts WHERE id = $1', [
      hostId,
    ]);
    expect(host.rows[0]!.draining).toBe(false);
    await page.close();
  });
});
