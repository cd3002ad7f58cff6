import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assembleApi } from '../src/app.ts';
import type { ApiServer } from '../src/api/server.ts';
import { newId } from '../src/core/ids.ts';
import { hashPassword } from '../src/identity/passwords.ts';
import { createLogger } from '../src/observability/logger.ts';
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
});
