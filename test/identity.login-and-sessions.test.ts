import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHarness, PASSWORD, type Harness } from './support/identity.ts';

let h: Harness;
beforeAll(async () => {
  h = await createHarness();
});
afterAll(() => h.close());

describe('login and sessions', () => {
  it('logs a tenant owner in with a bearer token that reaches their tenant', async () => {
    const res = await h.api.inject({
      method: 'POST',
      url: '/api/v1/auth/login',
      payload: { email: ' Owner@Alpha.TEST ', password: PASSWORD },
    });
    expect(res.statusCode).toBe(200);
    const body = res.json<{
      accessToken: string;
      tokenType: string;
      expiresIn: number;
      refreshToken: string;
    }>();
    expect(body.tokenType).toBe('Bearer');
    expect(body.expiresIn).toBeLessThanOrEqual(900);
    const tenant = await h.api.inject({
      method: 'GET',
      url: `/api/v1/tenants/${h.a.slug}`,
      headers: h.bearer(body.accessToken),
    });
    expect(tenant.statusCode).toBe(200);
    expect(tenant.json()).toMatchObject({ id: h.a.id, slug: 'alpha', status: 'active' });
    const byId = await h.api.inject({
      method: 'GET',
      url: `/api/v1/tenants/${h.a.id}`,
      headers: h.bearer(body.accessToken),
    });
    expect(byId.json()).toMatchObject({ slug: 'alpha' });
  });

  it('refuses a wrong password and an unknown email with the same message', async () => {
    const wrong = await h.api.inject({
      method: 'POST',
      url: '/api/v1/auth/login',
      payload: { email: h.a.owner.email, password: 'nope nope nope' },
    });
    const unknown = await h.api.inject({
      method: 'POST',
      url: '/api/v1/auth/login',
      payload: { email: 'ghost@alpha.test', password: PASSWORD },
    });
    expect(wrong.statusCode).toBe(401);
    expect(unknown.statusCode).toBe(401);
    expect(wrong.json()).toEqual(unknown.json());
  });

  it('rotates refresh tokens on use and revokes the family when a spent one comes back', async () => {
    const first = await h.login(h.a.member.email);
    const r1 = await h.api.inject({
      method: 'POST',
      url: '/api/v1/auth/refresh',
      payload: { refreshToken: first.refreshToken },
    });
    expect(r1.statusCode).toBe(200);
    const second = r1.json<{ accessToken: string; refreshToken: string }>();
    expect(second.refreshToken).not.toBe(first.refreshToken);
    const me = await h.api.inject({
      method: 'GET',
      url: '/api/v1/auth/me',
      headers: h.bearer(second.accessToken),
    });
    expect(me.statusCode).toBe(200);
    // The spent token again: refused, and the live session of that family ends too.
    const replay = await h.api.inject({
      method: 'POST',
      url: '/api/v1/auth/refresh',
      payload: { refreshToken: first.refreshToken },
    });
    expect(replay.statusCode).toBe(401);
    const after = await h.api.inject({
      method: 'GET',
      url: '/api/v1/auth/me',
      headers: h.bearer(second.accessToken),
    });
    expect(after.statusCode).toBe(401);
  });

  it('logout ends the access token and the refresh token at once', async () => {
    const s = await h.login(h.a.member.email);
    const out = await h.api.inject({
      method: 'POST',
      url: '/api/v1/auth/logout',
      headers: h.bearer(s.accessToken),
    });
    expect(out.statusCode).toBe(204);
    const me = await h.api.inject({
      method: 'GET',
      url: '/api/v1/auth/me',
      headers: h.bearer(s.accessToken),
    });
    expect(me.statusCode).toBe(401);
    const r = await h.api.inject({
      method: 'POST',
      url: '/api/v1/auth/refresh',
      payload: { refreshToken: s.refreshToken },
    });
    expect(r.statusCode).toBe(401);
  });
});
