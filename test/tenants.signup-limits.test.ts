import { randomInt } from 'node:crypto';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ErrorBody } from '../src/api/errors.ts';
import type { ApiServer } from '../src/api/server.ts';
import { ProcessDriver } from '../src/compute/process/driver.ts';
import { containerReach } from '../src/compute/gateway.ts';
import { registerLifecycle } from '../src/platform/worker.ts';
import { createLogger } from '../src/observability/logger.ts';
import { orchestratorParts } from '../src/platform/orchestrator.ts';
import { SCHEDULES } from '../src/orchestrator/schedules.ts';
import { testApi } from './support/api.ts';
import { countRows, createTestDatabase, type TestDatabase } from './support/db.ts';
import { missingPart } from './support/strict.ts';

/**
 * Anonymous signups cost nothing, so they are bounded: a client address may
 * create AIQSO_SIGNUP_RATE_IP tenants an hour, and a signup still unpaid after
 * AIQSO_PENDING_SIGNUP_HOURS is removed by a schedule, freeing its slug and
 * e-mail address.
 */
let testDb: TestDatabase;
const apis: ApiServer[] = [];
const PASSWORD = 'correct horse battery staple';
// A fresh address per run: Redis keeps counts between runs for an hour.
const address = () => `10.${randomInt(256)}.${randomInt(256)}.${randomInt(1, 255)}`;
let serial = 0;
const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

