import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHarness, PASSWORD, type Harness } from './support/identity.ts';

/**
 * The team routes behind the dashboard's Team page: an invitation's link works
 * once, only for its own tenant, not after it expired or was withdrawn; a role
 * change and a removal take effect on the member's next request; the tenant
 * always keeps an owner. (Who may call them: the two-tenant security suite.)
 */
let h: Harness;

beforeAll(async () => {
  h = await createHarness();
});
afterAll(() => h?.close());

async function invite(email: string, role = 'tenant_member') {
  const res = await h.api.inject({
    method: 'POST',
    url: `/api/v1/tenants/${h.a.slug}/invitations`,
    headers: h.bearer(h.a.owner.token),
    payload: { email, role },
  });
  expect(res.statusCode, res.body).toBe(201);
  const mail = await h.db.db
    .selectFrom('outbox')
    .select('payload')
    .where('key', '=', `invitation:${res.json<{ id: string }>().id}`)
    .executeTakeFirstOrThrow();
  const token = /invite\?token=([\w-]+)/.exec((mail.payload as { text: string }).text)![1]!;
  return { id: res.json<{ id: string }>().id, token };
}

const accept = (token: string, tenant: string, password = PASSWORD) =>
  h.api.inject({ method: 'POST', url: '/api/v1/invitations/accept', payload: { token, tenant, password } });

describe('invitations', () => {
  it('work once, for their own tenant only, with a password the rules allow', async () => {
    const { token } = await invite('one@alpha.test');
    expect((await accept(token, h.b.id)).statusCode).toBe(404);
    const weak = await accept(token, h.a.slug, 'short');
    expect(weak.statusCode).toBe(400);
    expect(weak.json<{ error: { details: { field: string } } }>().error.details.field).toBe('password');
    const ok = await accept(token, h.a.id);
    expect(ok.statusCode, ok.body).toBe(201);
    expect(ok.json()).toMatchObject({ email: 'one@alpha.test', role: 'tenant_member', tenantId: h.a.id });
    await h.login('one@alpha.test');
    const twice = await accept(token, h.a.id, 'another long passphrase 9');
    expect(twice.statusCode).toBe(404);
    expect(twice.json<{ error: { message: string } }>().error.message).toContain(
      'used, withdrawn or expired',
    );
  });

  it('stop working when withdrawn, replaced or expired', async () => {
    const withdrawn = await invite('two@alpha.test');
    const del = await h.api.inject({
      method: 'DELETE',
      url: `/api/v1/tenants/${h.a.slug}/invitations/${withdrawn.id}`,
      headers: h.bearer(h.a.owner.token),
    });
    expect(del.statusCode).toBe(200);
    expect((await accept(withdrawn.token, h.a.slug)).statusCode).toBe(404);

    const first = await invite('three@alpha.test');
    const second = await invite('three@alpha.test', 'tenant_owner');
    expect((await accept(first.token, h.a.slug)).statusCode).toBe(404);
    const list = await h.api.inject({
      url: `/api/v1/tenants/${h.a.slug}/invitations`,
      headers: h.bearer(h.a.owner.token),
    });
    expect(list.json<{ invitations: { id: string }[] }>().invitations.map((i) => i.id)).toEqual([second.id]);

    const late = await invite('four@alpha.test');
    await h.db.db
      .updateTable('invitations')
      .set({ expires_at: new Date(Date.now() - 1000) })
      .where('id', '=', late.id)
      .execute();
    expect((await accept(late.token, h.a.slug)).statusCode).toBe(404);
  });

  it('refuse an address that already has an account', async () => {
    const res = await h.api.inject({
      method: 'POST',
      url: `/api/v1/tenants/${h.a.slug}/invitations`,
      headers: h.bearer(h.a.owner.token),
      payload: { email: h.b.member.email },
    });
    expect(res.statusCode).toBe(409);
  });
});

