import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../src/db/embedded.ts';
import type { TenantStatus } from '../src/core/tenants.ts';
import { startCli } from './support/cli.ts';
import { createHarness, PASSWORD, type Harness } from './support/identity.ts';

/**
 * The API takes JSON only (a cross-site form cannot send JSON), a refresh by
 * cookie needs the CSRF header, a closed tenant gains no users or keys, API
 * keys do not mint API keys, and a revoked key is refused on the very next
 * request, also by another API process.
 */
let h: Harness;
beforeAll(async () => {
  h = await createHarness();
});
afterAll(() => h.close());

const cookiesOf = (setCookie: string | string[] | undefined) =>
  Object.fromEntries(
    ([] as string[])
      .concat(setCookie ?? [])
      .map((c) => c.split(';')[0]!.split('='))
      .map(([k, ...v]) => [k!, v.join('=')]),
  );

describe('JSON only', () => {
  it('refuses a form-encoded login with 415, even with mode=cookie (login CSRF)', async () => {
    const body = new URLSearchParams({ email: h.a.owner.email, password: PASSWORD, mode: 'cookie' });
    const res = await h.api.inject({
      method: 'POST',
      url: '/api/v1/auth/login',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: body.toString(),
    });
    expect(res.statusCode, res.body).toBe(415);
    expect(res.json()).toMatchObject({ error: { code: 'unsupported_media_type' } });
    expect(res.headers['set-cookie']).toBeUndefined();
  });

  it('refuses text/plain and multipart bodies on JSON routes with 415', async () => {
    for (const type of ['text/plain', 'multipart/form-data; boundary=x']) {
      const res = await h.api.inject({
        method: 'POST',
        url: '/api/v1/auth/login',
        headers: { 'content-type': type },
        payload: JSON.stringify({ email: h.a.owner.email, password: PASSWORD }),
      });
      expect(res.statusCode, type).toBe(415);
    }
    const owner = await h.api.inject({
      method: 'POST',
      url: `/api/v1/tenants/${h.a.slug}/users`,
      headers: { ...h.bearer(h.a.owner.token), 'content-type': 'application/x-www-form-urlencoded' },
      payload: 'email=x%40alpha.test&password=correct+horse+battery+staple+42&role=tenant_owner',
    });
    expect(owner.statusCode).toBe(415);
  });

  it('still takes the portal forms that declare themselves (signup), and JSON everywhere', async () => {
    const form = await h.api.inject({
      method: 'POST',
      url: '/signup',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: 'company=Form+Co&slug=formco&email=owner%40formco.test&password=correct+horse+battery+staple',
    });
    expect(form.statusCode, form.body).toBe(303);
    const json = await h.api.inject({
      method: 'POST',
      url: '/api/v1/auth/login',
      payload: { email: h.a.owner.email, password: PASSWORD },
    });
    expect(json.statusCode).toBe(200);
  });
});

describe('refresh with the cookie', () => {
  async function cookieLogin() {
    const res = await h.api.inject({
      method: 'POST',
      url: '/api/v1/auth/login',
      payload: { email: h.a.member.email, password: PASSWORD, mode: 'cookie' },
    });
    expect(res.statusCode).toBe(200);
    return cookiesOf(res.headers['set-cookie']);
  }

  it('refuses a cookie refresh without the CSRF header (403), and with a wrong one', async () => {
    const jar = await cookieLogin();
    const cookie = `aiqso_rt=${jar.aiqso_rt}; aiqso_csrf=${jar.aiqso_csrf}`;
    const bare = await h.api.inject({
      method: 'POST',
      url: '/api/v1/auth/refresh',
      headers: { cookie },
      payload: { mode: 'cookie' },
    });
    expect(bare.statusCode, bare.body).toBe(403);
    expect(bare.json<{ error: { message: string } }>().error.message).toContain('x-csrf-token');
    const wrong = await h.api.inject({
      method: 'POST',
      url: '/api/v1/auth/refresh',
      headers: { cookie, 'x-csrf-token': 'not-the-one' },
      payload: { mode: 'cookie' },
    });
    expect(wrong.statusCode).toBe(403);
    // The refused attempts did not spend the token: the right request still works.
    const ok = await h.api.inject({
      method: 'POST',
      url: '/api/v1/auth/refresh',
      headers: { cookie, 'x-csrf-token': jar.aiqso_csrf! },
      payload: { mode: 'cookie' },
    });
    expect(ok.statusCode, ok.body).toBe(200);
  });

  it('leaves a refresh token sent in the body alone (no cookie, no CSRF)', async () => {
    const { refreshToken } = await h.login(h.a.member.email);
    const res = await h.api.inject({
      method: 'POST',
      url: '/api/v1/auth/refresh',
      payload: { refreshToken },
    });
    expect(res.statusCode).toBe(200);
  });
});

