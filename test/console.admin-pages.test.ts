import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Secret, TOTP } from 'otpauth';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadCatalog } from '../src/catalog/load.ts';
import { syncCatalog } from '../src/catalog/sync.ts';
import { loadConfig } from '../src/config/load.ts';
import { newId } from '../src/core/ids.ts';
import { generateMasterKey } from '../src/identity/secrets.ts';
import { hashPassword } from '../src/identity/passwords.ts';
import { recordSnapshot } from './support/backups.ts';
import { launchChromium, pageInspector, skipBrowser } from './support/browser.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import { startTestEdge, type TestEdge } from './support/edge.ts';
import type { Harness } from './support/identity.ts';
import { viaEdge } from './support/live-platform.ts';

/**
 * The operator console's platform pages in Chromium, on a real edge and API
 * over a real database: users (search, filters, a TOTP reset through its
 * dialog), plans and catalog, backups across tenants and a tenant's Backups
 * section (back up now, restore a service and the whole tenant through their
 * dialogs, over a real restic repository), usage, event webhooks (redeliver
 * through its dialog) and the configuration, in which no secret's value
 * appears. Every page: no serious or critical axe-core violation, screenshots
 * at 1280 px and 390 px in test-output/console-admin/, no horizontal scroll at 390 px.
 */
const OUT = path.resolve('test-output/console-admin');
const PASSWORD = 'correct horse battery staple 42';
const ADMIN = 'operator@platform.test';
const SECRETS = {
  AIQSO_METRICS_TOKEN: 'metrics-token-console-page-5521',
  AIQSO_ADMIN_PASSWORD: 'admin-password-console-page-9982',
  SMTP_URL: 'smtp://mailer:smtp-pass-console-page-8812@127.0.0.1:2525',
};
const HIDDEN = [
  'metrics-token-console-page-5521',
  'admin-password-console-page-9982',
  'smtp-pass-console-page-8812',
];

let testDb: TestDatabase;
let edge: TestEdge;
let browser: Browser;
let base: string;
let acmeId: string;
let repoDir: string;
let masterKey: string;
let inspect: Awaited<ReturnType<typeof pageInspector>>;

