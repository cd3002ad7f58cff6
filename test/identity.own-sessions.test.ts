import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHarness, PASSWORD, totpCode, type Harness } from './support/identity.ts';

/**
 * A user's own sessions (GET/DELETE /api/v1/auth/sessions…), TOTP status and
 * the enrolment's QR code, and the creator on API keys: each caller sees and
 * ends only their own logins (another user's session id is 404, in the same
 * tenant or another), an API key has no sessions (403), and every change is
 * audited in the caller's tenant.
 */
let h: Harness;
beforeAll(async () => {
  h = await createHarness();
});
afterAll(() => h.close());

let n = 0;
/** A fresh member of tenant A (or B) with no logins yet. */
async function freshUser(tenant: 'a' | 'b' = 'a'): Promise<{ id: string; email: string }> {
  const t = h[tenant];
  const email = `own${++n}@${tenant === 'a' ? 'alpha' : 'beta'}.test`;
  const res = await h.api.inject({
    method: 'POST',
    url: `/api/v1/tenants/${t.slug}/users`,
    headers: h.bearer(t.owner.token),
    payload: { email, password: PASSWORD, role: 'tenant_member' },
  });
  expect(res.statusCode, res.body).toBe(201);
  return { id: res.json<{ id: string }>().id, email };
}

interface SessionRow {
  id: string;
  createdAt: string;
  lastUsedAt: string;
  expiresAt: string;
  current: boolean;
}

async function sessionsOf(token: string): Promise<SessionRow[]> {
  const res = await h.api.inject({ method: 'GET', url: '/api/v1/auth/sessions', headers: h.bearer(token) });
  expect(res.statusCode, res.body).toBe(200);
  return res.json<{ sessions: SessionRow[] }>().sessions;
}

const me = (token: string) =>
  h.api.inject({ method: 'GET', url: '/api/v1/auth/me', headers: h.bearer(token) });

async function auditRows(action: string, actorId: string) {
  return h.db.db
    .selectFrom('audit_log')
    .select(['tenant_id', 'result', 'target_type', 'target_id', 'details'])
    .where('action', '=', action)
    .where('actor_id', '=', actorId)
    .orderBy('id')
    .execute();
}

describe('GET /api/v1/auth/sessions', () => {
  it('lists one entry per login, marks the current one, and keeps the id across a refresh', async () => {
    const user = await freshUser();
    const first = await h.login(user.email);
    const second = await h.login(user.email);
    const listed = await sessionsOf(second.accessToken);
    expect(listed).toHaveLength(2);
    expect(listed.filter((s) => s.current)).toHaveLength(1);
    const current = listed.find((s) => s.current)!;
    expect(current.id).toMatch(/^ses_/);
    expect(Date.parse(current.expiresAt)).toBeGreaterThan(Date.now());

    // The first login refreshes: its refresh token rotates, it is still one session with the same id.
    const before = (await sessionsOf(first.accessToken)).find((s) => s.current)!;
    const refreshed = await h.api.inject({
      method: 'POST',
      url: '/api/v1/auth/refresh',
      payload: { refreshToken: first.refreshToken },
    });
    expect(refreshed.statusCode, refreshed.body).toBe(200);
    const after = await sessionsOf(refreshed.json<{ accessToken: string }>().accessToken);
    expect(after).toHaveLength(2);
    const same = after.find((s) => s.current)!;
    expect(same.id).toBe(before.id);
    expect(same.createdAt).toBe(before.createdAt);
    expect(Date.parse(same.lastUsedAt)).toBeGreaterThanOrEqual(Date.parse(before.lastUsedAt));
  });

  it('shows nobody else’s sessions, and refuses an API key (403)', async () => {
    const user = await freshUser();
    const { accessToken } = await h.login(user.email);
    const listed = await sessionsOf(accessToken);
    expect(listed).toHaveLength(1);
    const ownerIds = (await sessionsOf(h.a.owner.token)).map((s) => s.id);
    expect(ownerIds).not.toContain(listed[0]!.id);

    const key = await h.api.inject({
      method: 'POST',
      url: `/api/v1/tenants/${h.a.slug}/api-keys`,
      headers: h.bearer(h.a.owner.token),
      payload: { name: 'no sessions' },
    });
    const res = await h.api.inject({
      method: 'GET',
      url: '/api/v1/auth/sessions',
      headers: h.bearer(key.json<{ key: string }>().key),
    });
    expect(res.statusCode, res.body).toBe(403);
    expect(res.json<{ error: { message: string } }>().error.message).toMatch(/signed-in users/);
  });
});

