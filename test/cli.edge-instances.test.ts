import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../src/db/embedded.ts';
import { upsertRoute } from '../src/edge/routes-store.ts';
import { startCli } from './support/cli.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import { insertTenant } from './support/edge.ts';
import { eventually, rawGet, startEchoUpstream, type EchoUpstream } from './support/upstreams.ts';

let database: TestDatabase;
const upstreams: EchoUpstream[] = [];
const children: Awaited<ReturnType<typeof startCli>>[] = [];

beforeAll(async () => {
  database = await createTestDatabase();
  upstreams.push(await startEchoUpstream('one'), await startEchoUpstream('two'));
});

afterAll(async () => {
  for (const c of children) {
    c.child.kill('SIGTERM');
    await c.exited;
  }
  for (const u of upstreams) await u.close();
  await database?.drop();
});

/** A tenant whose host routes to upstream `which` (0: "one", 1: "two"). */
async function tenantRoutedTo(slug: string, which: number): Promise<string> {
  const tenant = await insertTenant(database.db, slug);
  await upsertRoute(database.db, {
    hostname: `${slug}.localhost`,
    tenantId: tenant,
    upstream: { host: '127.0.0.1', port: upstreams[which]!.port },
  });
  return tenant;
}

/**
 * `aiqso edge` on a free port with a data directory of its own, stopped after
 * the tests; with `cpu`, allowed that CPU only.
 */
async function startEdge(env: Record<string, string> = {}, cpu?: number) {
  const port = await freePort();
  const cli = await startCli(
    ['edge'],
    {
      DATABASE_URL: database.url,
      AIQSO_HTTP_PORT: String(port),
      AIQSO_DATA_DIR: await mkdtemp(path.join(os.tmpdir(), 'aiqso-edge-cli-')),
      ...env,
    },
    'Press Ctrl-C to stop.',
    60_000,
    cpu,
  );
  children.push(cli);
  return { port, cli };
}

describe('aiqso edge', () => {
  it('runs several instances that all follow a route change', async () => {
    const tenant = await tenantRoutedTo('acme', 0);
    const ports = [(await startEdge()).port, (await startEdge()).port];
    for (const port of ports) {
      expect((await rawGet(port, '/', 'acme.localhost')).headers['x-upstream']).toBe('one');
      expect((await rawGet(port, '/healthz', 'localhost')).status).toBe(200);
    }
    await upsertRoute(database.db, {
      hostname: 'acme.localhost',
      tenantId: tenant,
      upstream: { host: '127.0.0.1', port: upstreams[1]!.port },
    });
    for (const port of ports) {
      await eventually(async () =>
        (await rawGet(port, '/', 'acme.localhost')).headers['x-upstream'] === 'two' ? true : undefined,
      );
    }
  });

  it('forwards the base domain to a platform listener with AIQSO_EDGE_PLATFORM_URL', async () => {
    const tenant = await tenantRoutedTo('globex', 0);
    const platformPort = (await startEdge()).port;
    const { port: edgePort, cli: forwarding } = await startEdge({
      AIQSO_EDGE_PLATFORM_URL: `http://127.0.0.1:${platformPort}`,
    });
    expect(forwarding.output()).toContain(`localhost forwarded to 127.0.0.1:${platformPort}`);

    // The base domain is the platform's: its health answer carries its version, its API answers.
    const health = await rawGet(edgePort, '/healthz', 'localhost');
    expect(health.status).toBe(200);
    expect(JSON.parse(health.body)).toMatchObject({ status: 'ok', version: expect.any(String) as unknown });
    const catalog = await rawGet(edgePort, '/api/v1/catalog', 'localhost');
    expect(catalog.status).toBe(200);
    expect(catalog.headers['content-type']).toMatch(/application\/json/);
    expect((await rawGet(edgePort, '/api/v1/nosuch', 'localhost')).status).toBe(404);
    // Tenants are routed by the forwarding edge itself; unknown hosts still get the edge's 404.
    expect((await rawGet(edgePort, '/', 'globex.localhost')).headers['x-upstream']).toBe('one');
    expect((await rawGet(edgePort, '/', 'nosuch.localhost')).status).toBe(404);

    // Asked by address, the forwarding edge answers for itself: its health and its own metrics.
    const own = await rawGet(edgePort, '/healthz', '127.0.0.1');
    expect(JSON.parse(own.body)).toEqual({ status: 'ok' });
    const metrics = await rawGet(edgePort, '/metrics', '127.0.0.1');
    expect(metrics.status).toBe(200);
    expect(metrics.body).toMatch(/aiqso_edge_requests_total\{route="platform",tenant="",status="2xx"\} 2\n/);
    expect(metrics.body).toMatch(
      new RegExp(`aiqso_edge_requests_total\\{route="rte_\\w+",tenant="${tenant}"`),
    );
    // It serves no API requests itself: the API metrics have no series here.
    expect(metrics.body).not.toMatch(/aiqso_http_requests_total\{/);
  });

  it('takes its heap size from NODE_OPTIONS, and stops cleanly on SIGTERM', async () => {
    await tenantRoutedTo('initech', 0);
    const sized = await startEdge({ NODE_OPTIONS: '--max-old-space-size=96' });
    // The limit V8 reports is the old generation's plus the young one's.
    const limit = Number(/\(heap limit (\d+) MB\)/.exec(sized.cli.output())?.[1]);
    expect(limit).toBeGreaterThanOrEqual(96);
    expect(limit).toBeLessThan(96 + 64);
    expect((await rawGet(sized.port, '/', 'initech.localhost')).headers['x-upstream']).toBe('one');
    // It drains, and what it logged (its access line, buffered) is written before the exit.
    sized.cli.child.kill('SIGTERM');
    const stopped = await sized.cli.exited;
    expect(stopped.code).toBe(0);
    expect(stopped.stderr).toMatch(/"host":"initech\.localhost".*"msg":"edge request"/);
    expect(stopped.stderr).toMatch(/"signal":"SIGTERM","msg":"shutting down"/);

    // Without NODE_OPTIONS, Node's default sizing: a larger limit.
    const plain = await startEdge();
    const defaultLimit = Number(/\(heap limit (\d+) MB\)/.exec(plain.cli.output())?.[1]);
    expect(defaultLimit).toBeGreaterThan(limit);
    expect((await rawGet(plain.port, '/', 'initech.localhost')).headers['x-upstream']).toBe('one');
  });
});