beforeAll(async () => {
  if (skipBrowser) return;
  testDb = await createTestDatabase();
  const db = testDb.db;
  await syncCatalog(db, loadCatalog());
  repoDir = mkdtempSync(path.join(os.tmpdir(), 'aiqso-console-repo-'));
  masterKey = generateMasterKey();
  const env = { ...SECRETS, AIQSO_MASTER_KEY: masterKey, AIQSO_BACKUP_REPOSITORY: repoDir };
  edge = await startTestEdge(testDb, { env });
  base = `http://localhost:${edge.port}`;

  acmeId = newId('tenant');
  await db
    .insertInto('tenants')
    .values({ id: acmeId, slug: 'acme', company: 'Acme Corp', status: 'active' })
    .execute();
  const globexId = newId('tenant');
  await db
    .insertInto('tenants')
    .values({ id: globexId, slug: 'globex', company: 'Globex', status: 'active' })
    .execute();
  const hash = await hashPassword(PASSWORD);
  await db
    .insertInto('users')
    .values([
      {
        id: newId('user'),
        email: 'owner@acme.test',
        role: 'tenant_owner',
        tenant_id: acmeId,
        password_hash: hash,
      },
      {
        id: newId('user'),
        email: 'member@acme.test',
        role: 'tenant_member',
        tenant_id: acmeId,
        password_hash: hash,
      },
      {
        id: newId('user'),
        email: 'owner@globex.test',
        role: 'tenant_owner',
        tenant_id: globexId,
        password_hash: hash,
      },
      { id: newId('user'), email: ADMIN, role: 'platform_admin', tenant_id: null, password_hash: hash },
    ])
    .execute();
  // A second operator who has two-factor on: the one whose TOTP gets reset.
  const otherAdmin = newId('user');
  await db
    .insertInto('users')
    .values({
      id: otherAdmin,
      email: 'other-op@platform.test',
      role: 'platform_admin',
      tenant_id: null,
      password_hash: hash,
    })
    .execute();
  await db
    .insertInto('user_totp')
    .values({ user_id: otherAdmin, secret_enc: 'sealed', enabled_at: new Date() })
    .execute();

  // Acme's owner subscribes to Notes through the API; it has a real snapshot in its restic repository.
  const login = await viaEdge(`localhost:${edge.port}`, edge.port, {
    method: 'POST',
    path: '/api/v1/auth/login',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email: 'owner@acme.test', password: PASSWORD }),
  });
  const token = (JSON.parse(login.body) as { accessToken: string }).accessToken;
  const subscribed = await viaEdge(`localhost:${edge.port}`, edge.port, {
    method: 'POST',
    path: '/api/v1/tenants/acme/services',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify({ service: 'notes' }),
  });
  expect(subscribed.status).toBe(202);
  const ts = await testDb.pool.query<{ id: string }>(
    `UPDATE tenant_services ts SET status = 'active' FROM services s WHERE s.id = ts.service_id AND s.key = 'notes' AND ts.tenant_id = $1 RETURNING ts.id`,
    [acmeId],
  );
  const runId = 'brn_acme_daily';
  await db
    .insertInto('resources')
    .values({
      kind: 'backup-run',
      id: runId,
      tenant_id: acmeId,
      spec: JSON.stringify({ tenantId: acmeId, purpose: 'scheduled' }),
      steps: '[]',
      phase: 'ready',
    })
    .execute();
  const config = loadConfig({ AIQSO_DATA_DIR: repoDir, ...env });
  await recordSnapshot({ config, db: testDb } as unknown as Harness, {
    tenantId: acmeId,
    tenantServiceId: ts.rows[0]!.id,
    runId,
    content: 'PGDMP acme notes',
  });
  // Globex's last run failed: it comes first on the backups page.
  await db
    .insertInto('resources')
    .values({
      kind: 'backup-run',
      id: 'brn_globex_bad',
      tenant_id: globexId,
      spec: JSON.stringify({ tenantId: globexId, purpose: 'scheduled' }),
      steps: '[]',
      phase: 'failed',
      last_error: 'restic: repository is locked by another process',
    })
    .execute();
  await db
    .insertInto('backup_verifications')
    .values({
      id: 'bvf_globex_bad',
      tenant_id: globexId,
      status: 'failed',
      read_data_percent: 5,
      error: 'row counts differ for notes',
      started_at: new Date(Date.now() - 3_600_000),
      finished_at: new Date(Date.now() - 3_500_000),
    })
    .execute();
  // Usage this month: acme used the CPU an hour ago.
  await testDb.pool.query(
    `INSERT INTO usage_metrics (tenant_id, tenant_service_id, metric, value, period_start)
     VALUES ($1, NULL, 'requests', 1234, date_trunc('hour', now()) - interval '1 hour')`,
    [acmeId],
  );
  // A platform webhook endpoint and a failed delivery to it.
  await testDb.pool.query(
    `INSERT INTO webhook_endpoints (id, tenant_id, url, events, description, secret_enc)
     VALUES ('whe_console', NULL, 'https://hooks.example/aiqso', ARRAY['tenant.*'], 'ops chat', 'sealed')`,
  );
  const event = await testDb.pool.query<{ seq: string }>(
    `INSERT INTO webhook_events (id, type, tenant_id, data) VALUES ('evt_console', 'tenant.suspended', $1, '{}') RETURNING seq`,
    [acmeId],
  );
  await testDb.pool.query(
    `INSERT INTO webhook_deliveries (endpoint_id, event_id, event_seq, lane, tenant_id, status, attempts, last_status, last_error)
     VALUES ('whe_console', 'evt_console', $2, $1, NULL, 'failed', 8, 500, 'the receiver answered 500')`,
    [acmeId, event.rows[0]!.seq],
  );
  inspect = await pageInspector(OUT);
  browser = await launchChromium();
}, 180_000);

