import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assembleApi } from '../src/platform/api.ts';
import type { ApiServer } from '../src/api/server.ts';
import { newId } from '../src/core/ids.ts';
import { hashPassword } from '../src/identity/passwords.ts';
import { createLogger } from '../src/observability/logger.ts';
import { redactText, redactUrl } from '../src/observability/redact.ts';
import { createMetrics } from '../src/observability/metrics.ts';
import { testConfig } from './support/api.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';

const lines: Record<string, unknown>[] = [];
let testDb: TestDatabase;
let api: ApiServer;
const tenantId = newId('tenant');

beforeAll(async () => {
  testDb = await createTestDatabase();
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n').filter(Boolean))
        lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  ({ api } = await assembleApi(
    testConfig(),
    createLogger('info', sink),
    { ...testDb, mode: 'external' },
    createMetrics(),
  ));
  await testDb.db
    .insertInto('tenants')
    .values({ id: tenantId, slug: 'logged', company: 'Logged Ltd' })
    .execute();
  await testDb.db
    .insertInto('users')
    .values({
      id: newId('user'),
      email: 'owner@logged.test',
      role: 'tenant_owner',
      tenant_id: tenantId,
      password_hash: await hashPassword('correct horse battery staple'),
    })
    .execute();
});
afterAll(async () => {
  await api.close();
  await testDb.drop();
});

describe('request logs', () => {
  it('carry the request id on every line, and the tenant id once the caller is known', async () => {
    const login = await api.inject({
      method: 'POST',
      url: '/api/v1/auth/login',
      payload: { email: 'owner@logged.test', password: 'correct horse battery staple' },
      headers: { 'x-request-id': 'req-login-1' },
    });
    const { accessToken } = login.json<{ accessToken: string }>();
    const res = await api.inject({
      url: '/api/v1/tenants/logged',
      headers: { authorization: `Bearer ${accessToken}`, 'x-request-id': 'req-tenant-1' },
    });
    expect(res.statusCode).toBe(200);
    const tenantLines = lines.filter((l) => l.reqId === 'req-tenant-1');
    expect(tenantLines.length).toBeGreaterThan(0);
    expect(tenantLines.every((l) => l.tenantId === tenantId)).toBe(true);
    expect(lines.filter((l) => l.reqId === 'req-login-1').length).toBeGreaterThan(0);
    expect(JSON.stringify(lines)).not.toContain('correct horse battery staple');
  });

  it('keep no bearer-like ids: checkout ids and credentials in query strings are redacted', async () => {
    const checkout = 'cs_local0123456789abcdefghijklmnop';
    // A local customer portal link's secret (a well-formed one that opens nothing).
    const portal = 'Zm9ydHktdGhyZWUtY2hhcmFjdGVycy1vZi1zZWNyZXQ';
    for (const [url, id] of [
      [`/billing/checkout/${checkout}`, 'req-checkout-1'],
      [`/billing/checkout/${checkout}/pay`, 'req-checkout-2'],
      [`/billing/portal?session=${portal}`, 'req-portal-1'],
      ['/api/v1/tenants/logged?access_token=sekrit-value-1&tenant=logged', 'req-query-1'],
    ] as const) {
      const method = url.endsWith('/pay') ? 'POST' : 'GET';
      await api.inject({ method, url, headers: { 'x-request-id': id } });
      const request = lines.find((l) => l.reqId === id && l.msg === 'request');
      expect(request, id).toBeDefined();
    }
    const text = JSON.stringify(lines);
    expect(text).not.toContain(checkout);
    expect(text).not.toContain(portal);
    expect(text).not.toContain('sekrit-value-1');
    const urls = lines.filter((l) => l.msg === 'request').map((l) => l.url);
    expect(urls).toEqual(
      expect.arrayContaining([
        '/billing/checkout/[redacted]',
        '/billing/checkout/[redacted]/pay',
        '/billing/portal?session=[redacted]',
        '/api/v1/tenants/logged?access_token=[redacted]&tenant=logged',
      ]),
    );
  });
});

describe('redactUrl', () => {
  it.each([
    ['/', '/'],
    ['/api/v1/tenants/acme?now=true', '/api/v1/tenants/acme?now=true'],
    ['/billing/checkout/cs_localabc', '/billing/checkout/[redacted]'],
    ['/billing/checkout/cs_localabc/pay?x=1', '/billing/checkout/[redacted]/pay?x=1'],
    ['http://h/billing/checkout/cs_localabc', 'http://h/billing/checkout/[redacted]'],
    [
      '/cb?code=abc&state=s&token=t&api_key=k&refresh%5Ftoken=r',
      '/cb?code=[redacted]&state=s&token=[redacted]&api_key=[redacted]&refresh%5Ftoken=[redacted]',
    ],
    [
      '/p?session_id=1&Password=2&sig=3&flag',
      '/p?session_id=[redacted]&Password=[redacted]&sig=[redacted]&flag',
    ],
    ['/p?tenant=a%ZZ&msg=hi', '/p?tenant=a%ZZ&msg=hi'],
  ])('%s → %s', (url, logged) => {
    expect(redactUrl(url)).toBe(logged);
  });
});

describe('redactText', () => {
  it('replaces checkout ids, API keys and refresh tokens in free text', () => {
    const key = `aiqso_${'k'.repeat(43)}`;
    const refresh = `aiqso_rt_${'r'.repeat(43)}`;
    expect(
      redactText(`no checkout session cs_local0123456789abcdefghijklmnop; cs_test_a1B2c3; ${key} ${refresh}`),
    ).toBe('no checkout session [redacted]; [redacted]; [redacted] [redacted]');
    expect(redactText('tenant acme is cancelled')).toBe('tenant acme is cancelled');
  });
});
