import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, type DatabaseHandle } from '../src/db/database.ts';
import { startEmbeddedPostgres } from '../src/db/embedded.ts';
import { CLOSED_PORT } from './support/urls.ts';
import { createLogger } from '../src/observability/logger.ts';
import { servicesCountingAgainstPlan } from '../src/services/subscriptions.ts';
import {
  dashboardLogin,
  driverCases,
  pollUntil,
  startLivePlatform,
  viaEdge,
  type LivePlatform,
} from './support/live-platform.ts';
import { registrySkip, startRegistry, webImage, type TestRegistry } from './support/registry.ts';

/**
 * A service from an OCI image, end to end on a real `aiqso up` with the lxc
 * driver: an image built in the test (umoci) and pushed to a local registry
 * (docker-registry), a catalog entry naming it, two tenants subscribing at
 * once → one pull into the cache, a clone each, the init command run once,
 * the service's database and Redis user created (on the machine's Redis as
 * AIQSO_SERVICES_REDIS_URL) → healthy through the edge at
 * `<slug>.localhost/web/` → active, with its ready email. An image that does
 * not exist, a registry that refuses, an image for another architecture and
 * an entrypoint that exits at once each fail with their reason, create no
 * container and take no plan slot.
 */
const lxc = driverCases().find((d) => d.name === 'lxc')!;
const skip = lxc.skip() || registrySkip();

let platform: LivePlatform;
let master: DatabaseHandle;
let registry: TestRegistry;
let catalogDir: string;
let closedPort: number;

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

const entry = (key: string, route: string, image: string, extra = '', redis = false) => `key: ${key}
name: ${key[0]!.toUpperCase()}${key.slice(1)}
description: A test-built image.
kind: image
image: ${image}
volumes: [/data]
init: [[/bin/sh, -c, echo ran >> /data/init-runs]]
min_memory_mb: 64
${extra}resources: { memory_mb: 128, cores: 1, disk_gb: 1 }
port: 8080
health: { path: /healthz, status: 200, timeout_seconds: 30 }
route: { path: ${route}, strip_prefix: true }
database: { postgres: true${redis ? ', redis: true' : ''} }
env:
  APP_NAME: \${public_url}
  APP_TITLE: ${key}
  DB_NAME: \${db.name}
`;

beforeAll(async () => {
  if (skip) return;
  registry = await startRegistry();
  const web = await registry.push('test/web', '1', webImage(8080));
  const arm = await registry.push('test/arm', '1', webImage(8080, { architecture: 'arm64' }));
  closedPort = CLOSED_PORT;
  catalogDir = await mkdtemp(path.join(os.tmpdir(), 'aiqso-catalog-'));
  const files: Record<string, string> = {
    'web.yaml': entry('web', '/web', web, '', true),
    'ghost.yaml': entry('ghost', '/ghost', `${registry.host}/test/ghost:1`),
    'refused.yaml': entry('refused', '/refused', `127.0.0.1:${closedPort}/test/web:1`),
    'armed.yaml': entry('armed', '/armed', arm),
    'quits.yaml': entry(
      'quits',
      '/quits',
      web,
      'entrypoint: [/bin/sh, -c, "echo SITE_URL is not set; exit 3"]\n',
    ),
  };
  for (const [name, text] of Object.entries(files)) await writeFile(path.join(catalogDir, name), text);
  platform = await startLivePlatform({
    driver: lxc,
    env: {
      AIQSO_CATALOG_DIR: catalogDir,
      AIQSO_REGISTRIES_CONF: registry.registriesConf,
      AIQSO_SERVICES_REDIS_URL: REDIS_URL,
    },
  });
  const server = await startEmbeddedPostgres(platform.dataDir, createLogger('silent'));
  master = openDatabase(server.url.replace(/\/postgres$/, '/aiqso'), { max: 2 });
}, 240_000);