describe('DELETE /api/v1/auth/sessions/{id}', () => {
  it('signs out one of your own sessions at once, and audits it', async () => {
    const user = await freshUser();
    const phone = await h.login(user.email);
    const laptop = await h.login(user.email);
    const phoneId = (await sessionsOf(phone.accessToken)).find((s) => s.current)!.id;

    const res = await h.api.inject({
      method: 'DELETE',
      url: `/api/v1/auth/sessions/${phoneId}`,
      headers: h.bearer(laptop.accessToken),
    });
    expect(res.statusCode, res.body).toBe(204);
    // The phone's access and refresh tokens stop working; the laptop's do not.
    expect((await me(phone.accessToken)).statusCode).toBe(401);
    const refresh = await h.api.inject({
      method: 'POST',
      url: '/api/v1/auth/refresh',
      payload: { refreshToken: phone.refreshToken },
    });
    expect(refresh.statusCode).toBe(401);
    expect((await me(laptop.accessToken)).statusCode).toBe(200);
    expect((await sessionsOf(laptop.accessToken)).map((s) => s.id)).not.toContain(phoneId);

    const rows = await auditRows('auth.session.end', user.id);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      tenant_id: h.a.id,
      result: 'success',
      target_type: 'session',
      target_id: phoneId,
    });

    // Again: it is gone (404), and the refusal is audited too.
    const again = await h.api.inject({
      method: 'DELETE',
      url: `/api/v1/auth/sessions/${phoneId}`,
      headers: h.bearer(laptop.accessToken),
    });
    expect(again.statusCode).toBe(404);
    expect(again.json<{ error: { message: string } }>().error.message).toContain(phoneId);
    expect((await auditRows('auth.session.end', user.id)).map((r) => r.result)).toEqual([
      'success',
      'failure',
    ]);
  });

  it('answers 404 for another user’s session, in this tenant or another, and it keeps working', async () => {
    const victim = await freshUser('a');
    const victimLogin = await h.login(victim.email);
    const victimSession = (await sessionsOf(victimLogin.accessToken))[0]!.id;
    const neighbour = await freshUser('a');
    const neighbourLogin = await h.login(neighbour.email);
    const stranger = await freshUser('b');
    const strangerLogin = await h.login(stranger.email);

    for (const token of [
      neighbourLogin.accessToken,
      strangerLogin.accessToken,
      h.a.owner.token,
      h.b.owner.token,
    ]) {
      const res = await h.api.inject({
        method: 'DELETE',
        url: `/api/v1/auth/sessions/${victimSession}`,
        headers: h.bearer(token),
      });
      expect(res.statusCode, res.body).toBe(404);
      expect(res.body).not.toContain(victim.email);
    }
    expect((await me(victimLogin.accessToken)).statusCode).toBe(200);
    expect((await sessionsOf(victimLogin.accessToken)).map((s) => s.id)).toEqual([victimSession]);
  });

  it('answers 404 for an id that is no session at all, and 400 for one too long', async () => {
    const user = await freshUser();
    const { accessToken } = await h.login(user.email);
    const unknown = await h.api.inject({
      method: 'DELETE',
      url: '/api/v1/auth/sessions/ses_nothing',
      headers: h.bearer(accessToken),
    });
    expect(unknown.statusCode).toBe(404);
    const long = await h.api.inject({
      method: 'DELETE',
      url: `/api/v1/auth/sessions/${'x'.repeat(81)}`,
      headers: h.bearer(accessToken),
    });
    expect(long.statusCode).toBe(400);
    expect(long.body).toMatch(/sessionId/);
  });
});

describe('DELETE /api/v1/auth/sessions (everywhere else)', () => {
  it('ends every other session of the caller, keeps this one, and touches no one else', async () => {
    const user = await freshUser();
    const others = [await h.login(user.email), await h.login(user.email)];
    const here = await h.login(user.email);
    const bystander = await freshUser();
    const bystanderLogin = await h.login(bystander.email);

    const res = await h.api.inject({
      method: 'DELETE',
      url: '/api/v1/auth/sessions',
      headers: h.bearer(here.accessToken),
    });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toEqual({ sessionsEnded: 2 });
    for (const o of others) expect((await me(o.accessToken)).statusCode).toBe(401);
    expect((await me(here.accessToken)).statusCode).toBe(200);
    expect((await me(bystanderLogin.accessToken)).statusCode).toBe(200);
    const left = await sessionsOf(here.accessToken);
    expect(left).toHaveLength(1);
    expect(left[0]!.current).toBe(true);

    const rows = await auditRows('auth.session.end_others', user.id);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ tenant_id: h.a.id, result: 'success' });
    expect(rows[0]!.details).toMatchObject({ sessionsEnded: 2 });

    // Nothing else to end: 0, still 200.
    const none = await h.api.inject({
      method: 'DELETE',
      url: '/api/v1/auth/sessions',
      headers: h.bearer(here.accessToken),
    });
    expect(none.json()).toEqual({ sessionsEnded: 0 });
  });
});

