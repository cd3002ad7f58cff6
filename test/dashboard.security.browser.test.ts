import path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { upsertRoute } from '../src/edge/routes-store.ts';
import {
  Browser as FormBrowser,
  apiUrl,
  startDashboard,
  type RunningDashboard,
} from './support/dashboard.ts';
import { createHarness, PASSWORD, totpCode, type Harness } from './support/identity.ts';
import { launchChromium, pageInspector, skipBrowser, signInToWorkspace } from './support/browser.ts';

/**
 * The tenant dashboard's Security and Preferences pages (dashboard/security.mjs, its own process
 * against the real API and database) in Chromium: change the password (refusals next to their
 * field; the other sessions end, this one stays), set up two-factor authentication with the QR
 * code and the first code (recovery codes shown once), turn it off with a recovery code; the
 * owner's own API keys (create with an expiry, the secret shown once, revoke through a
 * confirmation); the user's sessions (sign out one, sign out everywhere else); the product
 * e-mail opt-in with its date and wording. The sign-in pages link to the portal's password reset.
 * A member sees no key controls, and nobody reaches another user's session or key through the
 * dashboard. Every page: no serious or critical axe-core violation, screenshots at 1280 px and
 * 390 px in test-output/dashboard-security/, no horizontal scroll at 390 px.
 */
const OUT = path.resolve('test-output/dashboard-security');

let h: Harness;
let dash: RunningDashboard;
let browser: Browser;
let base: string;
let portal: string;
let inspect: Awaited<ReturnType<typeof pageInspector>>;

let n = 0;
/** A new user of tenant A: its id and email (password PASSWORD). */
async function newUser(role: 'tenant_owner' | 'tenant_member'): Promise<{ id: string; email: string }> {
  const email = `sec${++n}@alpha.test`;
  const res = await h.api.inject({
    method: 'POST',
    url: `/api/v1/tenants/${h.a.slug}/users`,
    headers: h.bearer(h.a.owner.token),
    payload: { email, password: PASSWORD, role },
  });
  expect(res.statusCode, res.body).toBe(201);
  return { id: res.json<{ id: string }>().id, email };
}

const me = (token: string) =>
  h.api.inject({ method: 'GET', url: '/api/v1/auth/me', headers: h.bearer(token) });

async function audit(action: string, actorId: string) {
  return h.db.db
    .selectFrom('audit_log')
    .select(['result', 'tenant_id', 'target_id'])
    .where('action', '=', action)
    .where('actor_id', '=', actorId)
    .orderBy('id')
    .execute();
}

