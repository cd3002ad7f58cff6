import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { DestinationStream } from 'pino';
import { assembleApi } from '../../src/platform/api.ts';
import { loadConfig } from '../../src/config/load.ts';
import type { Database } from '../../src/db/database.ts';
import { startBuiltinEdge, type BuiltinEdgeOptions, type RunningEdge } from '../../src/edge/start.ts';
import type { ChallengeResponder } from '../../src/edge/handler.ts';
import { upsertRoute } from '../../src/edge/routes-store.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { createMetrics, type Metrics } from '../../src/observability/metrics.ts';
import type { TestDatabase } from './db.ts';
import { startEchoUpstream, type EchoUpstream } from './upstreams.ts';

/**
 * Configuration, logger, metrics and a ready platform app over a test database (base domain `localhost`),
 * with a data directory `dir` of its own for the caller to remove.
 */
export async function platformParts(
  database: TestDatabase,
  env: Record<string, string> = {},
  logTo?: DestinationStream,
) {
  const cwd = mkdtempSync(path.join(os.tmpdir(), 'aiqso-edge-'));
  const config = loadConfig(
    { DATABASE_URL: database.url, AIQSO_BASE_DOMAIN: 'localhost', AIQSO_DATA_DIR: cwd, ...env },
    cwd,
  );
  const log = createLogger(logTo ? 'info' : 'silent', logTo);
  const metrics = createMetrics();
  const { api } = await assembleApi(config, log, { ...database, mode: 'external' }, metrics);
  return { config, log, metrics, api, dir: cwd };
}

export interface TestEdge {
  edge: RunningEdge;
  port: number;
  httpsPort?: number;
  metrics: Metrics;
  close(): Promise<void>;
}

/** A builtin edge (with the platform app on the base domain `localhost`) over a test database. */
export async function startTestEdge(
  database: TestDatabase,
  options: {
    env?: Record<string, string>;
    listen?: Partial<BuiltinEdgeOptions>;
    logTo?: DestinationStream;
    challenges?: ChallengeResponder;
  } = {},
): Promise<TestEdge> {
  const { config, log, metrics, api, dir } = await platformParts(database, options.env, options.logTo);
  const edge = await startBuiltinEdge(
    { config, log, database, metrics, api, challenges: options.challenges },
    { bind: '127.0.0.1', httpPort: 0, ...options.listen },
  );
  return {
    edge,
    port: edge.listeners.httpPort,
    httpsPort: edge.listeners.httpsPort,
    metrics,
    async close() {
      await edge.close();
      await api.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

let tenantCounter = 0;

/** Insert a tenant row (routes reference tenants). */
export async function insertTenant(db: Database, slug: string, company = `${slug} Ltd`): Promise<string> {
  tenantCounter++;
  const id = `ten_01jd${String(tenantCounter).padStart(4, '0')}${slug
    .replace(/[^0-9a-z]/g, '')
    .padEnd(18, '0')
    .slice(0, 18)}`;
  await db.insertInto('tenants').values({ id, slug, company }).execute();
  return id;
}

/**
 * The routes both edges are tested on: acme's dashboard at `acme.localhost`, its
 * CRM at `/crm` (prefix stripped) and its documents at `/docs` (prefix kept),
 * each on the upstream `up` names (`acme-dash`, `acme-crm`, `acme-docs`). The
 * services sign users in themselves (`auth: 'app'`): the tests using these
 * routes are about routing; edge.service-sign-in.test.ts tests the sign-in.
 */
export async function acmeRoutes(
  db: Database,
  tenantId: string,
  up: (name: string) => { host: string; port: number },
): Promise<void> {
  await upsertRoute(db, { hostname: 'acme.localhost', tenantId, upstream: up('acme-dash') });
  await upsertRoute(db, {
    hostname: 'acme.localhost',
    pathPrefix: '/crm',
    auth: 'app',
    tenantId,
    upstream: up('acme-crm'),
  });
  await upsertRoute(db, {
    hostname: 'acme.localhost',
    pathPrefix: '/docs',
    auth: 'app',
    tenantId,
    upstream: up('acme-docs'),
    stripPrefix: false,
  });
}

/**
 * The HTTPS tests' tenant: acme, its dashboard at acme.aiqso.test (echo upstream `acme-dash`) and
 * its shop at each of `shopHosts` (`acme-shop`). Returns both upstreams, for the caller to close.
 */
export async function acmeOverHttps(db: Database, shopHosts: string[]): Promise<EchoUpstream[]> {
  const acme = await insertTenant(db, 'acme');
  const dash = await startEchoUpstream('acme-dash');
  const shop = await startEchoUpstream('acme-shop');
  await upsertRoute(db, {
    hostname: 'acme.aiqso.test',
    tenantId: acme,
    upstream: { host: '127.0.0.1', port: dash.port },
  });
  for (const hostname of shopHosts) {
    await upsertRoute(db, { hostname, tenantId: acme, upstream: { host: '127.0.0.1', port: shop.port } });
  }
  return [dash, shop];
}
