import path from 'node:path';
import { Secret, TOTP } from 'otpauth';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadCatalog } from '../src/catalog/load.ts';
import { syncCatalog } from '../src/catalog/sync.ts';
import { newId } from '../src/core/ids.ts';
import type { TenantStatus } from '../src/core/tenants.ts';
import { upsertRoute } from '../src/edge/routes-store.ts';
import { hashPassword } from '../src/identity/passwords.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import { startTestEdge, type TestEdge } from './support/edge.ts';
import { viaEdge } from './support/live-platform.ts';
import { launchChromium, pageInspector, skipBrowser } from './support/browser.ts';
import { eventually, startEchoUpstream, type EchoUpstream } from './support/upstreams.ts';

/**
 * The operator console in Chromium, on a real edge and API over a real
 * database: a new platform admin's first sign-in (password, TOTP enrolment
 * with the QR code's secret, recovery codes shown once, then a code); the
 * tenants page (search, status filter, pages); a tenant's page (provisioning
 * timeline, services, incidents, audit); suspend (the workspace answers the
 * suspended page), reactivate, retry a failed service, each through its
 * confirmation dialog. Every page: no serious or critical axe-core violation,
 * screenshots at 1280 px and 390 px in test-output/console/, no horizontal
 * scroll at 390 px. Errors: HTML pages for a browser, JSON for the API.
 */
const OUT = path.resolve('test-output/console');
const PASSWORD = 'correct horse battery staple 42';
const ADMIN = 'operator@platform.test';

let testDb: TestDatabase;
let edge: TestEdge;
let upstream: EchoUpstream;
let browser: Browser;
let base: string;
let acmeId: string;
let inspect: Awaited<ReturnType<typeof pageInspector>>;

async function tenant(slug: string, status: TenantStatus, company: string): Promise<string> {
  const id = newId('tenant');
  await testDb.db.insertInto('tenants').values({ id, slug, company, status }).execute();
  return id;
}

beforeAll(async () => {
  if (skipBrowser) return;
  testDb = await createTestDatabase();
  const db = testDb.db;
  await syncCatalog(db, loadCatalog());
  edge = await startTestEdge(testDb);
  base = `http://localhost:${edge.port}`;
  upstream = await startEchoUpstream('acme-dash');
  // 24 other tenants, a third of them suspended: two pages of 20 at least.
  for (let i = 1; i <= 24; i++) {
    await tenant(`shop${String(i).padStart(2, '0')}`, i % 3 === 0 ? 'suspended' : 'active', `Shop ${i}`);
  }
  acmeId = await tenant('acme', 'active', 'Acme Corp');
  await upsertRoute(db, {
    hostname: 'acme.localhost',
    tenantId: acmeId,
    upstream: { host: '127.0.0.1', port: upstream.port },
  });
  // Its provisioning as the tenant reconciler recorded it.
  const at = (m: number) => new Date(Date.now() - m * 60_000).toISOString();
  const steps = ['workspace record', 'placement', 'dashboard container', 'route', 'activate'].map(
    (name, i) => ({
      name,
      state: 'done' as const,
      attempts: i === 2 ? 2 : 1,
      startedAt: at(10 - i),
      finishedAt: at(9 - i),
    }),
  );
  await db
    .insertInto('resources')
    .values({
      kind: 'tenant',
      id: acmeId,
      tenant_id: acmeId,
      spec: JSON.stringify({ slug: 'acme', company: 'Acme Corp' }),
      steps: JSON.stringify(steps),
      updated_at: new Date(),
    })
    .execute();
  // Its owner subscribes to Notes through the API; the deployment then failed its health check.
  const hash = await hashPassword(PASSWORD);
  await db
    .insertInto('users')
    .values({
      id: newId('user'),
      email: 'owner@acme.test',
      role: 'tenant_owner',
      tenant_id: acmeId,
      password_hash: hash,
    })
    .execute();
  const api = async (method: string, url: string, body?: object, token?: string) => {
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
  };
  const owner = await api('POST', '/api/v1/auth/login', { email: 'owner@acme.test', password: PASSWORD });
  expect(owner.status).toBe(200);
  const subscribed = await api(
    'POST',
    '/api/v1/tenants/acme/services',
    { service: 'notes' },
    owner.body.accessToken as string,
  );
  expect(subscribed.status).toBe(202);
  const { rows } = await testDb.pool.query<{ id: string }>(
    `UPDATE tenant_services ts SET status = 'failed', status_reason = 'health check: GET /healthz did not answer 200 within 3 s'
       FROM services s WHERE s.id = ts.service_id AND s.key = 'notes' AND ts.tenant_id = $1 RETURNING ts.id`,
    [acmeId],
  );
  await testDb.pool.query("UPDATE resources SET phase = 'failed' WHERE id = $1", [rows[0]!.id]);
  // A platform admin who has never signed in: no two-factor yet.
  await db
    .insertInto('users')
    .values({ id: newId('user'), email: ADMIN, role: 'platform_admin', tenant_id: null, password_hash: hash })
    .execute();
  inspect = await pageInspector(OUT);
  browser = await launchChromium();
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await upstream?.close();
  await edge?.close();
  await testDb?.drop();
});

