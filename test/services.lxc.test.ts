import { readFile } from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadPlans, PLANS_FILE } from '../src/catalog/plans.ts';
import { openDatabase, type DatabaseHandle } from '../src/db/database.ts';
import { startEmbeddedPostgres } from '../src/db/embedded.ts';
import { createLogger } from '../src/observability/logger.ts';
import { setServiceResources } from '../src/services/subscriptions.ts';
import {
  dashboardLogin,
  driverCases,
  pollUntil,
  startLivePlatform,
  viaEdge,
  type LivePlatform,
} from './support/live-platform.ts';

/**
 * A tenant service in a real LXC container, on a real `aiqso up` with its
 * embedded PostgreSQL (which enforces passwords): the service reaches its own
 * database through the host gateway, answers through the edge, runs under the
 * template's cgroup limits, follows a resources change, and unsubscribing
 * removes its route at once and its container and database after the grace.
 */
const lxc = driverCases().find((d) => d.name === 'lxc')!;
const skip = lxc.skip();

let platform: LivePlatform;
let master: DatabaseHandle;

beforeAll(async () => {
  if (skip) return;
  platform = await startLivePlatform({
    driver: lxc,
    // 3.6 s of grace, and a resync every second to notice it is over.
    env: { AIQSO_SERVICE_GRACE_HOURS: '0.001', AIQSO_RESYNC_SECONDS: '1' },
  });
  // The platform's own embedded server, adopted while `aiqso up` runs it.
  const server = await startEmbeddedPostgres(platform.dataDir, createLogger('silent'));
  master = openDatabase(server.url.replace(/\/postgres$/, '/aiqso'), { max: 2 });
}, 180_000);
afterAll(async () => {
  if (skip) return;
  await master.close();
  await platform.stop();
}, 120_000);

/** The container's environment as the lxc driver wrote it (`export KEY='value'` lines, 0600). */
async function containerEnv(name: string): Promise<Record<string, string>> {
  const text = await readFile(path.join(platform.dataDir, 'lxc', name, 'aiqso', 'env'), 'utf8');
  return Object.fromEntries(
    [...text.matchAll(/^export ([A-Za-z_][A-Za-z0-9_]*)='((?:[^']|'\\'')*)'$/gm)].map((m) => [
      m[1]!,
      m[2]!.replaceAll(`'\\''`, `'`),
    ]),
  );
}

describe('a tenant service on the lxc driver', { timeout: 300_000 }, () => {
  it('subscribes, answers at <slug>.localhost/notes/ with its own database, resizes, and unsubscribes', async ({
    skip: skipTest,
  }) => {
    if (skip) return skipTest();
    const { port } = platform;
    const host = `globex.localhost:${port}`;
    const base = `http://127.0.0.1:${port}`;
    const signup = await fetch(`${base}/api/v1/signup`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        company: 'Globex',
        slug: 'globex',
        email: 'owner@globex.test',
        password: 'correct horse battery staple',
        plan: 'business',
      }),
    });
    expect(signup.status).toBe(201);
    const { checkoutUrl, tenant } = (await signup.json()) as { checkoutUrl: string; tenant: { id: string } };
    expect((await fetch(`${checkoutUrl}/pay`, { method: 'POST', redirect: 'manual' })).status).toBe(303);
    expect((await platform.until('globex', (p) => p.status === 200, 120_000)).status).toBe(200);

    const login = await fetch(`${base}/api/v1/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email: 'owner@globex.test', password: 'correct horse battery staple' }),
    });
    const { accessToken } = (await login.json()) as { accessToken: string };
    const auth = { authorization: `Bearer ${accessToken}` };
    const services = async () => {
      const res = await fetch(`${base}/api/v1/tenants/globex/services`, { headers: auth });
      return ((await res.json()) as { services: { service: string; status: string; statusReason: string }[] })
        .services;
    };

    const subscribed = await fetch(`${base}/api/v1/tenants/globex/services`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify({ service: 'notes' }),
    });
    expect(subscribed.status).toBe(202);
    const notes = await pollUntil(
      async () => (await services()).find((s) => s.service === 'notes'),
      (s) => s?.status === 'active' || s?.status === 'failed',
      120_000,
    );
    expect(notes).toMatchObject({ status: 'active', statusReason: null });
    // Signed in at the dashboard, which sets the edge session the service needs.
    const signedIn = await dashboardLogin(host, port, 'owner@globex.test', 'correct horse battery staple');
    const page = await pollUntil(
      () => viaEdge(host, port, { path: '/notes/', headers: { cookie: signedIn.cookies } }),
      (p) => p.status === 200,
      10_000,
    );
    expect(page.body).toContain('<h1>Notes</h1>');

    // In the container: its database URL points at the host gateway, and only its own role gets in.
    const db = master.db;
    const row = await db
      .selectFrom('tenant_services')
      .select(['id', 'container_name', 'db_name', 'db_role'])
      .where('tenant_id', '=', tenant.id)
      .executeTakeFirstOrThrow();
    const env = await containerEnv(row.container_name!);
    const url = new URL(env.DATABASE_URL!);
    expect(url.hostname).toMatch(/^10\.\d+\.\d+\.1$/);
    const own = new pg.Client({ connectionString: url.href });
    await own.connect();
    expect((await own.query('SELECT count(*)::int AS n FROM drafts')).rows).toEqual([{ n: 0 }]);
    await own.end();
    const wrong = new URL(url.href);
    wrong.password = 'not-the-password';
    await expect(new pg.Client({ connectionString: wrong.href }).connect()).rejects.toThrow(
      /password authentication failed/,
    );

    // The template's limits are in force (cgroups); a resources change reaches the running container.
    const compute = await lxc.open(platform.dataDir, db);
    expect((await compute.status(row.container_name!)).limits?.memoryMb).toBe(128);
    await setServiceResources(
      db,
      {
        plans: loadPlans(PLANS_FILE),
        driver: 'lxc',
        dataDir: platform.dataDir,
        publicUrl: `http://localhost:${port}`,
        serviceGraceHours: 0.001,
      },
      tenant.id,
      'notes',
      { memory_mb: 192 },
    );
    const resized = await pollUntil(
      () => compute.status(row.container_name!),
      (info) => info.limits?.memoryMb === 192,
      60_000,
    );
    expect(resized.limits?.memoryMb).toBe(192);

    // Unsubscribe: unrouted at once; after the grace, no container, database or role.
    const gone = await fetch(`${base}/api/v1/tenants/globex/services/notes`, {
      method: 'DELETE',
      headers: auth,
    });
    expect(gone.status).toBe(202);
    const unrouted = await pollUntil(
      () => viaEdge(host, port, { path: '/notes/' }),
      (p) => p.status === 404,
      2_000,
      50,
    );
    expect(unrouted.status).toBe(404);
    const removed = await pollUntil(
      async () => (await services()).find((s) => s.service === 'notes'),
      (s) => s?.status === 'removed',
      90_000,
    );
    expect(removed?.status).toBe('removed');
    expect((await compute.status(row.container_name!)).state).toBe('missing');
    await compute.close();
    const left = await master.pool.query(
      'SELECT (SELECT count(*) FROM pg_database WHERE datname = $1)::int + (SELECT count(*) FROM pg_roles WHERE rolname = $2)::int AS n',
      [row.db_name, row.db_role],
    );
    expect(left.rows).toEqual([{ n: 0 }]);
  });
});
