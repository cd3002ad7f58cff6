import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_LIMITS } from '../src/identity/rate-limit.ts';
import { apiUrl, Browser, startDashboard, type Answer, type RunningDashboard } from './support/dashboard.ts';
import { createHarness, PASSWORD, totpCodeAtStep, type Harness } from './support/identity.ts';

/**
 * Tenant dashboards (dashboard/server.mjs, each its own process with its own
 * key) against the real API with the production login limits: one attacker at
 * A's dashboard locks out nobody at B's; TOTP and recovery-code sign-in; a
 * CSRF token on every form; POST logout ends the platform session; a session
 * the platform ended (TOTP reset, password change) ends here on the next
 * request; strict security headers on every page.
 */
let h: Harness;
let dashA: RunningDashboard;
let dashB: RunningDashboard;
let totpSecret: string;
let recoveryCodes: string[];
const totpUser = 'twofactor@alpha.test';

beforeAll(async () => {
  h = await createHarness({ limits: { ...DEFAULT_LIMITS } });
  dashA = await startDashboard(h, h.a, 'Alpha Widgets');
  dashB = await startDashboard(h, h.b, 'Bravo Gears');
  // A tenant-A member enrolled in TOTP, through the API.
  await h.api.inject({
    method: 'POST',
    url: `/api/v1/tenants/${h.a.slug}/users`,
    headers: h.bearer(h.a.owner.token),
    payload: { email: totpUser, password: PASSWORD, role: 'tenant_member' },
  });
  const token = (await h.login(totpUser)).accessToken;
  const enrol = await h.api.inject({
    method: 'POST',
    url: '/api/v1/auth/totp/enrol',
    headers: h.bearer(token),
  });
  totpSecret = enrol.json<{ secret: string }>().secret;
  const confirm = await h.api.inject({
    method: 'POST',
    url: '/api/v1/auth/totp/confirm',
    headers: h.bearer(token),
    payload: { code: await freshCode() },
  });
  recoveryCodes = confirm.json<{ recoveryCodes: string[] }>().recoveryCodes;
});
afterAll(async () => {
  await dashA?.stop();
  await dashB?.stop();
  await h?.close();
});

/** A TOTP code of the enrolled user for a step in the accepted window not spent yet. */
async function freshCode(): Promise<string> {
  const user = await h.db.db
    .selectFrom('users')
    .select('id')
    .where('email', '=', totpUser)
    .executeTakeFirst();
  const used = new Set(
    user
      ? (
          await h.db.db.selectFrom('totp_used_steps').select('step').where('user_id', '=', user.id).execute()
        ).map((r) => Number(r.step))
      : [],
  );
  const now = Math.floor(Date.now() / 30_000);
  const step = [now, now + 1, now - 1].find((s) => !used.has(s));
  if (step === undefined) throw new Error('no unspent TOTP step in the window');
  return totpCodeAtStep(totpSecret, step);
}

async function signedIn(dash: RunningDashboard, email: string, address: string) {
  const browser = new Browser(dash.port, address);
  const res = await browser.signIn(email, PASSWORD);
  expect(res.status, res.body).toBe(303);
  const home = await browser.get();
  expect(home.body).toContain(`Signed in as ${email}`);
  return { browser, home };
}

const liveSessions = async (email: string) =>
  h.db.db
    .selectFrom('sessions as s')
    .innerJoin('users as u', 'u.id', 's.user_id')
    .select('s.id')
    .where('u.email', '=', email)
    .where('s.revoked_at', 'is', null)
    .execute();

describe('sign-in limits across dashboards', () => {
  it("55 bad logins at A's dashboard leave B's owner (and A's, elsewhere) able to sign in", async () => {
    const attacker = new Browser(dashA.port, '203.0.113.66');
    const statuses: number[] = [];
    for (let i = 0; i < 55; i++) {
      const email = i % 2 ? h.a.owner.email : h.b.owner.email;
      statuses.push((await attacker.signIn(email, `wrong password ${i}`)).status);
    }
    expect(statuses.filter((s) => s === 401).length).toBeGreaterThan(0);
    // The attacker's own address is what got locked.
    expect(statuses.slice(-5)).toEqual([429, 429, 429, 429, 429]);
    const refused = await attacker.signIn(h.a.owner.email, PASSWORD);
    expect(refused.status).toBe(429);
    expect(refused.body).toMatch(/Too many attempts; try again in \d+ s/);

    const bravo = await signedIn(dashB, h.b.owner.email, '198.51.100.20');
    expect(bravo.home.body).toContain('Bravo Gears');
    await signedIn(dashA, h.a.owner.email, '198.51.100.21');
  });

  it("signs in only the dashboard's own tenant's users", async () => {
    const res = await new Browser(dashA.port, '198.51.100.22').signIn(h.b.member.email, PASSWORD);
    expect(res.status).toBe(401);
    expect(res.body).toContain('Wrong email or password.');
    expect(await liveSessions(h.b.member.email)).toHaveLength(1); // the harness's own login only
  });
});