describe('GET /api/v1/auth/totp and the enrolment QR code', () => {
  it('says off, then on with ten recovery codes, one fewer after one is spent', async () => {
    const user = await freshUser();
    const { accessToken } = await h.login(user.email);
    const status = async () => {
      const res = await h.api.inject({
        method: 'GET',
        url: '/api/v1/auth/totp',
        headers: h.bearer(accessToken),
      });
      expect(res.statusCode, res.body).toBe(200);
      return res.json<{ enabled: boolean; enabledAt: string | null; recoveryCodesLeft: number }>();
    };
    expect(await status()).toEqual({ enabled: false, enabledAt: null, recoveryCodesLeft: 0 });

    const enrol = await h.api.inject({
      method: 'POST',
      url: '/api/v1/auth/totp/enrol',
      headers: h.bearer(accessToken),
    });
    expect(enrol.statusCode, enrol.body).toBe(200);
    const { secret, qrSvg } = enrol.json<{ secret: string; qrSvg: string }>();
    expect(qrSvg).toMatch(/^<svg class="qr" role="img" aria-label="QR code for your authenticator app" /);
    expect(qrSvg).toMatch(/<\/svg>$/);
    expect(qrSvg).not.toMatch(/<script|href=|on\w+=/i);
    // Started but not confirmed: still off.
    expect((await status()).enabled).toBe(false);

    const confirm = await h.api.inject({
      method: 'POST',
      url: '/api/v1/auth/totp/confirm',
      headers: h.bearer(accessToken),
      payload: { code: totpCode(secret) },
    });
    expect(confirm.statusCode, confirm.body).toBe(200);
    const codes = confirm.json<{ recoveryCodes: string[] }>().recoveryCodes;
    const on = await status();
    expect(on.enabled).toBe(true);
    expect(Date.parse(on.enabledAt!)).toBeGreaterThan(Date.now() - 60_000);
    expect(on.recoveryCodesLeft).toBe(10);

    const second = await h.login(user.email, { recoveryCode: codes[0] });
    expect(second.accessToken).toBeTruthy();
    expect((await status()).recoveryCodesLeft).toBe(9);
  });
});

describe('API keys name their creator', () => {
  it('createdBy is the owner who made the key, and null for the dashboard’s own key', async () => {
    const created = await h.api.inject({
      method: 'POST',
      url: `/api/v1/tenants/${h.a.slug}/api-keys`,
      headers: h.bearer(h.a.owner.token),
      payload: { name: 'mine', expiresAt: new Date(Date.now() + 86_400_000).toISOString() },
    });
    expect(created.statusCode, created.body).toBe(201);
    expect(created.json<{ createdBy: string }>().createdBy).toBe(h.a.owner.id);
    const list = await h.api.inject({
      method: 'GET',
      url: `/api/v1/tenants/${h.a.slug}/api-keys`,
      headers: h.bearer(h.a.owner.token),
    });
    const keys = list.json<{ apiKeys: { id: string; createdBy: string | null }[] }>().apiKeys;
    expect(keys.find((k) => k.id === created.json<{ id: string }>().id)?.createdBy).toBe(h.a.owner.id);
  });
});

describe('OpenAPI', () => {
  it('documents the session routes and the TOTP status with their answers', async () => {
    const doc = (await h.api.inject({ url: '/api/openapi.json' })).json<{
      paths: Record<string, Record<string, { responses: Record<string, unknown> }>>;
    }>();
    expect(Object.keys(doc.paths['/api/v1/auth/sessions'] ?? {})).toEqual(
      expect.arrayContaining(['get', 'delete']),
    );
    expect(doc.paths['/api/v1/auth/sessions/{sessionId}']?.delete?.responses).toHaveProperty('204');
    expect(JSON.stringify(doc.paths['/api/v1/auth/sessions']?.get?.responses)).toContain('lastUsedAt');
    expect(JSON.stringify(doc.paths['/api/v1/auth/totp']?.get?.responses)).toContain('recoveryCodesLeft');
    expect(JSON.stringify(doc.paths['/api/v1/auth/totp/enrol']?.post?.responses)).toContain('qrSvg');
  });
});