beforeAll(async () => {
  if (skipBrowser) return;
  h = await createHarness();
  await upsertRoute(h.db.db, {
    hostname: 'alpha.localhost',
    tenantId: h.a.id,
    upstream: { host: '127.0.0.1', port: 9 },
  });
  dash = await startDashboard(h, h.a, 'Alpha Widgets');
  base = `http://alpha.localhost:${dash.port}`;
  portal = (await apiUrl(h)).replace('127.0.0.1', 'localhost');
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

describe.skipIf(skipBrowser)('security and preferences pages in Chromium', { timeout: 300_000 }, () => {
  it('the sign-in pages link to the password reset, and the link leads there', async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    await page.goto(`${base}/`);
    const forgot = page.getByRole('link', { name: 'Forgot your password?' });
    expect(await forgot.getAttribute('href')).toBe(`${portal}/password-reset`);
    await inspect(page, 'sign-in');
    await forgot.click();
    await page.waitForURL(`${portal}/password-reset`);
    expect(await page.textContent('h1')).toBe('Reset your password');

    // The operator console's sign-in links to the same page on its own host.
    await page.goto(`${portal}/admin/login`);
    await page.getByRole('link', { name: 'Forgot your password?' }).click();
    await page.waitForURL(`${portal}/password-reset`);
    expect(await page.textContent('h1')).toBe('Reset your password');
    await context.close();
  });

  it('an owner changes the password, sets up and turns off TOTP, manages keys and sessions, and chooses e-mails', async () => {
    const owner = await newUser('tenant_owner');
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    const cspViolations: string[] = [];
    page.on('console', (m) => {
      if (/Content Security Policy/i.test(m.text())) cspViolations.push(m.text());
    });
    // Signed in elsewhere too (another browser, the API).
    const elsewhere = await h.login(owner.email);
    await signIn(page, owner.email);
    await page.click('nav >> text=Security');
    await page.waitForURL(`${base}/security`);
    expect(await page.textContent('h1')).toBe('Security');
    expect(await page.getAttribute('nav a[href="security"]', 'aria-current')).toBe('page');
    await inspect(page, 'security');

    // Password: each refusal next to its field, in plain words.
    const password = page.locator('section', { has: page.locator('#h-password') });
    await page.fill('#f-currentPassword', 'not my password at all');
    await page.fill('#f-newPassword', 'a brand new passphrase 9');
    await password.locator('button[type=submit]').click();
    await expect
      .poll(() => page.textContent('#f-currentPassword-error'))
      .toBe('That is not your current password.');
    expect(await page.getAttribute('#f-currentPassword', 'aria-invalid')).toBe('true');
    await page.fill('#f-currentPassword', PASSWORD);
    await page.fill('#f-newPassword', 'short');
    await password.locator('button[type=submit]').click();
    await expect.poll(() => page.textContent('#f-newPassword-error')).toContain('Choose another password:');
    expect(await page.textContent('#f-newPassword-error')).toContain('12 characters');
    await inspect(page, 'security-password-refused');
    expect((await me(elsewhere.accessToken)).statusCode).toBe(200);
    const newPassword = 'a brand new passphrase 9';
    await page.fill('#f-currentPassword', PASSWORD);
    await page.fill('#f-newPassword', newPassword);
    await password.locator('button[type=submit]').click();
    await expect
      .poll(() => notice(page))
      .toContain('Your password is changed. Every other session is signed out.');
    // The other login ended; this one goes on (the page still works).
    expect((await me(elsewhere.accessToken)).statusCode).toBe(401);
    await page.reload();
    expect(await page.textContent('h1')).toBe('Security');
    expect(await audit('auth.password.change', owner.id)).toEqual([
      expect.objectContaining({ result: 'denied' }),
      expect.objectContaining({ result: 'failure' }),
      expect.objectContaining({ result: 'success', tenant_id: h.a.id }),
    ]);

    // Sessions: two more logins elsewhere; sign out one, then everywhere else.
    const phone = await h.login(owner.email, { password: newPassword });
    const laptop = await h.login(owner.email, { password: newPassword });
    await page.reload();
    const sessionTable = page.locator('[aria-label="Your sessions"]');
    expect(await sessionTable.locator('tbody tr').count()).toBe(3);
    expect(await sessionTable.textContent()).toContain('This session');
    const phoneId = (
      await h.api.inject({
        method: 'GET',
        url: '/api/v1/auth/sessions',
        headers: h.bearer(phone.accessToken),
      })
    )
      .json<{ sessions: { id: string; current: boolean }[] }>()
      .sessions.find((s) => s.current)!.id;
    const phoneDialog = page.locator('.dialog', { has: page.locator(`input[value="${phoneId}"]`) });
    const dialogId = await phoneDialog.getAttribute('id');
    await page.click(`a[href="#${dialogId}"]`);
    expect(await phoneDialog.isVisible()).toBe(true);
    expect(await phoneDialog.textContent()).toContain('Sign out this session?');
    await inspect(page, 'security-confirm-session');
    await phoneDialog.locator('button[type=submit]').click();
    await expect.poll(() => notice(page)).toContain('That session is signed out.');
    expect((await me(phone.accessToken)).statusCode).toBe(401);
    expect((await me(laptop.accessToken)).statusCode).toBe(200);
    expect(await sessionTable.locator('tbody tr').count()).toBe(2);
    expect(await audit('auth.session.end', owner.id)).toEqual([
      expect.objectContaining({ result: 'success', target_id: phoneId, tenant_id: h.a.id }),
    ]);
    await page.click('text=Sign out everywhere else…');
    const others = page.locator('#end-others');
    expect(await others.textContent()).toContain('1 other session is signed out at once');
    // Cancel changes nothing.
    await others.locator('text=Cancel').click();
    expect(await others.isVisible()).toBe(false);
    expect((await me(laptop.accessToken)).statusCode).toBe(200);
    await page.click('text=Sign out everywhere else…');
    await others.locator('button[type=submit]').click();
    await expect.poll(() => notice(page)).toContain('Signed out everywhere else (1 session)');
    expect((await me(laptop.accessToken)).statusCode).toBe(401);
    expect(await sessionTable.locator('tbody tr').count()).toBe(1);
    expect(await page.textContent('main')).toContain('You are signed in nowhere else.');

    // Two-factor authentication: the QR code and the key, a wrong code refused next to the field.
    await page.click('text=Set up two-factor authentication');
    const qr = page.locator('svg.qr');
    await expect.poll(() => qr.count()).toBe(1);
    expect(await qr.getAttribute('aria-label')).toBe('QR code for your authenticator app');
    const secret = (await page.textContent('#totp-secret'))!;
    expect(secret).toMatch(/^[A-Z2-7]{32}$/);
    await inspect(page, 'security-totp-enrol');
    await page.fill('#f-code', '12345');
    await page.click('text=Turn on two-factor authentication');
    await expect
      .poll(() => page.textContent('#f-code-error'))
      .toBe('Enter the six digits your app shows now.');
    const wrong = totpCode(secret, 10);
    await page.fill('#f-code', wrong);
    await page.click('text=Turn on two-factor authentication');
    await expect.poll(() => page.textContent('#f-code-error')).toContain('That code is wrong or expired');
    // The same key is still shown (the setup goes on).
    expect(await page.textContent('#totp-secret')).toBe(secret);
    await page.fill('#f-code', totpCode(secret));
    await page.click('text=Turn on two-factor authentication');
    const codes = page.locator('ul.codes li');
    await expect.poll(() => codes.count()).toBe(10);
    const recovery = (await codes.allTextContents()).map((c) => c.trim());
    expect(await page.textContent('main')).toContain('This is the only time they are shown');
    await inspect(page, 'security-recovery-codes');
    await page.click('text=I have saved them');
    await page.waitForURL(`${base}/security`);
    expect(await page.locator('ul.codes').count()).toBe(0);
    const totpCard = page.locator('section', { has: page.locator('#h-totp') });
    expect(await totpCard.textContent()).toContain('10 of 10 recovery codes unused');
    // Signing in now asks for a code.
    const totpLogin = await h.api.inject({
      method: 'POST',
      url: '/api/v1/auth/login',
      payload: { email: owner.email, password: newPassword },
    });
    expect(totpLogin.json<{ error: { details: { reason: string } } }>().error.details.reason).toBe(
      'totp_required',
    );
    await inspect(page, 'security-totp-on');

    // Turn it off: nothing entered, then a wrong recovery code, then a right one.
    await totpCard.locator('button[type=submit]').click();
    await expect
      .poll(() => page.textContent('#f-code-error'))
      .toBe('Enter a code from your app, or a recovery code below.');
    await page.fill('#f-recoveryCode', 'aaaa-bbbb-cccc-dddd');
    await totpCard.locator('button[type=submit]').click();
    await expect
      .poll(() => page.textContent('#f-recoveryCode-error'))
      .toBe('That recovery code is wrong or already used.');
    await inspect(page, 'security-totp-refused');
    // A refused code does not sign the user out.
    await page.fill('#f-recoveryCode', recovery[3]!);
    await page
      .locator('section', { has: page.locator('#h-totp') })
      .locator('button[type=submit]')
      .click();
    await expect.poll(() => notice(page)).toContain('Two-factor authentication is off');
    expect(await page.textContent('section:has(#h-totp)')).toContain('Off');
    // The empty form never reached the platform; the wrong code did, and is audited.
    expect((await audit('auth.totp.disable', owner.id)).map((r) => r.result)).toEqual(['denied', 'success']);

    // API keys: someone else's and the dashboard's own are not listed.
    const theirs = await h.api.inject({
      method: 'POST',
      url: `/api/v1/tenants/${h.a.slug}/api-keys`,
      headers: h.bearer(h.a.owner.token),
      payload: { name: 'their key' },
    });
    expect(theirs.statusCode).toBe(201);
    await page.reload();
    const keysCard = page.locator('section', { has: page.locator('#h-keys') });
    expect(await keysCard.textContent()).toContain('No API keys');
    expect(await keysCard.textContent()).not.toContain('their key');
    expect(await keysCard.textContent()).not.toContain('dashboard-api-key');
    // Refusals next to their field.
    await page.fill('#f-name', '');
    await page.fill('#f-expires', '2020-01-01');
    await keysCard.locator('button[type=submit]', { hasText: 'Create key' }).click();
    await expect.poll(() => page.textContent('#f-name-error')).toBe('Give the key a name.');
    expect(await page.textContent('#f-expires-error')).toBe('Choose a day after today.');
    await inspect(page, 'security-key-refused');
    const in30 = new Date(Date.now() + 30 * 86_400_000).toISOString().slice(0, 10);
    await page.fill('#f-name', 'CI deploy');
    await page.fill('#f-expires', in30);
    await page.locator('#f-role').selectOption('tenant_member');
    await page.locator('section:has(#h-keys) button[type=submit]', { hasText: 'Create key' }).click();
    await expect.poll(() => page.locator('#new-key').count()).toBe(1);
    const secretKey = (await page.textContent('#new-key'))!;
    expect(secretKey).toMatch(/^aiqso_/);
    expect(await notice(page)).toContain('it is shown only this once');
    const keyRow = page.locator('[aria-label="Your API keys"] tr', { hasText: 'CI deploy' });
    expect(await keyRow.textContent()).toContain(`${in30} 23:59 UTC`);
    await inspect(page, 'security-key-created');
    const keyMe = await me(secretKey);
    expect(keyMe.statusCode).toBe(200);
    expect(keyMe.json<{ kind: string; role: string }>()).toMatchObject({
      kind: 'api_key',
      role: 'tenant_member',
    });
    // Shown once: a reload does not show it again.
    await page.goto(`${base}/security`);
    expect(await page.locator('#new-key').count()).toBe(0);
    expect(await page.content()).not.toContain(secretKey);
    await keyRow.locator('text=Revoke…').click();
    const revokeDialog = page.locator('#revoke-key-0');
    expect(await revokeDialog.textContent()).toContain('stops working at once');
    await inspect(page, 'security-confirm-revoke');
    await revokeDialog.locator('button[type=submit]').click();
    await expect.poll(() => notice(page)).toContain('The key CI deploy is revoked');
    expect((await me(secretKey)).statusCode).toBe(401);
    expect(await page.textContent('section:has(#h-keys)')).toContain('No API keys');
    expect((await audit('tenant.api_key.create', owner.id)).map((r) => r.result)).toEqual(['success']);
    expect((await audit('tenant.api_key.revoke', owner.id)).map((r) => r.result)).toEqual(['success']);

    // Preferences: off and never asked; on, with the date and the words; off again.
    await page.click('nav >> text=Preferences');
    await page.waitForURL(`${base}/preferences`);
    expect(await page.textContent('main')).toContain('You have not asked for these e-mails.');
    await inspect(page, 'preferences');
    await page.check('input[name=marketingEmails]');
    await page.click('main button[type=submit]');
    await expect.poll(() => notice(page)).toContain('Saved: you get occasional e-mails');
    const today = new Date().toISOString().slice(0, 10);
    expect(await page.textContent('main')).toContain(`You agreed on ${today}`);
    expect(await page.textContent('blockquote')).toContain(
      'Send me occasional e-mails about new features and offers.',
    );
    await inspect(page, 'preferences-on');
    await page.uncheck('input[name=marketingEmails]');
    await page.click('main button[type=submit]');
    await expect.poll(() => notice(page)).toContain('Saved: you get no e-mails');
    expect(await page.textContent('main')).toContain(`You turned these e-mails off on ${today}`);
    const prefs = await h.db.db
      .selectFrom('audit_log')
      .select('details')
      .where('action', '=', 'auth.preferences.update')
      .where('actor_id', '=', owner.id)
      .orderBy('id')
      .execute();
    expect(prefs.map((r) => (r.details as { marketingEmails: boolean }).marketingEmails)).toEqual([
      true,
      false,
    ]);

    expect(cspViolations).toEqual([]);
    await context.close();
  });

  it('with TOTP on, a password change sends the user to sign in again', async () => {
    const user = await newUser('tenant_member');
    const { accessToken } = await h.login(user.email);
    const enrol = await h.api.inject({
      method: 'POST',
      url: '/api/v1/auth/totp/enrol',
      headers: h.bearer(accessToken),
    });
    const secret = enrol.json<{ secret: string }>().secret;
    await h.api.inject({
      method: 'POST',
      url: '/api/v1/auth/totp/confirm',
      headers: h.bearer(accessToken),
      payload: { code: totpCode(secret) },
    });
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    await page.goto(`${base}/security`);
    await page.fill('#f-email', user.email);
    await page.fill('#f-password', PASSWORD);
    await page.click('main button[type=submit]');
    await page.fill('#f-code', totpCode(secret, 1));
    await page.click('text=Verify');
    await page.waitForURL(`${base}/security`);
    await page.fill('#f-currentPassword', PASSWORD);
    await page.fill('#f-newPassword', 'yet another passphrase 10');
    await page.locator('section:has(#h-password) button[type=submit]').click();
    await expect
      .poll(() => notice(page))
      .toContain('Your password is changed and every session is signed out.');
    expect(await page.locator('#f-email').count()).toBe(1);
    await context.close();
  });

  it('a member sees no key controls and reaches nobody else’s session or key', async () => {
    const member = await newUser('tenant_member');
    const context = await browser.newContext({ viewport: { width: 390, height: 844 } });
    const page = await context.newPage();
    await signIn(page, member.email);
    await page.goto(`${base}/security`);
    expect(await page.textContent('section:has(#h-keys)')).toContain('Only owners create and revoke them.');
    expect(await page.locator('#f-name').count()).toBe(0);
    await inspect(page, 'security-member');
    await context.close();

    // Forms posted by hand: another user's session id and an owner's key id are refused.
    const victim = await h.login(h.a.owner.email);
    const victimSession = (
      await h.api.inject({
        method: 'GET',
        url: '/api/v1/auth/sessions',
        headers: h.bearer(victim.accessToken),
      })
    )
      .json<{ sessions: { id: string; current: boolean }[] }>()
      .sessions.find((s) => s.current)!.id;
    const key = await h.api.inject({
      method: 'POST',
      url: `/api/v1/tenants/${h.a.slug}/api-keys`,
      headers: h.bearer(h.a.owner.token),
      payload: { name: 'owner key' },
    });
    const form = new FormBrowser(dash.port);
    expect((await form.signIn(member.email, PASSWORD)).status).toBe(303);
    const security = await form.get('/security');
    const ended = await form.submit('/session-end', { session: victimSession }, security);
    expect(ended.status).toBe(303);
    expect(decodeURIComponent(String(ended.headers.location))).toContain('That session had already ended.');
    expect((await me(victim.accessToken)).statusCode).toBe(200);
    const revoked = await form.submit('/key-revoke', { key: key.json<{ id: string }>().id }, security);
    expect(revoked.headers.location).toContain('err=1');
    expect((await me(key.json<{ key: string }>().key)).statusCode).toBe(200);
    // Without the form's CSRF token, nothing happens.
    const forged = await form.request('POST', '/sessions-end-others', { csrf: 'forged' });
    expect(forged.status).toBe(403);
    // Tenant B's owner cannot sign in here at all.
    const b = new FormBrowser(dash.port);
    expect((await b.signIn(h.b.owner.email, PASSWORD)).status).toBe(401);
  });
});