describe('two-factor sign-in', () => {
  it('asks for the TOTP code after the password, refuses a wrong one, accepts the right one', async () => {
    const browser = new Browser(dashA.port, '198.51.100.30');
    const step = await browser.signIn(totpUser, PASSWORD);
    expect(step.status).toBe(200);
    expect(step.body).toContain('Two-factor authentication for');
    expect(step.body).not.toContain('Wrong email or password');
    const wrong = await browser.submit('/login/code', { code: '000000' }, step);
    expect(wrong.status).toBe(401);
    expect(wrong.body).toContain('That code is wrong, expired or already used.');
    const right = await browser.submit('/login/code', { code: await freshCode() }, wrong);
    expect(right.status, right.body).toBe(303);
    expect((await browser.get()).body).toContain(`Signed in as ${totpUser}`);
  });

  it('accepts a recovery code, once', async () => {
    const first = new Browser(dashA.port, '198.51.100.31');
    const step = await first.signIn(totpUser, PASSWORD);
    const ok = await first.submit('/login/code', { recovery: recoveryCodes[0]! }, step);
    expect(ok.status, ok.body).toBe(303);
    expect((await first.get()).body).toContain(`Signed in as ${totpUser}`);
    const second = new Browser(dashA.port, '198.51.100.32');
    const again = await second.submit(
      '/login/code',
      { recovery: recoveryCodes[0]! },
      await second.signIn(totpUser, PASSWORD),
    );
    expect(again.status).toBe(401);
  });

  it('sends a second step without a pending sign-in back to the start', async () => {
    const browser = new Browser(dashA.port, '198.51.100.33');
    const res = await browser.submit('/login/code', { code: '123456' });
    expect(res.status).toBe(401);
    expect(res.body).toContain('The sign-in expired; start again.');
  });
});

describe('CSRF on every form', () => {
  it('refuses sign-in without the token, with a forged one, and with another visitor’s', async () => {
    const browser = new Browser(dashA.port, '198.51.100.40');
    await browser.get();
    for (const csrf of [undefined, 'forged-token']) {
      const res = await browser.request('POST', '/login', {
        ...(csrf ? { csrf } : {}),
        email: h.a.owner.email,
        password: PASSWORD,
      });
      expect(res.status, csrf).toBe(403);
      expect(res.headers['set-cookie'] ?? []).not.toEqual(
        expect.arrayContaining([expect.stringMatching(/^aiqso_dash=/)]),
      );
    }
    // Another site's page cannot use its own visit's token for this browser's cookie.
    const other = new Browser(dashA.port, '198.51.100.41');
    const token = Browser.csrf(await other.get());
    const res = await browser.request('POST', '/login', {
      csrf: token,
      email: h.a.owner.email,
      password: PASSWORD,
    });
    expect(res.status).toBe(403);
  });

  it('refuses the second step without its token', async () => {
    const browser = new Browser(dashA.port, '198.51.100.42');
    await browser.signIn(totpUser, PASSWORD);
    const res = await browser.request('POST', '/login/code', { code: await freshCode() });
    expect(res.status).toBe(403);
  });

  it('refuses subscribe, unsubscribe and sign-out without the session’s token, changing nothing', async () => {
    const { browser, home } = await signedIn(dashA, h.a.owner.email, '198.51.100.43');
    for (const action of ['/subscribe', '/unsubscribe', '/logout']) {
      for (const csrf of [undefined, 'forged', Browser.csrf(await new Browser(dashA.port).get())]) {
        const res = await browser.request('POST', action, { ...(csrf ? { csrf } : {}), service: 'notes' });
        expect(res.status, `${action} ${csrf}`).toBe(403);
      }
    }
    const services = await h.db.db
      .selectFrom('tenant_services')
      .select('id')
      .where('tenant_id', '=', h.a.id)
      .execute();
    expect(services).toEqual([]);
    expect((await browser.get()).body).toContain(`Signed in as ${h.a.owner.email}`);
    expect(home.body).toContain('action="logout"');
  });
});

