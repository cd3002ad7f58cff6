import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { upsertRoute } from '../src/edge/routes-store.ts';
import { createHarness, PASSWORD, totpCodeAtStep, type Harness } from './support/identity.ts';

/**
 * The operator's API behind the console: `GET /api/v1/tenants` (search,
 * status filter, pages; its query validated), suspend and reactivate (the
 * tenant's routes follow at once; a payment does not lift an operator's
 * suspension), and the second step of a login by token.
 */
let h: Harness;

beforeAll(async () => {
  h = await createHarness();
  for (const [slug, status] of [
    ['gamma', 'suspended'],
    ['delta', 'active'],
    ['epsilon', 'provisioning'],
  ] as const) {
    await h.db.db
      .insertInto('tenants')
      .values({ id: `ten_${slug.padEnd(26, '0')}`, slug, company: `${slug} 100% Ltd`, status })
      .execute();
  }
});
afterAll(() => h?.close());

const get = (url: string, token = h.admin.token) =>
  h.api.inject({ method: 'GET', url, headers: h.bearer(token) });
const post = (url: string, token = h.admin.token) =>
  h.api.inject({ method: 'POST', url, headers: h.bearer(token) });

describe('GET /api/v1/tenants', () => {
  it('pages every tenant, newest first, with the total', async () => {
    const all = await get('/api/v1/tenants');
    expect(all.statusCode, all.body).toBe(200);
    const body = all.json<{ tenants: { slug: string }[]; total: number; limit: number; offset: number }>();
    expect([body.total, body.limit, body.offset]).toEqual([5, 25, 0]);
    expect(body.tenants.map((t) => t.slug).sort()).toEqual(['alpha', 'bravo', 'delta', 'epsilon', 'gamma']);
    const page = await get('/api/v1/tenants?limit=2&offset=4');
    expect(page.json<{ tenants: unknown[]; total: number }>()).toMatchObject({
      total: 5,
      tenants: [expect.anything()],
    });
  });

  it('searches slug and company (wildcards taken literally) and filters by status', async () => {
    const slugs = async (query: string) =>
      (await get(`/api/v1/tenants?${query}`))
        .json<{ tenants: { slug: string }[] }>()
        .tenants.map((t) => t.slug)
        .sort();
    expect(await slugs('q=ALPH')).toEqual(['alpha']);
    expect(await slugs('q=100%25')).toEqual(['delta', 'epsilon', 'gamma']);
    expect(await slugs('q=_')).toEqual([]);
    expect(await slugs('status=suspended')).toEqual(['gamma']);
    expect(await slugs('status=active&q=a')).toEqual(['alpha', 'bravo', 'delta']);
  });

  it('refuses a bad query with 400 naming the field', async () => {
    for (const [query, field] of [
      ['limit=0', 'querystring.limit'],
      ['limit=201', 'querystring.limit'],
      ['limit=ten', 'querystring.limit'],
      ['offset=-1', 'querystring.offset'],
      ['offset=1.5', 'querystring.offset'],
      ['status=sleeping', 'querystring.status'],
      [`q=${'x'.repeat(101)}`, 'querystring.q'],
    ] as const) {
      const res = await get(`/api/v1/tenants?${query}`);
      expect(res.statusCode, query).toBe(400);
      const error = res.json<{ error: { code: string; message: string } }>().error;
      expect(error.code).toBe('validation_failed');
      expect(error.message.startsWith(`${field}:`), error.message).toBe(true);
    }
  });

  it('is for platform admins only', async () => {
    expect((await get('/api/v1/tenants', h.a.owner.token)).statusCode).toBe(403);
    expect((await h.api.inject({ method: 'GET', url: '/api/v1/tenants' })).statusCode).toBe(401);
  });
});

