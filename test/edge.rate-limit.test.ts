import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { upsertRoute } from '../src/edge/routes-store.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import { insertTenant, startTestEdge, type TestEdge } from './support/edge.ts';
import { missingPart } from './support/strict.ts';
import { rawGet, startEchoUpstream, type EchoUpstream } from './support/upstreams.ts';

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

let database: TestDatabase;
const upstreams: EchoUpstream[] = [];
const edges: TestEdge[] = [];
// A fresh base domain per run: the Redis budgets are namespaced by it.
const base = `rl${randomBytes(4).toString('hex')}.test`;

beforeAll(async () => {
  database = await createTestDatabase();
  for (const t of ['acme', 'globex']) {
    const tenantId = await insertTenant(database.db, t);
    const u = await startEchoUpstream(t);
    upstreams.push(u);
    await upsertRoute(database.db, {
      hostname: `${t}.${base}`,
      tenantId,
      upstream: { host: '127.0.0.1', port: u.port },
    });
  }
});

afterAll(async () => {
  for (const e of edges) await e.close();
  for (const u of upstreams) await u.close();
  await database?.drop();
});

async function edgeWith(env: Record<string, string>) {
  const e = await startTestEdge(database, { env: { AIQSO_BASE_DOMAIN: base, ...env } });
  edges.push(e);
  return e;
}

async function burst(ports: number[], host: string, n: number) {
  return Promise.all(Array.from({ length: n }, (_, i) => rawGet(ports[i % ports.length]!, '/', host)));
}

describe('edge rate limits', () => {
  it('answers 429 with Retry-After to a client IP over its budget', async () => {
    const e = await edgeWith({ AIQSO_EDGE_RATE_IP: '5', AIQSO_EDGE_RATE_TENANT: '0' });
    const results = await burst([e.port], `acme.${base}`, 30);
    const limited = results.filter((r) => r.status === 429);
    expect(results.filter((r) => r.status === 200).length).toBeLessThanOrEqual(5);
    expect(limited.length).toBeGreaterThanOrEqual(25);
    expect(Number(limited[0]!.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(limited[0]!.body).toContain('Too many requests');
  });

  it('limits a tenant without starving another', async () => {
    const e = await edgeWith({ AIQSO_EDGE_RATE_IP: '0', AIQSO_EDGE_RATE_TENANT: '5' });
    const acme = await burst([e.port], `acme.${base}`, 20);
    expect(acme.filter((r) => r.status === 429).length).toBeGreaterThanOrEqual(15);
    const globex = await burst([e.port], `globex.${base}`, 5);
    expect(globex.map((r) => r.status)).toEqual([200, 200, 200, 200, 200]);
  });

  it('shares one budget across edge instances through Redis', async () => {
    if (missingPart('Redis', await redisAnswers(), 'start redis-server or set TEST_REDIS_URL')) return;
    const env = { AIQSO_EDGE_RATE_IP: '0', AIQSO_EDGE_RATE_TENANT: '6', REDIS_URL };
    const [a, b] = [await edgeWith(env), await edgeWith(env)];
    const results = await burst([a.port, b.port], `globex.${base}`, 24);
    // Each instance alone would let 6 through (12 in all); sharing the budget lets 6 through.
    expect(results.filter((r) => r.status === 200).length).toBeLessThanOrEqual(6);
    expect(results.filter((r) => r.status === 429).length).toBeGreaterThanOrEqual(18);
  });
});