/** This file's tenants' Redis users on the shared Redis (named after the tenant's id and the service). */
async function redisUsersOf(tenantIds: string[]): Promise<{ name: string; rules: string }[]> {
  const redis = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await redis.connect();
    const rules = (await redis.call('ACL', 'LIST')) as string[];
    return rules
      .map((line) => ({ name: line.split(' ')[1]!, rules: line }))
      .filter((u) => tenantIds.some((id) => u.name.includes(id.replace(/^ten_/, '').toLowerCase())));
  } finally {
    redis.disconnect();
  }
}

let tenantIds: string[] = [];

afterAll(async () => {
  if (skip) return;
  // The platform removes a service's Redis user when the service goes; these stayed subscribed.
  const redis = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await redis.connect().catch(() => undefined);
  for (const u of await redisUsersOf(tenantIds).catch(() => []))
    await redis.call('ACL', 'DELUSER', u.name).catch(() => undefined);
  redis.disconnect();
  await master?.close();
  await platform?.stop();
  await registry?.stop();
  await rm(catalogDir, { recursive: true, force: true });
}, 120_000);

interface View {
  service: string;
  status: string;
  statusReason: string | null;
  steps: { name: string; state: string }[];
}

describe('a service from an OCI image on the lxc driver', { timeout: 600_000 }, () => {
  it('pulls once for two tenants, runs init once, answers through the edge, and fails bad images with their reason', async ({
    skip: skipTest,
  }) => {
    if (skip) return skipTest();
    const { port } = platform;
    const base = `http://127.0.0.1:${port}`;
    const tenants = ['globex', 'initech'];
    const tokens: Record<string, string> = {};
    const ids: Record<string, string> = {};
    await Promise.all(
      tenants.map(async (slug) => {
        const signup = await fetch(`${base}/api/v1/signup`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({
            company: slug,
            slug,
            email: `owner@${slug}.test`,
            password: 'correct horse battery staple',
            plan: 'business',
          }),
        });
        expect(signup.status).toBe(201);
        const { checkoutUrl, tenant } = (await signup.json()) as {
          checkoutUrl: string;
          tenant: { id: string };
        };
        ids[slug] = tenant.id;
        expect((await fetch(`${checkoutUrl}/pay`, { method: 'POST', redirect: 'manual' })).status).toBe(303);
        expect((await platform.until(slug, (p) => p.status === 200, 180_000)).status).toBe(200);
        const login = await fetch(`${base}/api/v1/auth/login`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ email: `owner@${slug}.test`, password: 'correct horse battery staple' }),
        });
        tokens[slug] = ((await login.json()) as { accessToken: string }).accessToken;
      }),
    );
    const call = async (slug: string, method: string, url: string, body?: object) => {
      const res = await fetch(`${base}/api/v1/tenants/${slug}${url}`, {
        method,
        headers: {
          authorization: `Bearer ${tokens[slug]}`,
          ...(body ? { 'content-type': 'application/json' } : {}),
        },
        body: body ? JSON.stringify(body) : undefined,
      });
      return { status: res.status, body: (await res.json()) as { services: View[] } & View };
    };
    const view = async (slug: string, key: string) =>
      (await call(slug, 'GET', '/services')).body.services.find((s) => s.service === key);
    const settled = (slug: string, key: string) =>
      pollUntil(
        () => view(slug, key),
        (v) => v?.status === 'active' || v?.status === 'failed',
        180_000,
        250,
      );

    // The lxc driver runs images: the catalog offers every entry.
    const catalog = (await (await fetch(`${base}/api/v1/catalog`)).json()) as { services: { key: string }[] };
    expect(catalog.services.map((s) => s.key)).toEqual(['armed', 'ghost', 'quits', 'refused', 'web']);

    // Two tenants subscribe at once: one pull of the image (its config and layer fetched once).
    const subscribed = await Promise.all(
      tenants.map((slug) => call(slug, 'POST', '/services', { service: 'web' })),
    );
    expect(subscribed.map((s) => s.status)).toEqual([202, 202]);
    for (const slug of tenants) {
      const web = await settled(slug, 'web');
      expect(web).toMatchObject({ status: 'active', statusReason: null });
      expect(web!.steps.slice(0, 5).map((s) => [s.name, s.state])).toEqual([
        ['service record', 'done'],
        ['restore hold', 'done'],
        ['capacity check', 'done'],
        ['image pull', 'done'],
        ['container', 'done'],
      ]);
    }
    expect(await registry.requests(/^GET \/v2\/test\/web\/blobs\//)).toHaveLength(2);
    expect(await registry.requests(/^GET \/v2\/test\/web\/manifests\//)).toHaveLength(1);

    for (const slug of tenants) {
      const host = `${slug}.localhost:${port}`;
      const signedIn = await dashboardLogin(host, port, `owner@${slug}.test`, 'correct horse battery staple');
      const page = await pollUntil(
        () => viaEdge(host, port, { path: '/web/', headers: { cookie: signedIn.cookies } }),
        (p) => p.status === 200,
        15_000,
      );
      const row = await master.db
        .selectFrom('tenant_services')
        .select(['db_name'])
        .where('tenant_id', '=', ids[slug]!)
        .executeTakeFirstOrThrow();
      // The catalog's environment with its placeholders, the image's volume seeded, init run once.
      expect(JSON.parse(page.body)).toMatchObject({
        name: `http://${host}/web/`,
        title: 'web',
        db: row.db_name,
        packages: true,
        initRuns: 1,
      });
      const database = await master.pool.query(
        'SELECT count(*)::int AS n FROM pg_database WHERE datname = $1',
        [row.db_name],
      );
      expect(database.rows).toEqual([{ n: 1 }]);
      const mails = await master.db
        .selectFrom('emails')
        .select('subject')
        .where('tenant_id', '=', ids[slug]!)
        .where('template', '=', 'service-ready')
        .execute();
      expect(mails.map((m) => m.subject)).toEqual(['Web is ready']);
    }
    // Each tenant's service has its own Redis user, limited to its own key prefix.
    tenantIds = Object.values(ids);
    for (const slug of tenants) {
      const web = await view(slug, 'web');
      expect(web!.steps.find((s) => s.name === 'redis user')).toMatchObject({ state: 'done' });
      const users = await redisUsersOf([ids[slug]!]);
      expect(users).toHaveLength(1);
      expect(users[0]!.name).toMatch(/_web$/);
      expect(users[0]!.rules).toContain(`~${users[0]!.name}:*`);
    }

    // Bad images: a reason each, no container, no address, no plan slot.
    const reasons: Record<string, RegExp> = {
      ghost: /^image pull: image 127\.0\.0\.1:\d+\/test\/ghost:1 does not exist in 127\.0\.0\.1:\d+$/,
      refused: new RegExp(`^image pull: registry 127\\.0\\.0\\.1:${closedPort} refused the connection$`),
      armed:
        /^image pull: image 127\.0\.0\.1:\d+\/test\/arm:1 is built for linux\/arm64; this host runs linux\/amd64$/,
      quits:
        /^health check: the container stopped before answering GET \/healthz: its workload exited \(last output: .*SITE_URL is not set\)$/,
    };
    for (const key of Object.keys(reasons)) {
      expect((await call('globex', 'POST', '/services', { service: key })).status).toBe(202);
    }
    for (const [key, reason] of Object.entries(reasons)) {
      const failed = await settled('globex', key);
      expect(failed?.status).toBe('failed');
      expect(failed?.statusReason).toMatch(reason);
    }
    const lxcPath = path.join(platform.dataDir, 'lxc');
    for (const key of ['ghost', 'refused', 'armed']) {
      const name = `aiqso-${ids.globex!.replace(/^ten_/, '')}-${key}`.toLowerCase();
      expect(existsSync(path.join(lxcPath, name))).toBe(false);
      const ip = await master.db
        .selectFrom('ip_allocations')
        .select('address')
        .where('owner', '=', name)
        .executeTakeFirst();
      expect(ip).toBeUndefined();
    }
    // Only the working service counts against the Business plan's six.
    expect(await servicesCountingAgainstPlan(master.db, ids.globex!)).toBe(1);
  });
});
