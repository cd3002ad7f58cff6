import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHarness, type Harness } from './support/identity.ts';

let h: Harness;
beforeAll(async () => {
  h = await createHarness();
});
afterAll(() => h.close());

const create = (payload: Record<string, unknown>, token = h.a.owner.token) =>
  h.api.inject({
    method: 'POST',
    url: `/api/v1/tenants/${h.a.slug}/api-keys`,
    headers: h.bearer(token),
    payload,
  });

describe('API keys', () => {
  it('shows the key once, stores only its hash, and records its last use', async () => {
    const res = await create({ name: 'ci', role: 'tenant_member' });
    expect(res.statusCode).toBe(201);
    const created = res.json<{ id: string; key: string; prefix: string; lastUsedAt: string | null }>();
    expect(created.key).toMatch(/^aiqso_[A-Za-z0-9_-]{43}$/);
    expect(created.key.startsWith(created.prefix)).toBe(true);
    expect(created.lastUsedAt).toBeNull();
    const row = await h.db.db
      .selectFrom('api_keys')
      .selectAll()
      .where('id', '=', created.id)
      .executeTakeFirstOrThrow();
    expect(JSON.stringify(row)).not.toContain(created.key);

    const me = await h.api.inject({ method: 'GET', url: '/api/v1/auth/me', headers: h.bearer(created.key) });
    expect(me.json()).toEqual({ kind: 'api_key', id: created.id, role: 'tenant_member', tenantId: h.a.id });
    const list = await h.api.inject({
      method: 'GET',
      url: `/api/v1/tenants/${h.a.slug}/api-keys`,
      headers: h.bearer(h.a.owner.token),
    });
    const listed = list
      .json<{ apiKeys: { id: string; lastUsedAt: string | null }[] }>()
      .apiKeys.find((k) => k.id === created.id)!;
    expect(listed.lastUsedAt).not.toBeNull();
    expect(list.body).not.toContain(created.key);
  });

  it('stops working when revoked or expired', async () => {
    const key = (await create({ name: 'short' })).json<{ id: string; key: string }>();
    await h.api.inject({
      method: 'DELETE',
      url: `/api/v1/tenants/${h.a.slug}/api-keys/${key.id}`,
      headers: h.bearer(h.a.owner.token),
    });
    expect(
      (await h.api.inject({ method: 'GET', url: '/api/v1/auth/me', headers: h.bearer(key.key) })).statusCode,
    ).toBe(401);

    const expiring = (
      await create({ name: 'soon', expiresAt: new Date(Date.now() + 60_000).toISOString() })
    ).json<{ id: string; key: string }>();
    expect(
      (await h.api.inject({ method: 'GET', url: '/api/v1/auth/me', headers: h.bearer(expiring.key) }))
        .statusCode,
    ).toBe(200);
    await h.db.db
      .updateTable('api_keys')
      .set({ expires_at: new Date(Date.now() - 1000) })
      .where('id', '=', expiring.id)
      .execute();
    expect(
      (await h.api.inject({ method: 'GET', url: '/api/v1/auth/me', headers: h.bearer(expiring.key) }))
        .statusCode,
    ).toBe(401);
  });

  it('refuses an expiry in the past, and key creation by a member key', async () => {
    const past = await create({ name: 'old', expiresAt: '2020-01-01T00:00:00Z' });
    expect(past.statusCode).toBe(400);
    const memberKey = (await create({ name: 'm', role: 'tenant_member' })).json<{ key: string }>().key;
    const escalate = await create({ name: 'up', role: 'tenant_owner' }, memberKey);
    expect(escalate.statusCode).toBe(403);
  });

  it('lets a platform admin create a platform key that reaches any tenant', async () => {
    const res = await h.api.inject({
      method: 'POST',
      url: '/api/v1/platform/api-keys',
      headers: h.bearer(h.admin.token),
      payload: { name: 'ops' },
    });
    expect(res.statusCode).toBe(201);
    const key = res.json<{ key: string; tenantId: null; role: string }>();
    expect(key).toMatchObject({ tenantId: null, role: 'platform_admin' });
    for (const t of [h.a, h.b]) {
      const got = await h.api.inject({
        method: 'GET',
        url: `/api/v1/tenants/${t.slug}`,
        headers: h.bearer(key.key),
      });
      expect(got.json()).toMatchObject({ id: t.id });
    }
  });
});