const totp = (secret: string, offsetSteps = 0) =>
  TOTP.generate({ secret: Secret.fromBase32(secret), timestamp: Date.now() + offsetSteps * 30_000 });

describe.skipIf(skipBrowser)('operator console in Chromium', { timeout: 180_000 }, () => {
  it('first sign-in enrols TOTP; find the tenant; suspend, reactivate, retry a failed service', async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    const cspViolations: string[] = [];
    page.on('console', (m) => {
      if (/Content Security Policy/i.test(m.text())) cspViolations.push(m.text());
    });

    // Not signed in: /admin leads to the sign-in page.
    await page.goto(`${base}/admin`);
    expect(new URL(page.url()).pathname).toBe('/admin/login');
    await inspect(page, 'sign-in');

    // A wrong password says so and keeps the email.
    await page.fill('#f-email', ADMIN);
    await page.fill('#f-password', 'not the password');
    await page.click('button[type=submit]');
    await expect.poll(() => page.textContent('[role=alert]')).toContain('Wrong email or password.');
    expect(await page.inputValue('#f-email')).toBe(ADMIN);
    await inspect(page, 'sign-in-error');

    // First sign-in: enrolment with a QR code (an SVG rendered by the platform) and its secret.
    await page.fill('#f-password', PASSWORD);
    await page.click('button[type=submit]');
    await page.waitForURL(`${base}/admin/enrol`);
    expect(await page.locator('svg.qr').count()).toBe(1);
    const secret = (await page.textContent('#totp-secret'))!.trim();
    expect(secret).toMatch(/^[A-Z2-7]{32}$/);
    await inspect(page, 'enrol');

    // A wrong first code keeps the same secret.
    await page.fill('#f-code', '000000');
    await page.click('button[type=submit]');
    await expect.poll(() => page.textContent('[role=alert]')).toContain('That code is wrong or expired.');
    expect((await page.textContent('#totp-secret'))!.trim()).toBe(secret);

    await page.fill('#f-code', totp(secret));
    await page.click('button[type=submit]');
    await expect.poll(() => page.textContent('h1')).toBe('Save your recovery codes');
    const codes = await page.locator('ul.codes li').allTextContents();
    expect(codes).toHaveLength(10);
    await inspect(page, 'recovery-codes');

    // Then the next code signs in (the confirming code's time step is spent).
    await page.click('text=I have saved them: continue');
    await page.waitForURL(/\/admin\/login\/code/);
    await inspect(page, 'second-factor');
    await page.fill('#f-code', totp(secret, 1));
    await page.click('button[type=submit]');
    await page.waitForURL(`${base}/admin/tenants`);

    // Tenants: 25, in pages of 20; search; status filter.
    expect(await page.textContent('.pager')).toContain('Showing 1–20 of 25');
    await inspect(page, 'tenants');
    await page.click('text=Next');
    await page.waitForURL(/page=2/);
    expect(await page.textContent('.pager')).toContain('Showing 21–25 of 25');
    await page.selectOption('#status', 'suspended');
    await page.click('form[role=search] button');
    await page.waitForURL(/status=suspended/);
    expect(await page.textContent('.pager')).toContain('of 8');
    await page.fill('#q', 'no such tenant');
    await page.click('form[role=search] button');
    await expect.poll(() => page.textContent('.empty')).toContain('No tenant matches');
    await inspect(page, 'tenants-empty');
    await page.selectOption('#status', '');
    await page.fill('#q', 'acme');
    await page.click('form[role=search] button');
    await page.waitForURL(/q=acme/);
    expect(await page.locator('tbody tr').count()).toBe(1);
    await page.click('tbody a:text("acme")');
    await page.waitForURL(`${base}/admin/tenants/acme`);

    // The tenant: timeline, services (Notes failed), audit.
    expect(await page.locator('.timeline li').allTextContents()).toEqual([
      expect.stringContaining('workspace record'),
      expect.stringContaining('placement'),
      expect.stringContaining('dashboard container'),
      expect.stringContaining('route'),
      expect.stringContaining('activate'),
    ]);
    expect(await page.textContent('.timeline')).toContain('2 attempts');
    const servicesTable = page.locator('[aria-label=Services]');
    expect(await servicesTable.textContent()).toContain('health check: GET /healthz did not answer');
    expect(await page.textContent('[aria-label="Audit log"]')).toContain('tenant.service.subscribe');
    await inspect(page, 'tenant');

    const workspace = () => viaEdge(`acme.localhost:${edge.port}`, edge.port);
    expect((await workspace()).status).toBe(200);

    // Suspend, through its confirmation dialog.
    expect(await page.isVisible('#confirm-suspend')).toBe(false);
    await page.click('text=Suspend…');
    expect(await page.isVisible('#confirm-suspend')).toBe(true);
    await inspect(page, 'confirm-suspend');
    await page.click('#confirm-suspend button[type=submit]');
    await page.waitForURL(/done=suspended/);
    await expect.poll(() => page.textContent('[role=status]')).toContain('The tenant is suspended');
    expect(await page.textContent('dl.facts')).toContain('suspended by an operator');
    // The tenant's own address now answers the suspended page, in the browser too.
    await eventually(async () => ((await workspace()).status === 402 ? true : undefined));
    const visitor = await context.newPage();
    await visitor.goto(`http://acme.localhost:${edge.port}/`);
    expect(await visitor.textContent('h1')).toBe('Workspace suspended');
    await visitor.close();

    // Reactivate: the workspace answers again.
    await page.click('text=Reactivate…');
    await page.click('#confirm-reactivate button[type=submit]');
    await page.waitForURL(/done=reactivated/);
    expect(await page.textContent('dl.facts')).toContain('active');
    await eventually(async () => ((await workspace()).status === 200 ? true : undefined));

    // Retry the failed service: it is pending again and queued for deployment.
    await page.click('text=Retry…');
    expect(await page.isVisible('#confirm-retry-notes')).toBe(true);
    await page.click('#confirm-retry-notes button[type=submit]');
    await page.waitForURL(/done=retried/);
    expect(await servicesTable.textContent()).toContain('pending');
    expect(await page.locator('text=Retry…').count()).toBe(0);
    const service = await testDb.pool.query<{ status: string }>(
      `SELECT ts.status FROM tenant_services ts JOIN services s ON s.id = ts.service_id WHERE s.key = 'notes'`,
    );
    expect(service.rows[0]!.status).toBe('pending');
    // Each action is the API's, audited as the operator's.
    const audit = await testDb.pool.query<{ action: string; actor_id: string | null }>(
      `SELECT action, actor_id FROM audit_log WHERE tenant_id = $1 AND action IN ('tenant.suspend', 'tenant.reactivate', 'tenant.service.retry', 'tenant.suspended', 'tenant.reactivated') ORDER BY id`,
      [acmeId],
    );
    expect(audit.rows.map((r) => r.action)).toEqual([
      'tenant.suspended',
      'tenant.suspend',
      'tenant.reactivated',
      'tenant.reactivate',
      'tenant.service.retry',
    ]);
    expect(new Set(audit.rows.map((r) => r.actor_id)).size).toBe(1);
    expect(audit.rows[0]!.actor_id).not.toBeNull();

    // Another tenant cancelled, then purged without waiting for its grace period, each through its
    // confirmation.
    await page.goto(`${base}/admin/tenants/shop01`);
    const shopId = (await testDb.pool.query<{ id: string }>("SELECT id FROM tenants WHERE slug = 'shop01'"))
      .rows[0]!.id;
    await page.click('text=Cancel the tenant…');
    expect(await page.isVisible('#confirm-cancel')).toBe(true);
    await inspect(page, 'confirm-cancel');
    await page.click('#confirm-cancel button[type=submit]');
    await page.waitForURL(/done=cancelled/);
    expect(await page.textContent('main')).toContain('The tenant is cancelled');
    const statusOf = async () =>
      (await testDb.pool.query<{ status: string }>('SELECT status FROM tenants WHERE id = $1', [shopId]))
        .rows[0]!.status;
    expect(await statusOf()).toBe('cancelled');
    expect(await page.locator('text=Cancel the tenant…').count()).toBe(0);
    await page.click('text=Purge now…');
    await page.click('#confirm-purge button[type=submit]');
    await page.waitForURL(/done=purged/);
    expect(await page.textContent('main')).toContain('The tenant is being purged');
    const ended = await testDb.pool.query<{ action: string }>(
      `SELECT action FROM audit_log WHERE tenant_id = $1 AND action IN ('tenant.cancel', 'tenant.purge') ORDER BY id`,
      [shopId],
    );
    expect(ended.rows.map((r) => r.action)).toEqual(['tenant.cancel', 'tenant.purge']);

    // Error pages: HTML with a way back for the browser.
    const missing = await page.goto(`${base}/admin/no-such-page`);
    expect(missing!.status()).toBe(404);
    expect(await page.textContent('h1')).toBe('Page not found');
    expect(await page.getAttribute('main a.button', 'href')).toBe('/admin/tenants');
    await inspect(page, 'not-found');
    const badPage = await page.goto(`${base}/admin/tenants?page=0`);
    expect(badPage!.status()).toBe(400);
    expect(await page.textContent('main')).toContain('The page number must be a whole number from 1.');

    // Signing out ends the session: the console asks for a sign-in again.
    await page.goto(`${base}/admin/tenants`);
    await page.click('text=Sign out');
    await page.waitForURL(`${base}/admin/login`);
    await page.goto(`${base}/admin/tenants`);
    expect(new URL(page.url()).pathname).toBe('/admin/login');
    expect(cspViolations).toEqual([]);
    await context.close();
  });

  it('answers a browser with HTML error pages and an API client with JSON', async () => {
    const html = await viaEdge(`localhost:${edge.port}`, edge.port, {
      path: '/nowhere',
      headers: { accept: 'text/html,application/xhtml+xml' },
    });
    expect(html.status).toBe(404);
    expect(html.headers['content-type']).toMatch(/^text\/html/);
    expect(html.body).toContain('<a class="button" href="/">Go to the home page</a>');
    expect(html.headers['content-security-policy']).not.toContain('script-src');
    const json = await viaEdge(`localhost:${edge.port}`, edge.port, {
      path: '/api/v1/nowhere',
      headers: { accept: 'text/html' },
    });
    expect(json.status).toBe(404);
    expect(JSON.parse(json.body)).toMatchObject({ error: { code: 'not_found' } });
    const api = await viaEdge(`localhost:${edge.port}`, edge.port, { path: '/nowhere' });
    expect(JSON.parse(api.body)).toMatchObject({ error: { code: 'not_found' } });
    // A console page without a session goes to the sign-in page; a form without its CSRF token is refused.
    const page = await viaEdge(`localhost:${edge.port}`, edge.port, {
      path: '/admin/tenants',
      headers: { accept: 'text/html' },
    });
    expect([page.status, page.headers.location]).toEqual([303, '/admin/login?expired']);
    const forged = await viaEdge(`localhost:${edge.port}`, edge.port, {
      method: 'POST',
      path: '/admin/tenants/acme/suspend',
      headers: { accept: 'text/html', 'content-type': 'application/x-www-form-urlencoded' },
      body: 'csrf=forged',
    });
    expect(forged.status).toBe(403);
    expect(forged.body).toContain('This form has expired');
    expect(
      (
        await testDb.db
          .selectFrom('tenants')
          .select('status')
          .where('id', '=', acmeId)
          .executeTakeFirstOrThrow()
      ).status,
    ).toBe('active');

    // A tenant's user with the right password is not let in, and keeps no session from trying.
    const form = await viaEdge(`localhost:${edge.port}`, edge.port, { path: '/admin/login' });
    const csrf = /name="csrf" value="([^"]+)"/.exec(form.body)![1]!;
    const cookie = ([] as string[])
      .concat(form.headers['set-cookie'] ?? [])
      .map((c) => c.split(';')[0])
      .join('; ');
    const sessions = async () =>
      Number(
        (
          await testDb.pool.query<{ n: string }>(
            "SELECT count(*) AS n FROM sessions s JOIN users u ON u.id = s.user_id WHERE u.email = 'owner@acme.test' AND s.revoked_at IS NULL",
          )
        ).rows[0]!.n,
      );
    const before = await sessions();
    const owner = await viaEdge(`localhost:${edge.port}`, edge.port, {
      method: 'POST',
      path: '/admin/login',
      headers: { accept: 'text/html', cookie, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ csrf, email: 'owner@acme.test', password: PASSWORD }).toString(),
    });
    expect(owner.status).toBe(403);
    expect(owner.body).toContain('This console is for platform operators.');
    expect(([] as string[]).concat(owner.headers['set-cookie'] ?? []).join('\n')).not.toMatch(
      /aiqso_console_at=[^;]/,
    );
    expect(await sessions()).toBe(before);
  });
});