afterAll(async () => {
  await browser?.close();
  await edge?.close();
  await testDb?.drop();
  if (repoDir) rmSync(repoDir, { recursive: true, force: true });
});

const totp = (secret: string, offsetSteps = 0) =>
  TOTP.generate({ secret: Secret.fromBase32(secret), timestamp: Date.now() + offsetSteps * 30_000 });

async function signIn(page: Page): Promise<void> {
  await page.goto(`${base}/admin/login`);
  await page.fill('#f-email', ADMIN);
  await page.fill('#f-password', PASSWORD);
  await page.click('button[type=submit]');
  await page.waitForURL(`${base}/admin/enrol`);
  const secret = (await page.textContent('#totp-secret'))!.trim();
  await page.fill('#f-code', totp(secret));
  await page.click('button[type=submit]');
  await page.click('text=I have saved them: continue');
  await page.fill('#f-code', totp(secret, 1));
  await page.click('button[type=submit]');
  await page.waitForURL(`${base}/admin/tenants`);
}

describe.skipIf(skipBrowser)('operator console platform pages in Chromium', { timeout: 240_000 }, () => {
  it('users, catalog, backups and restores, usage, webhooks and configuration', async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    await signIn(page);

    // ── Users: every user; filters; a TOTP reset through its dialog.
    await page.click('nav >> text=Users');
    await page.waitForURL(`${base}/admin/users`);
    const rows = () => page.locator('[aria-label=Users] tbody tr').allTextContents();
    expect(await rows()).toHaveLength(5);
    await inspect(page, 'users');
    await page.fill('#tenant', 'acme');
    await page.click('form[role=search] button');
    await page.waitForURL(/tenant=acme/);
    expect((await rows()).map((r) => r.split('usr_')[0])).toEqual(['member@acme.test', 'owner@acme.test']);
    await page.fill('#tenant', '');
    await page.selectOption('#totp', 'on');
    await page.click('form[role=search] button');
    await page.waitForURL(/totp=on/);
    const withTotp = await rows();
    expect(withTotp.map((r) => r.split('usr_')[0])).toEqual([
      'operator@platform.test',
      'other-op@platform.test',
    ]);
    await page.click('[aria-label=Users] tbody tr:nth-child(2) >> text=Reset two-factor…');
    expect(await page.isVisible('#confirm-reset-2')).toBe(true);
    expect(await page.textContent('#confirm-reset-2')).toContain('other-op@platform.test');
    await inspect(page, 'users-confirm-reset');
    await page.click('#confirm-reset-2 button[type=submit]');
    await page.waitForURL(/done=totp-reset/);
    expect(page.url()).toContain('totp=on');
    await expect
      .poll(() => page.textContent('[role=status]'))
      .toContain('Two-factor authentication was reset');
    expect((await rows()).map((r) => r.split('usr_')[0])).toEqual(['operator@platform.test']);
    // Resetting one's own two-factor is refused by the API, shown with its words.
    await page.click('[aria-label=Users] tbody tr:nth-child(1) >> text=Reset two-factor…');
    await page.click('#confirm-reset-1 button[type=submit]');
    expect(await page.textContent('main')).toContain('you cannot reset your own two-factor authentication');
    // A bad filter is the API's 400, named.
    const bad = await page.goto(`${base}/admin/users?role=chief`);
    expect(bad!.status()).toBe(400);
    expect(await page.textContent('main')).toContain('role');

    // ── Plans and catalog.
    await page.goto(`${base}/admin/catalog`);
    expect(await page.textContent('[aria-label=Plans]')).toMatch(/\$\d+/);
    const catalog = await page.textContent('[aria-label="Catalog services"]');
    expect(catalog).toContain('Notes');
    expect(catalog).toMatch(/\d+ \/ \d+ MB/);
    expect(catalog).toContain('the process driver runs only app services');
    await inspect(page, 'catalog');

    // ── Backups across tenants: failures first.
    await page.goto(`${base}/admin/backups`);
    const runs = await page.locator('[aria-label="Backup runs"] tbody tr').allTextContents();
    expect(runs[0]).toContain('globex');
    expect(runs[0]).toContain('repository is locked');
    expect(runs[1]).toContain('acme');
    expect(runs[1]).toContain('0 of 1');
    expect(await page.textContent('[aria-label=Verifications]')).toContain('row counts differ for notes');
    await inspect(page, 'backups');
    await page.click('[aria-label="Backup runs"] >> text=acme');
    await page.waitForURL(`${base}/admin/tenants/acme`);

    // ── The tenant's Backups section: back up now, restore a service, restore the tenant.
    expect(await page.locator('[aria-label=Snapshots] tbody tr').count()).toBe(1);
    await inspect(page, 'tenant-backups');
    await page.click('text=Back up now…');
    await page.click('#confirm-backup button[type=submit]');
    await page.waitForURL(/backups=backup-started/);
    expect(await page.textContent('#backups [role=status]')).toContain('A backup run has started');
    const manual = await testDb.pool.query(
      `SELECT spec->>'purpose' AS purpose FROM resources WHERE kind = 'backup-run' AND tenant_id = $1 AND spec->>'purpose' = 'manual'`,
      [acmeId],
    );
    expect(manual.rowCount).toBe(1);
    expect(await page.textContent('#backups [aria-label="Backup runs"]')).toContain('manual');

    // The whole tenant, through its dialog: every deployed service's restore is queued.
    await page.click('text=Restore the tenant…');
    expect(await page.textContent('#confirm-restore-tenant')).toContain(
      'overwritten with its newest snapshot',
    );
    await inspect(page, 'confirm-restore-tenant');
    await page.click('#confirm-restore-tenant button[type=submit]');
    await page.waitForURL(/backups=tenant-restore-started/);
    expect(await page.textContent('#backups [role=status]')).toContain("The tenant's restore is queued");
    const restores = await testDb.pool.query<{ status: string }>(
      'SELECT status FROM restores WHERE tenant_id = $1',
      [acmeId],
    );
    expect(restores.rows.map((r) => r.status)).toEqual(['running']);

    // One service, from its snapshot's dialog: refused while that restore runs, with the API's words.
    await page.click('[aria-label=Snapshots] >> text=Restore…');
    expect(await page.textContent('#confirm-restore-1')).toContain('overwritten with this snapshot');
    await inspect(page, 'confirm-restore-service');
    const [answer] = await Promise.all([
      page.waitForResponse((r) => r.url().endsWith('/services/notes/restore')),
      page.click('#confirm-restore-1 button[type=submit]'),
    ]);
    expect(answer.status()).toBe(409);
    expect(await page.textContent('main')).toContain('of notes is still running');
    const requested = await testDb.pool.query<{ action: string; result: string }>(
      `SELECT action, result FROM audit_log WHERE action IN ('tenant.restore', 'tenant.service.restore') AND tenant_id = $1 ORDER BY id`,
      [acmeId],
    );
    expect(requested.rows).toEqual([
      { action: 'tenant.restore', result: 'success' },
      { action: 'tenant.service.restore', result: 'failure' },
    ]);

    // ── Usage.
    await page.goto(`${base}/admin/usage`);
    expect(await page.textContent('[aria-label="Usage per tenant"]')).toContain('1,234');
    expect(await page.textContent('[aria-label="Usage per host"]')).toContain('1,234');
    await inspect(page, 'usage');
    await page.selectOption('#sort', 'requests');
    await page.click('main form button');
    await page.waitForURL(/sort=requests/);
    const badMonth = await page.goto(`${base}/admin/usage?month=2026-13`);
    expect(badMonth!.status()).toBe(400);

    // ── Event webhooks: redeliver through its dialog.
    await page.goto(`${base}/admin/webhooks`);
    expect(await page.textContent('[aria-label=Endpoints]')).toContain('https://hooks.example/aiqso');
    expect(await page.textContent('[aria-label=Deliveries]')).toContain('the receiver answered 500');
    await page.click('text=Redeliver…');
    await inspect(page, 'webhooks-confirm-redeliver');
    await page.locator('.dialog:target button[type=submit]').click();
    await page.waitForURL(/done=redelivered/);
    const delivery = await testDb.pool.query<{ status: string; attempts: number }>(
      'SELECT status, attempts FROM webhook_deliveries',
    );
    expect(delivery.rows).toEqual([{ status: 'pending', attempts: 0 }]);

    // ── Configuration: no secret's value on the page.
    await page.goto(`${base}/admin/config`);
    const content = await page.content();
    for (const secret of [...HIDDEN, masterKey]) expect(content).not.toContain(secret);
    expect(content).toContain('smtp://mailer:***@127.0.0.1:2525');
    expect(await page.textContent('main')).toContain('set (secret)');
    await inspect(page, 'config');

    // Bad input to the pages and forms: a 4xx page saying what was wrong, never a 5xx.
    const csrf = (await context.cookies()).find((c) => c.name === 'aiqso_console_csrf')!.value;
    const post = (url: string, form: Record<string, string>) =>
      context.request.post(`${base}${url}`, { form: { csrf, ...form }, maxRedirects: 0 });
    const badSnapshot = await post('/admin/tenants/acme/services/notes/restore', { snapshot: 'zz' });
    expect(badSnapshot.status()).toBe(400);
    expect(await badSnapshot.text()).toContain('Choose a snapshot to restore from the list.');
    const unknownSnapshot = await post('/admin/tenants/acme/services/notes/restore', {
      snapshot: 'deadbeef',
    });
    expect(unknownSnapshot.status()).toBeGreaterThanOrEqual(400);
    expect(unknownSnapshot.status()).toBeLessThan(500);
    const noDelivery = await post('/admin/webhooks/deliveries/999999/redeliver', {});
    expect(noDelivery.status()).toBe(404);
    expect(await noDelivery.text()).toContain('999999');
    const noTenant = await post('/admin/tenants/no-such-tenant/backups', {});
    expect(noTenant.status()).toBe(404);
    const tooSoon = await post('/admin/tenants/acme/backups', {});
    expect(tooSoon.status()).toBe(429);
    expect(await tooSoon.text()).toContain('back up again after 10 minutes');
    const badSort = await page.goto(`${base}/admin/usage?sort=bogus`);
    expect(badSort!.status()).toBe(400);
    expect(await page.textContent('main')).toContain('sort must be tenant or one of');
    const badTenant = await page.goto(`${base}/admin/backups?tenant=${encodeURIComponent('no such')}`);
    expect(badTenant!.status()).toBe(400);
    const badPage = await page.goto(`${base}/admin/users?page=0`);
    expect(badPage!.status()).toBe(400);

    // Every action above is the API's, audited as the operator's.
    const audit = await testDb.pool.query<{ action: string }>(
      `SELECT DISTINCT action FROM audit_log WHERE action IN ('platform.user.totp.reset', 'tenant.backup.run', 'tenant.service.restore', 'tenant.restore', 'webhook.delivery.redeliver') ORDER BY action`,
    );
    expect(audit.rows.map((r) => r.action)).toEqual(
      expect.arrayContaining([
        'platform.user.totp.reset',
        'tenant.backup.run',
        'tenant.service.restore',
        'tenant.restore',
      ]),
    );
    await context.close();
  });

  it('keeps the pages behind sign-in and the forms behind their CSRF token', async () => {
    for (const p of [
      '/admin/users',
      '/admin/catalog',
      '/admin/backups',
      '/admin/usage',
      '/admin/webhooks',
      '/admin/config',
    ]) {
      const res = await viaEdge(`localhost:${edge.port}`, edge.port, {
        path: p,
        headers: { accept: 'text/html' },
      });
      expect([p, res.status, res.headers.location]).toEqual([p, 303, '/admin/login?expired']);
    }
    const forged = await viaEdge(`localhost:${edge.port}`, edge.port, {
      method: 'POST',
      path: '/admin/tenants/acme/restore',
      headers: { accept: 'text/html', 'content-type': 'application/x-www-form-urlencoded' },
      body: 'csrf=forged',
    });
    expect(forged.status).toBe(403);
  });
});