async function redisAnswers(): Promise<boolean> {
  const r = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  r.on('error', () => undefined);
  try {
    await r.connect();
    return (await r.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    r.disconnect();
  }
}

beforeAll(async () => {
  testDb = await createTestDatabase();
});
afterAll(async () => {
  for (const api of apis) await api.close();
  await testDb.drop();
});

async function apiWith(env: Record<string, string>) {
  const built = await testApi(testDb, env);
  apis.push(built.api);
  return built;
}

function signup(api: ApiServer, ip: string, over: Record<string, string> = {}) {
  const n = ++serial;
  return api.inject({
    method: 'POST',
    url: '/api/v1/signup',
    remoteAddress: ip,
    payload: {
      company: 'Flood Ltd',
      slug: `flood${n}`,
      email: `f${n}@flood.test`,
      password: PASSWORD,
      ...over,
    },
  });
}

const errorOf = (res: { json: <T>() => T }) => res.json<ErrorBody>().error;

describe('the signup rate limit', () => {
  it('lets an address create AIQSO_SIGNUP_RATE_IP tenants an hour, then answers 429 and stores nothing', async () => {
    const { api } = await apiWith({ AIQSO_SIGNUP_RATE_IP: '3' });
    const ip = address();
    for (let i = 0; i < 3; i++) expect((await signup(api, ip)).statusCode).toBe(201);
    const tenants = await countRows(testDb, 'SELECT 1 FROM tenants');
    const refused = await signup(api, ip);
    expect(refused.statusCode).toBe(429);
    expect(errorOf(refused)).toMatchObject({ code: 'rate_limited' });
    expect(errorOf(refused).message).toMatch(
      /^too many signups from this address \(3 an hour\); try again in \d+ min$/,
    );
    expect(Number(refused.headers['retry-after'])).toBeGreaterThan(3000);
    expect(await countRows(testDb, 'SELECT 1 FROM tenants')).toBe(tenants);
    const audit = await testDb.pool.query(
      `SELECT l.result, host(a.address) AS source_ip
         FROM audit_log l JOIN audit_addresses a ON a.audit_id = l.id
        WHERE l.details->>'requestId' = $1`,
      [refused.headers['x-request-id']],
    );
    expect(audit.rows).toEqual([{ result: 'denied', source_ip: ip }]);

    // Another address is not affected; the signup page answers the same refusal as a page.
    expect((await signup(api, address())).statusCode).toBe(201);
    const form = await api.inject({
      method: 'POST',
      url: '/signup',
      remoteAddress: ip,
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: new URLSearchParams({
        company: 'F',
        slug: 'form-flood',
        email: 'ff@flood.test',
        password: PASSWORD,
      }).toString(),
    });
    expect(form.statusCode).toBe(429);
    expect(form.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(form.body).toContain('too many signups from this address');
  });

  it('does not count a customer coming back to an unpaid signup, nor refusals', async () => {
    const { api } = await apiWith({ AIQSO_SIGNUP_RATE_IP: '1' });
    const ip = address();
    expect((await signup(api, ip, { slug: 'backagain', email: 'back@flood.test' })).statusCode).toBe(201);
    expect((await signup(api, ip, { slug: 'backagain', email: 'back@flood.test' })).statusCode).toBe(201);
    expect((await signup(api, ip, { slug: 'Not A Slug' })).statusCode).toBe(400);
    expect((await signup(api, ip)).statusCode).toBe(429);
  });

  it('is shared by every API process through Redis when REDIS_URL is set', async ({ skip }) => {
    if (missingPart('Redis', await redisAnswers(), 'start redis-server or set TEST_REDIS_URL')) return skip();
    const env = {
      AIQSO_SIGNUP_RATE_IP: '2',
      REDIS_URL,
    };
    const one = (await apiWith(env)).api;
    const two = (await apiWith(env)).api;
    const ip = address();
    expect((await signup(one, ip)).statusCode).toBe(201);
    expect((await signup(two, ip)).statusCode).toBe(201);
    expect((await signup(one, ip)).statusCode).toBe(429);
    expect((await signup(two, ip)).statusCode).toBe(429);
  });

  it('is off with AIQSO_SIGNUP_RATE_IP=0', async () => {
    const { api } = await apiWith({ AIQSO_SIGNUP_RATE_IP: '0' });
    const ip = address();
    for (let i = 0; i < 12; i++) expect((await signup(api, ip)).statusCode).toBe(201);
  });
});

describe('unpaid signups', () => {
  it('are removed by the pending-signups schedule after AIQSO_PENDING_SIGNUP_HOURS, freeing slug and e-mail (audited)', async () => {
    const { api, config } = await apiWith({ AIQSO_PENDING_SIGNUP_HOURS: '24', AIQSO_SIGNUP_RATE_IP: '0' });
    const ip = address();
    const squat = await signup(api, ip, { slug: 'squatted', email: 'squat@flood.test' });
    const fresh = await signup(api, ip, { slug: 'fresh-one', email: 'fresh@flood.test' });
    const paid = await signup(api, ip, { slug: 'paid-one', email: 'paid@flood.test' });
    const idOf = (res: typeof squat) => res.json<{ tenant: { id: string } }>().tenant.id;
    await testDb.pool.query(
      "UPDATE tenants SET created_at = now() - interval '25 hours' WHERE id = ANY($1)",
      [[idOf(squat), idOf(paid)]],
    );
    await testDb.pool.query("UPDATE tenants SET status = 'provisioning' WHERE id = $1", [idOf(paid)]);
    // The slug and the address are taken while the signup waits.
    expect((await signup(api, ip, { slug: 'squatted', email: 'other@flood.test' })).statusCode).toBe(409);
    expect((await signup(api, ip, { slug: 'other', email: 'squat@flood.test' })).statusCode).toBe(409);

    // The schedule's handler as a platform worker registers it.
    expect(SCHEDULES.find((s) => s.name === 'pending-signups')).toMatchObject({ cron: '20 * * * *' });
    const parts = orchestratorParts(config);
    const compute = await ProcessDriver.open({
      root: path.join(config.dataDir, 'containers'),
      log: createLogger('silent'),
    });
    registerLifecycle(parts, {
      config,
      db: testDb.db,
      compute,
      reach: containerReach({ hostAddress: '127.0.0.1', http: config.http, databaseUrl: testDb.url }),
      master: { pool: testDb.pool, url: testDb.url },
    });
    await parts.scheduleHandlers['pending-signups']!({
      name: 'pending-signups',
      firedAt: new Date(),
      backfilled: false,
    });
    await compute.close();

    const left = await testDb.pool.query<{ slug: string; status: string }>(
      "SELECT slug, status FROM tenants WHERE slug IN ('squatted', 'fresh-one', 'paid-one') ORDER BY slug",
    );
    expect(left.rows).toEqual([
      { slug: 'fresh-one', status: 'pending_payment' },
      { slug: 'paid-one', status: 'provisioning' },
    ]);
    expect(await countRows(testDb, "SELECT 1 FROM users WHERE email = 'squat@flood.test'")).toBe(0);
    expect(
      await countRows(testDb, 'SELECT 1 FROM local_billing_objects WHERE tenant_id = $1', [idOf(squat)]),
    ).toBe(0);
    const audit = await testDb.pool.query(
      "SELECT actor_type, tenant_id, details FROM audit_log WHERE action = 'tenant.signup.expired'",
    );
    expect(audit.rows).toEqual([
      {
        actor_type: 'system',
        tenant_id: idOf(squat),
        details: expect.objectContaining({ slug: 'squatted', unpaidHours: 24 }) as unknown,
      },
    ]);
    expect(JSON.stringify(audit.rows)).not.toContain('squat@flood.test');
    expect(idOf(fresh)).toMatch(/^ten_/);

    // Free again for anyone.
    expect((await signup(api, ip, { slug: 'squatted', email: 'squat@flood.test' })).statusCode).toBe(201);
  });
});
