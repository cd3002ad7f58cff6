import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { passwordProblem } from '../src/identity/passwords.ts';
import { createHarness, PASSWORD, type Harness } from './support/identity.ts';

describe('password rules (length and common-password list, no composition rules)', () => {
  it.each([
    ['short1!', /at least 12/],
    ['password123!', /too common/],
    ['Qwerty123456', /too common/],
    ['correcthorsebatterystaple', /too common/],
    ['aaaaaaaaaaaaaaa', /repeated/],
    ['jane.doe@example.com', /email/],
  ])('refuses %s', (pw, why) => {
    expect(passwordProblem(pw, 'jane.doe@example.com')).toMatch(why);
  });

  it.each(['all lowercase words here', 'ÜNICODE pässwörd ok ✓', '            x '])(
    'accepts %s without composition rules',
    (pw) => {
      expect(passwordProblem(pw, 'jane@example.com')).toBeUndefined();
    },
  );
});

describe('users and browser sessions', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await createHarness();
  });
  afterAll(() => h.close());

  it('refuses a common password and a taken email with clear 4xx errors, and normalises email', async () => {
    const add = (payload: Record<string, unknown>) =>
      h.api.inject({
        method: 'POST',
        url: `/api/v1/tenants/${h.a.slug}/users`,
        headers: h.bearer(h.a.owner.token),
        payload,
      });
    const weak = await add({ email: 'new@alpha.test', password: 'password1234', role: 'tenant_member' });
    expect(weak.statusCode).toBe(400);
    expect(weak.json()).toMatchObject({
      error: { code: 'validation_failed', message: 'password is too common; choose another' },
    });
    const ok = await add({ email: 'New.Person@Alpha.test', password: PASSWORD, role: 'tenant_member' });
    expect(ok.json()).toMatchObject({ email: 'new.person@alpha.test' });
    const dup = await add({ email: 'NEW.PERSON@alpha.test', password: PASSWORD, role: 'tenant_member' });
    expect(dup.statusCode).toBe(409);
  });

  it('cookie mode: HttpOnly SameSite cookies, and unsafe requests need the CSRF header', async () => {
    const res = await h.api.inject({
      method: 'POST',
      url: '/api/v1/auth/login',
      payload: { email: h.a.owner.email, password: PASSWORD, mode: 'cookie' },
    });
    expect(res.statusCode).toBe(200);
    const body = res.json<{ csrfToken: string; accessToken?: string }>();
    expect(body.accessToken).toBeUndefined();
    const cookies = Object.fromEntries(res.cookies.map((c) => [c.name, c]));
    expect(cookies.aiqso_at).toMatchObject({ httpOnly: true, sameSite: 'Strict', path: '/' });
    expect(cookies.aiqso_rt).toMatchObject({ httpOnly: true, sameSite: 'Strict', path: '/api/v1/auth' });
    expect(cookies.aiqso_csrf?.httpOnly).toBeFalsy();
    const jar = { aiqso_at: cookies.aiqso_at!.value, aiqso_csrf: body.csrfToken };

    const read = await h.api.inject({ method: 'GET', url: `/api/v1/tenants/${h.a.slug}`, cookies: jar });
    expect(read.statusCode).toBe(200);
    const payload = { name: 'from the portal' };
    const url = `/api/v1/tenants/${h.a.slug}/api-keys`;
    const noHeader = await h.api.inject({ method: 'POST', url, cookies: jar, payload });
    expect(noHeader.statusCode).toBe(403);
    const wrong = await h.api.inject({
      method: 'POST',
      url,
      cookies: jar,
      payload,
      headers: { 'x-csrf-token': 'guess' },
    });
    expect(wrong.statusCode).toBe(403);
    const right = await h.api.inject({
      method: 'POST',
      url,
      cookies: jar,
      payload,
      headers: { 'x-csrf-token': body.csrfToken },
    });
    expect(right.statusCode).toBe(201);

    const refreshed = await h.api.inject({
      method: 'POST',
      url: '/api/v1/auth/refresh',
      cookies: { aiqso_rt: cookies.aiqso_rt!.value, aiqso_csrf: body.csrfToken },
      headers: { 'x-csrf-token': body.csrfToken },
      payload: { mode: 'cookie' },
    });
    expect(refreshed.statusCode).toBe(200);
  });

  it('marks cookies Secure when the platform is served over HTTPS', async () => {
    const https = await createHarness({ env: { AIQSO_PUBLIC_URL: 'https://aiqso.example' } });
    try {
      const res = await https.api.inject({
        method: 'POST',
        url: '/api/v1/auth/login',
        payload: { email: https.a.owner.email, password: PASSWORD, mode: 'cookie' },
      });
      expect(res.cookies.every((c) => c.secure === true)).toBe(true);
    } finally {
      await https.close();
    }
  });
});
