import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ErrorBody } from '../src/api/errors.ts';
import type { ApiServer } from '../src/api/server.ts';
import { testApi } from './support/api.ts';
import { countRows, createTestDatabase, type TestDatabase } from './support/db.ts';

/**
 * NUL and other control characters anywhere in a request's text, and bodies
 * nested absurdly deep, are the caller's mistake: a 400 naming the field,
 * nothing stored, and the refused mutating request still in the audit log.
 * (PostgreSQL cannot store NUL: it used to surface as a 500, and a NUL in a
 * path parameter made the audit row itself fail.)
 */
let testDb: TestDatabase;
let api: ApiServer;

beforeAll(async () => {
  testDb = await createTestDatabase();
  ({ api } = await testApi(testDb));
});
afterAll(async () => {
  await api.close();
  await testDb.drop();
});

const PASSWORD = 'correct horse battery staple';
const json = (url: string, payload: string) =>
  api.inject({ method: 'POST', url, payload, headers: { 'content-type': 'application/json' } });
const errorOf = (res: { json: <T>() => T }) => res.json<ErrorBody>().error;
const signup = (over: Record<string, unknown>) =>
  JSON.stringify({ company: 'Acme', slug: 'acme', email: 'o@acme.test', password: PASSWORD, ...over });

async function auditRow(requestId: string) {
  const { rows } = await testDb.pool.query<{ action: string; result: string; target_type: string | null }>(
    "SELECT action, result, target_type FROM audit_log WHERE details->>'requestId' = $1",
    [requestId],
  );
  return rows;
}

describe('control characters in a request', () => {
  it.each([
    [
      'a NUL in the login email',
      '/api/v1/auth/login',
      JSON.stringify({ email: 'a\u0000@x.test', password: PASSWORD }),
      'body.email: contains the control character U+0000',
      'auth.login',
    ],
    [
      'a NUL in a signup field',
      '/api/v1/signup',
      signup({ company: 'Acme\u0000 Ltd' }),
      'body.company: contains the control character U+0000',
      'tenant.signup',
    ],
    [
      'a bell in the signup email',
      '/api/v1/signup',
      signup({ email: 'o\u0007@acme.test' }),
      'body.email: contains the control character U+0007',
      'tenant.signup',
    ],
    [
      'DEL in a password',
      '/api/v1/signup',
      signup({ password: `${PASSWORD}\u007f` }),
      'body.password: contains the control character U+007F',
      'tenant.signup',
    ],
    [
      'an escape character deep in an array',
      '/api/v1/signup',
      signup({ plan: ['a', ['b', '\u001b[31m']] }),
      'body.plan.1.1: contains the control character U+001B',
      'tenant.signup',
    ],
    [
      'a NUL in a field name',
      '/api/v1/signup',
      signup({ 'x\u0000y': 1 }),
      'body.x\\u0000y: has a name with the control character U+0000',
      'tenant.signup',
    ],
  ])(
    'refuses %s with a 400 naming the field, stores nothing, keeps the audit row',
    async (_label, url, payload, message, action) => {
      const tenants = await countRows(testDb, 'SELECT 1 FROM tenants');
      const res = await json(url, payload);
      expect(res.statusCode).toBe(400);
      expect(errorOf(res)).toMatchObject({ code: 'bad_request', message });
      expect(await countRows(testDb, 'SELECT 1 FROM tenants')).toBe(tenants);
      expect(await auditRow(res.headers['x-request-id'] as string)).toEqual([
        expect.objectContaining({ action, result: 'failure' }),
      ]);
    },
  );

  it('refuses a NUL in a path parameter before authentication, and audits the refusal without the value', async () => {
    const res = await api.inject({ method: 'POST', url: '/api/v1/tenants/ac%00me/cancel' });
    expect(res.statusCode).toBe(400);
    expect(errorOf(res).message).toBe('params.tenant: contains the control character U+0000');
    expect(await auditRow(res.headers['x-request-id'] as string)).toEqual([
      { action: 'tenant.cancel', result: 'failure', target_type: 'tenant' },
    ]);
  });

  it('refuses a control character in the query string', async () => {
    const res = await api.inject({ method: 'GET', url: '/api/v1/audit?tenant=%01' });
    expect(res.statusCode).toBe(400);
    expect(errorOf(res).message).toBe('query.tenant: contains the control character U+0001');
  });

  it('refuses a NUL in a form post (the signup page)', async () => {
    const res = await api.inject({
      method: 'POST',
      url: '/signup',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: `company=Acme%00&slug=formnul&email=f%40acme.test&password=${encodeURIComponent(PASSWORD)}`,
    });
    expect(res.statusCode).toBe(400);
    expect(errorOf(res).message).toBe('body.company: contains the control character U+0000');
    expect(await countRows(testDb, "SELECT 1 FROM tenants WHERE slug = 'formnul'")).toBe(0);
  });

  it('refuses a body nested deeper than 64 levels', async () => {
    const res = await json(
      '/api/v1/signup',
      signup({ plan: JSON.parse(`${'['.repeat(100)}${']'.repeat(100)}`) as unknown }),
    );
    expect(res.statusCode).toBe(400);
    expect(errorOf(res).message).toMatch(/^body\.plan(\.0)+: is nested deeper than 64 levels$/);
    const deeper = await json('/api/v1/auth/login', `{"email":${'['.repeat(50_000)}${']'.repeat(50_000)}}`);
    expect(deeper.statusCode).toBe(400);
  });

  it('lets tab, line feed and carriage return through (they are text)', async () => {
    const res = await json(
      '/api/v1/signup',
      signup({ company: 'Acme\tLtd', slug: 'tabbed', email: 'tab@acme.test' }),
    );
    expect(res.statusCode, res.body).toBe(201);
  });
});