describe('sign-out and ended sessions', () => {
  it('signs out with POST only, ending the platform session too', async () => {
    const before = (await liveSessions(h.a.member.email)).length;
    const { browser, home } = await signedIn(dashA, h.a.member.email, '198.51.100.50');
    expect(await liveSessions(h.a.member.email)).toHaveLength(before + 1);
    const get = await browser.get('/logout');
    expect(get.status).toBe(405);
    expect((await browser.get()).body).toContain('Signed in as');
    const out = await browser.submit('/logout', {}, home);
    expect(out.status).toBe(303);
    expect(await liveSessions(h.a.member.email)).toHaveLength(before);
    const after = await browser.get();
    expect(after.body).toContain('Sign in with your platform account');
  });

  it("ends a session when an admin resets the user's TOTP", async () => {
    const browser = new Browser(dashA.port, '198.51.100.51');
    const step = await browser.signIn(totpUser, PASSWORD);
    expect((await browser.submit('/login/code', { code: await freshCode() }, step)).status).toBe(303);
    expect((await browser.get()).body).toContain(`Signed in as ${totpUser}`);
    const user = await h.db.db
      .selectFrom('users')
      .select('id')
      .where('email', '=', totpUser)
      .executeTakeFirstOrThrow();
    const reset = await h.api.inject({
      method: 'POST',
      url: `/api/v1/platform/users/${user.id}/totp/reset`,
      headers: h.bearer(h.admin.token),
    });
    expect(reset.statusCode, reset.body).toBe(200);
    const next = await browser.get();
    expect(next.body).toContain('Your session has ended; sign in again.');
    expect(browser.jar.has('aiqso_dash')).toBe(false);
  });

  it('ends a session when the user changes their password elsewhere', async () => {
    const { browser } = await signedIn(dashA, h.a.member.email, '198.51.100.52');
    const elsewhere = await h.login(h.a.member.email);
    const changed = await h.api.inject({
      method: 'POST',
      url: '/api/v1/auth/password',
      headers: h.bearer(elsewhere.accessToken),
      payload: { currentPassword: PASSWORD, newPassword: 'a different passphrase 2024' },
    });
    expect(changed.statusCode, changed.body).toBe(200);
    expect(changed.json<{ sessionsEnded: number }>().sessionsEnded).toBeGreaterThanOrEqual(2);
    const next = await browser.get();
    expect(next.body).toContain('Your session has ended; sign in again.');
    // A subscribe from the ended session does nothing either.
    const res = await browser.request('POST', '/subscribe', { csrf: 'x', service: 'notes' });
    expect(res.status).toBe(303);
  });
});

describe('security headers', () => {
  const STRICT = {
    'x-frame-options': 'DENY',
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
  };

  function expectStrict(page: Answer, label: string) {
    expect(page.headers, label).toMatchObject(STRICT);
    const csp = String(page.headers['content-security-policy']);
    expect(csp, label).toContain("default-src 'none'");
    expect(csp, label).toContain("frame-ancestors 'none'");
    expect(csp, label).toContain("form-action 'self'");
    expect(csp, label).not.toContain('unsafe-inline');
    expect(csp, label).not.toContain('script-src');
    expect(page.body, label).not.toMatch(/<script|style="|\son\w+="/);
    // The one inline stylesheet is allowed by its hash.
    const style = /<style>([\s\S]*?)<\/style>/.exec(page.body)?.[1];
    if (style !== undefined) {
      const hash = createHash('sha256').update(style).digest('base64');
      expect(csp, label).toContain(`'sha256-${hash}'`);
    }
  }

  it('puts them on every page: sign-in, second step, home, and the error pages', async () => {
    const browser = new Browser(dashA.port, '198.51.100.60');
    expectStrict(await browser.get(), 'sign-in');
    expectStrict(
      await browser.request('POST', '/login', { email: 'x@y.z', password: 'p' }),
      'refused sign-in',
    );
    expectStrict(await browser.signIn(totpUser, PASSWORD), 'second step');
    expectStrict(await browser.get('/nowhere'), '404');
    expectStrict(await browser.get('/logout'), '405');
    const { browser: owner, home } = await signedIn(dashA, h.a.owner.email, '198.51.100.61');
    expectStrict(home, 'home');
    // The Billing page's "Payment methods and invoices" is answered with a redirect to the billing
    // portal, which browsers hold to the page's form-action: it names Stripe's portal and the
    // platform's own address, and nothing else changes.
    const billing = await owner.get('/billing');
    expectStrict(billing, 'billing');
    const formAction =
      /form-action ([^;]*)/.exec(String(billing.headers['content-security-policy']))?.[1] ?? '';
    expect(formAction.split(' ')).toEqual([
      "'self'",
      'https://billing.stripe.com',
      new URL((await apiUrl(h)).replace('127.0.0.1', 'localhost')).origin,
    ]);
    const other = String(home.headers['content-security-policy']);
    expect(String(billing.headers['content-security-policy'])).toBe(
      other.replace("form-action 'self'", `form-action ${formAction}`),
    );
  });
});