describe('closed tenants gain no users or keys', () => {
  let n = 0;
  async function tenantWithOwner(status: TenantStatus) {
    const { id, slug, token } = await h.ownedTenant(`closed${++n}`);
    await h.db.db.updateTable('tenants').set({ status }).where('id', '=', id).execute();
    return { id, slug, token };
  }

  it.each(['cancelled', 'suspended'] as const)(
    'refuses a %s tenant new users and API keys (409), for its owner and for an admin',
    async (status) => {
      const t = await tenantWithOwner(status);
      for (const token of [t.token, h.admin.token]) {
        const user = await h.api.inject({
          method: 'POST',
          url: `/api/v1/tenants/${t.slug}/users`,
          headers: h.bearer(token),
          payload: { email: `late${n}@${t.slug}.test`, password: PASSWORD, role: 'tenant_owner' },
        });
        expect(user.statusCode, user.body).toBe(409);
        expect(user.json<{ error: { message: string } }>().error.message).toBe(
          `${t.slug} is ${status}; users cannot be added to it`,
        );
        const key = await h.api.inject({
          method: 'POST',
          url: `/api/v1/tenants/${t.slug}/api-keys`,
          headers: h.bearer(token),
          payload: { name: 'late', role: 'tenant_owner' },
        });
        expect(key.statusCode, key.body).toBe(409);
        expect(key.json<{ error: { message: string } }>().error.message).toBe(
          `${t.slug} is ${status}; API keys cannot be added to it`,
        );
      }
      const made = await h.db.db.selectFrom('api_keys').select('id').where('tenant_id', '=', t.id).execute();
      expect(made).toEqual([]);
      const users = await h.db.db.selectFrom('users').select('id').where('tenant_id', '=', t.id).execute();
      expect(users).toHaveLength(1);
    },
  );

  it('lets an active tenant add both', async () => {
    const t = await tenantWithOwner('active');
    const key = await h.api.inject({
      method: 'POST',
      url: `/api/v1/tenants/${t.slug}/api-keys`,
      headers: h.bearer(t.token),
      payload: { name: 'fine' },
    });
    expect(key.statusCode, key.body).toBe(201);
  });
});

describe('API keys', () => {
  async function platformKey(name: string) {
    const res = await h.api.inject({
      method: 'POST',
      url: '/api/v1/platform/api-keys',
      headers: h.bearer(h.admin.token),
      payload: { name },
    });
    expect(res.statusCode, res.body).toBe(201);
    return res.json<{ id: string; key: string }>();
  }

  it('a platform key cannot mint a platform key, nor a tenant key (403); a signed-in admin can', async () => {
    const { key } = await platformKey('automation');
    const platform = await h.api.inject({
      method: 'POST',
      url: '/api/v1/platform/api-keys',
      headers: h.bearer(key),
      payload: { name: 'successor' },
    });
    expect(platform.statusCode, platform.body).toBe(403);
    expect(platform.json<{ error: { message: string } }>().error.message).toContain(
      'API keys cannot create API keys',
    );
    const tenant = await h.api.inject({
      method: 'POST',
      url: `/api/v1/tenants/${h.a.slug}/api-keys`,
      headers: h.bearer(key),
      payload: { name: 'successor', role: 'tenant_owner' },
    });
    expect(tenant.statusCode, tenant.body).toBe(403);
    // Nothing was made; the key can still do admin work.
    const names = (
      await h.db.db.selectFrom('api_keys').select('name').where('name', '=', 'successor').execute()
    ).map((r) => r.name);
    expect(names).toEqual([]);
    expect(
      (await h.api.inject({ url: '/api/v1/platform/api-keys', headers: h.bearer(key) })).statusCode,
    ).toBe(200);
  });

  it("a tenant owner's key cannot mint keys either", async () => {
    const res = await h.api.inject({
      method: 'POST',
      url: `/api/v1/tenants/${h.a.slug}/api-keys`,
      headers: h.bearer(h.a.owner.token),
      payload: { name: 'owner key', role: 'tenant_owner' },
    });
    const { key } = res.json<{ key: string }>();
    const minted = await h.api.inject({
      method: 'POST',
      url: `/api/v1/tenants/${h.a.slug}/api-keys`,
      headers: h.bearer(key),
      payload: { name: 'from a key' },
    });
    expect(minted.statusCode).toBe(403);
  });

  it('a revoked platform key is refused on the very next request, also by another API process', async () => {
    const port = await freePort();
    const dataDir = await mkdtemp(path.join(os.tmpdir(), 'aiqso-second-api-'));
    const other = await startCli(
      ['edge'],
      {
        DATABASE_URL: h.db.url,
        AIQSO_HTTP_PORT: String(port),
        AIQSO_DATA_DIR: dataDir,
        AIQSO_MASTER_KEY: h.config.masterKey!,
      },
      'Press Ctrl-C to stop.',
    );
    try {
      const { id, key } = await platformKey('leaked');
      const use = () =>
        fetch(`http://127.0.0.1:${port}/api/v1/platform/api-keys`, {
          headers: { authorization: `Bearer ${key}`, host: 'localhost' },
        }).then(async (r) => ({ status: r.status, body: await r.text() }));
      expect((await use()).status).toBe(200);
      const revoked = await h.api.inject({
        method: 'DELETE',
        url: `/api/v1/platform/api-keys/${id}`,
        headers: h.bearer(h.admin.token),
      });
      expect(revoked.statusCode, revoked.body).toBe(200);
      expect(revoked.json()).toMatchObject({ id, revokedAt: expect.any(String) as string });
      const after = await use();
      expect(after.status, after.body).toBe(401);
      expect(
        (await h.api.inject({ url: '/api/v1/platform/api-keys', headers: h.bearer(key) })).statusCode,
      ).toBe(401);
      const again = await h.api.inject({
        method: 'DELETE',
        url: `/api/v1/platform/api-keys/${id}`,
        headers: h.bearer(h.admin.token),
      });
      expect(again.statusCode).toBe(404);
    } finally {
      other.child.kill('SIGTERM');
      await other.exited;
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