describe('roles and removal', () => {
  it('take effect on the next request, and always leave an owner', async () => {
    const created = await h.api.inject({
      method: 'POST',
      url: `/api/v1/tenants/${h.a.slug}/users`,
      headers: h.bearer(h.a.owner.token),
      payload: { email: 'five@alpha.test', password: PASSWORD, role: 'tenant_member' },
    });
    const five = created.json<{ id: string }>().id;
    let fiveLogin = await h.login('five@alpha.test');
    const keys = (token: string) =>
      h.api.inject({ url: `/api/v1/tenants/${h.a.slug}/api-keys`, headers: h.bearer(token) });
    const refreshed = async (refreshToken: string) => {
      const res = await h.api.inject({
        method: 'POST',
        url: '/api/v1/auth/refresh',
        payload: { refreshToken },
      });
      expect(res.statusCode, res.body).toBe(200);
      return res.json<{ accessToken: string; refreshToken: string }>();
    };
    expect((await keys(fiveLogin.accessToken)).statusCode).toBe(403);
    const promote = await h.api.inject({
      method: 'PATCH',
      url: `/api/v1/tenants/${h.a.slug}/users/${five}`,
      headers: h.bearer(h.a.owner.token),
      payload: { role: 'tenant_owner' },
    });
    expect(promote.statusCode, promote.body).toBe(200);
    // The token naming the old role stops at once; a refresh carries the new one.
    expect((await keys(fiveLogin.accessToken)).statusCode).toBe(401);
    fiveLogin = await refreshed(fiveLogin.refreshToken);
    expect((await keys(fiveLogin.accessToken)).statusCode).toBe(200);

    // The original owner steps down; then five, now the only owner, may not.
    const down = await h.api.inject({
      method: 'PATCH',
      url: `/api/v1/tenants/${h.a.slug}/users/${h.a.owner.id}`,
      headers: h.bearer(fiveLogin.accessToken),
      payload: { role: 'tenant_member' },
    });
    expect(down.statusCode, down.body).toBe(200);
    for (const req of [
      { method: 'PATCH' as const, payload: { role: 'tenant_member' } },
      { method: 'DELETE' as const },
    ]) {
      const res = await h.api.inject({
        ...req,
        url: `/api/v1/tenants/${h.a.slug}/users/${five}`,
        headers: h.bearer(fiveLogin.accessToken),
      });
      expect(res.statusCode, res.body).toBe(409);
      expect(res.body).toContain('at least one owner');
    }
    // Back as it was; then five is removed and its logins end.
    const up = await h.api.inject({
      method: 'PATCH',
      url: `/api/v1/tenants/${h.a.slug}/users/${h.a.owner.id}`,
      headers: h.bearer(fiveLogin.accessToken),
      payload: { role: 'tenant_owner' },
    });
    expect(up.statusCode, up.body).toBe(200);
    h.a.owner.token = (await h.login(h.a.owner.email)).accessToken;
    const removed = await h.api.inject({
      method: 'DELETE',
      url: `/api/v1/tenants/${h.a.slug}/users/${five}`,
      headers: h.bearer(h.a.owner.token),
    });
    expect(removed.statusCode, removed.body).toBe(200);
    expect((await keys(fiveLogin.accessToken)).statusCode).toBe(401);
    const refused = await h.api.inject({
      method: 'POST',
      url: '/api/v1/auth/refresh',
      payload: { refreshToken: fiveLogin.refreshToken },
    });
    expect(refused.statusCode).toBe(401);
    expect(await h.db.db.selectFrom('sessions').select('id').where('user_id', '=', five).execute()).toEqual(
      [],
    );
  });

  it("cannot reach another tenant's user", async () => {
    const res = await h.api.inject({
      method: 'DELETE',
      url: `/api/v1/tenants/${h.a.slug}/users/${h.b.member.id}`,
      headers: h.bearer(h.a.owner.token),
    });
    expect(res.statusCode).toBe(404);
    expect(
      await h.db.db.selectFrom('users').select('id').where('id', '=', h.b.member.id).executeTakeFirst(),
    ).toBeDefined();
  });
});