describe('suspend and reactivate', () => {
  it('suspends and reactivates, idempotently; the routes follow; 409 where the status does not allow it', async () => {
    await upsertRoute(h.db.db, {
      hostname: 'delta.localhost',
      tenantId: 'ten_delta000000000000000000000',
      upstream: { host: '127.0.0.1', port: 9 },
    });
    const routeState = async () =>
      (
        await h.db.db
          .selectFrom('routes')
          .select('state')
          .where('hostname', '=', 'delta.localhost')
          .executeTakeFirstOrThrow()
      ).state;
    const first = await post('/api/v1/tenants/delta/suspend');
    expect(first.statusCode, first.body).toBe(200);
    expect(first.json()).toMatchObject({
      tenant: { slug: 'delta', status: 'suspended', statusReason: 'suspended by an operator' },
      changed: true,
    });
    expect(await routeState()).toBe('suspended');
    expect((await post('/api/v1/tenants/delta/suspend')).json()).toMatchObject({ changed: false });
    const back = await post('/api/v1/tenants/delta/reactivate');
    expect(back.json()).toMatchObject({ tenant: { status: 'active', statusReason: null }, changed: true });
    expect(await routeState()).toBe('active');
    expect((await post('/api/v1/tenants/delta/reactivate')).json()).toMatchObject({ changed: false });

    const provisioning = await post('/api/v1/tenants/epsilon/reactivate');
    expect([
      provisioning.statusCode,
      provisioning.json<{ error: { message: string } }>().error.message,
    ]).toEqual([409, 'epsilon is provisioning and cannot be reactivated']);
    expect((await post('/api/v1/tenants/nosuch/suspend')).statusCode).toBe(404);
    const audit = await h.db.pool.query<{ action: string; actor_type: string }>(
      "SELECT action, actor_type FROM audit_log WHERE tenant_id = 'ten_delta000000000000000000000' ORDER BY id",
    );
    expect(audit.rows.map((r) => `${r.actor_type} ${r.action}`)).toEqual([
      'operator tenant.suspended',
      'user tenant.suspend',
      'user tenant.suspend',
      'operator tenant.reactivated',
      'user tenant.reactivate',
      'user tenant.reactivate',
    ]);
  });
});

describe('second step of a login', () => {
  it('takes the token a password login answered with and a code; a wrong code or token is refused', async () => {
    const first = await h.api.inject({
      method: 'POST',
      url: '/api/v1/auth/login',
      payload: { email: h.admin.email, password: PASSWORD },
    });
    expect(first.statusCode).toBe(401);
    const details = first.json<{ error: { details: { reason: string; secondFactorToken: string } } }>().error
      .details;
    expect(details.reason).toBe('totp_required');
    const step = (body: object) =>
      h.api.inject({ method: 'POST', url: '/api/v1/auth/login/second-factor', payload: body });
    expect((await step({ token: details.secondFactorToken, totp: '000000' })).statusCode).toBe(401);
    expect((await step({ token: details.secondFactorToken })).statusCode).toBe(400);
    const forged = await step({ token: `${details.secondFactorToken}x`, totp: h.code(h.admin.totpSecret) });
    expect(forged.json<{ error: { message: string } }>().error.message).toBe(
      'the sign-in has expired; start again with the password',
    );
    // The token is not an access token.
    expect((await get('/api/v1/auth/me', details.secondFactorToken)).statusCode).toBe(401);
    const used = new Set(
      (
        await h.db.db.selectFrom('totp_used_steps').select('step').where('user_id', '=', h.admin.id).execute()
      ).map((r) => Number(r.step)),
    );
    const now = Math.floor(Date.now() / 30_000);
    const unspent = [now, now + 1, now - 1].find((st) => !used.has(st))!;
    const ok = await step({
      token: details.secondFactorToken,
      totp: totpCodeAtStep(h.admin.totpSecret, unspent),
    });
    expect(ok.statusCode, ok.body).toBe(200);
    expect(ok.json<{ user: { role: string } }>().user.role).toBe('platform_admin');
  });
});
