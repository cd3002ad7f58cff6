import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { DomainError } from '../src/core/errors.ts';
import { openDatabase } from '../src/db/database.ts';
import type { ErrorBody } from '../src/api/errors.ts';
import type { ApiServer } from '../src/api/server.ts';
import { buildApi } from '../src/platform/api.ts';
import { createBilling } from '../src/billing/index.ts';
import type { DatabaseHandle } from '../src/db/database.ts';
import { createLogger } from '../src/observability/logger.ts';
import { createMetrics } from '../src/observability/metrics.ts';
import { testConfig } from './support/api.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';

let testDb: TestDatabase;

/** The API before `ready()`, so this file can add routes that exercise the error handler. */
async function unreadyApi(db: DatabaseHandle): Promise<ApiServer> {
  const config = testConfig();
  const billing = await createBilling(config, db.db, []);
  const database = { ...db, mode: 'external' as const };
  return buildApi({
    config,
    log: createLogger('silent'),
    database,
    metrics: createMetrics(),
    billing,
    plans: [],
  });
}
let api: ApiServer;

beforeAll(async () => {
  testDb = await createTestDatabase();
  api = await unreadyApi(testDb);
  // A route with a typed body, to see how schema failures are reported. Public, like every route
  // that must answer without credentials: the rest of the app is authenticated.
  api.post(
    '/test/echo',
    {
      config: { public: true },
      schema: { body: z.object({ name: z.string().min(1), count: z.number().int() }) },
    },
    (req) => req.body,
  );
  api.get('/test/boom', { config: { public: true } }, () => {
    throw new Error('database password is hunter2');
  });
  api.get('/test/domain', { config: { public: true } }, () => {
    throw new DomainError('conflict', 'slug "acme" is taken', { details: { field: 'slug' } });
  });
  await api.ready();
});

afterAll(async () => {
  await api.close();
  await testDb.drop();
});

const post = (payload: string, contentType = 'application/json') =>
  api.inject({ method: 'POST', url: '/test/echo', payload, headers: { 'content-type': contentType } });

describe('malformed requests get a 4xx JSON error, never a 5xx', () => {
  it('accepts a well-formed request', async () => {
    const res = await post('{"name":"a","count":2}');
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ name: 'a', count: 2 });
  });

  it.each([
    ['truncated JSON', '{"name":'],
    ['not JSON at all', 'hello'],
    ['empty body', ''],
    ['a lone quote', '"'],
  ])('%s → 400 bad_request', async (_label, body) => {
    const res = await post(body);
    expect(res.statusCode).toBe(400);
    expect(res.json()).toEqual({ error: { code: 'bad_request', message: 'request body is not valid JSON' } });
  });

  it.each([
    ['a string where a number is expected', '{"name":"a","count":"2"}', 'body.count'],
    ['a missing field', '{"count":2}', 'body.name'],
    ['a float where an integer is expected', '{"name":"a","count":1.5}', 'body.count'],
    ['an array instead of an object', '[1,2]', 'body'],
    ['null', 'null', 'body'],
  ])('%s → 400 validation_failed naming the field', async (_label, body, field) => {
    const res = await post(body);
    expect(res.statusCode).toBe(400);
    const { error } = res.json<{ error: { code: string; message: string } }>();
    expect(error.code).toBe('validation_failed');
    expect(error.message.startsWith(`${field}:`)).toBe(true);
  });

  it('refuses an unsupported content type with 415', async () => {
    const res = await post('name,count', 'text/csv');
    expect(res.statusCode).toBe(415);
    expect(res.json<ErrorBody>().error.code).toBe('unsupported_media_type');
  });

  it('refuses an oversized body with 413', async () => {
    const res = await post(JSON.stringify({ name: 'x'.repeat(2 * 1024 * 1024), count: 1 }));
    expect(res.statusCode).toBe(413);
    expect(res.json<ErrorBody>().error.code).toBe('payload_too_large');
  });

  it('answers unknown routes and methods with 404 JSON', async () => {
    for (const [method, url] of [
      ['GET', '/nope'],
      ['DELETE', '/healthz'],
      ['GET', '/api/v1/../../etc/passwd'],
    ] as const) {
      const res = await api.inject({ method, url });
      expect(res.statusCode).toBe(404);
      expect(res.json<ErrorBody>().error.code).toBe('not_found');
    }
  });

  it('maps a domain error to its status with its code and details', async () => {
    const res = await api.inject({ method: 'GET', url: '/test/domain' });
    expect(res.statusCode).toBe(409);
    expect(res.json()).toEqual({
      error: { code: 'conflict', message: 'slug "acme" is taken', details: { field: 'slug' } },
    });
  });

  it('reports an unexpected failure as 500 internal without leaking its message or stack', async () => {
    const res = await api.inject({ method: 'GET', url: '/test/boom' });
    expect(res.statusCode).toBe(500);
    expect(res.body).not.toContain('hunter2');
    expect(res.body).not.toContain('at ');
    expect(res.json<ErrorBody>().error.code).toBe('internal');
  });

  it('echoes a safe request id and replaces an unsafe one', async () => {
    const ok = await api.inject({ method: 'GET', url: '/healthz', headers: { 'x-request-id': 'abc-123' } });
    expect(ok.headers['x-request-id']).toBe('abc-123');
    const bad = await api.inject({ method: 'GET', url: '/healthz', headers: { 'x-request-id': 'a b\nc' } });
    expect(bad.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
  });
});

describe('operations endpoints', () => {
  it('serves /healthz, /readyz and Prometheus /metrics', async () => {
    expect((await api.inject({ url: '/healthz' })).json()).toMatchObject({ status: 'ok' });
    expect((await api.inject({ url: '/readyz' })).statusCode).toBe(200);
    const metrics = await api.inject({ url: '/metrics' });
    expect(metrics.headers['content-type']).toMatch(/^text\/plain/);
    expect(metrics.body).toContain('aiqso_http_requests_total');
  });

  it('generates the OpenAPI document from the route schemas', async () => {
    const doc = (await api.inject({ url: '/api/openapi.json' })).json<{ openapi: string; paths: object }>();
    expect(doc.openapi).toBe('3.1.0');
    expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(['/healthz', '/readyz', '/metrics']));
    const docs = await api.inject({ url: '/api/docs/' });
    expect(docs.statusCode).toBe(200);
    expect(docs.headers['content-type']).toMatch(/text\/html/);
  });

  it('answers /readyz with 503 when the database is unreachable', async () => {
    const dead = openDatabase('postgres://nobody@127.0.0.1:1/none', { max: 1 });
    const deadApi = await unreadyApi(dead);
    const res = await deadApi.inject({ url: '/readyz' });
    expect(res.statusCode).toBe(503);
    expect(res.json<ErrorBody>().error.code).toBe('unavailable');
    await deadApi.close();
    await dead.close();
  });
});
