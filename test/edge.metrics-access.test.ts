import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config/load.ts';
import { freePort } from '../src/db/embedded.ts';
import { findNginx } from '../src/edge/nginx/apply.ts';
import { startNginxEdge } from '../src/edge/nginx/edge.ts';
import { startBuiltinEdge, type RunningEdge } from '../src/edge/start.ts';
import { createLogger } from '../src/observability/logger.ts';
import { createMetrics } from '../src/observability/metrics.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import { platformParts, startTestEdge, type TestEdge } from './support/edge.ts';
import { missingPart } from './support/strict.ts';

/**
 * /metrics names tenants in its series: the platform's (served through the
 * edge) and a forwarding edge's own answer a bearer AIQSO_METRICS_TOKEN, or,
 * without one, a client on this machine only, judged by its real address (a
 * forwarded header counts only from a trusted proxy). The non-loopback client
 * is this machine reached at its own network address.
 */
const external = Object.values(os.networkInterfaces())
  .flat()
  .find((i) => i && i.family === 'IPv4' && !i.internal)?.address;
const skip = missingPart(
  'a non-loopback IPv4 address on this machine',
  external !== undefined,
  'an interface',
);

function get(address: string, port: number, host: string, headers: Record<string, string> = {}) {
  return new Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }>(
    (resolve, reject) => {
      const req = http.request(
        { host: address, localAddress: address, port, path: '/metrics', headers: { host, ...headers } },
        (res) => {
          let body = '';
          res.on('data', (c: Buffer) => (body += c.toString()));
          res.on('end', () => resolve({ status: res.statusCode!, body, headers: res.headers }));
        },
      );
      req.on('error', reject);
      req.end();
    },
  );
}

const TOKEN = 'metrics-token-0123456789abcdef';

describe.skipIf(skip)('/metrics access', () => {
  let database: TestDatabase;
  const edges: TestEdge[] = [];
  let forwarding: RunningEdge;
  let open: TestEdge;
  let tokened: TestEdge;
  let dir: string;

  beforeAll(async () => {
    database = await createTestDatabase();
    open = await startTestEdge(database, {
      env: { AIQSO_EDGE_TRUSTED_PROXIES: '127.0.0.1' },
      listen: { bind: '0.0.0.0' },
    });
    tokened = await startTestEdge(database, {
      env: { AIQSO_METRICS_TOKEN: TOKEN },
      listen: { bind: '0.0.0.0' },
    });
    edges.push(open, tokened);
    // An edge forwarding the base domain elsewhere answers /metrics (its own) when asked by address.
    dir = mkdtempSync(path.join(os.tmpdir(), 'aiqso-metrics-'));
    const config = loadConfig(
      {
        DATABASE_URL: database.url,
        AIQSO_DATA_DIR: dir,
        AIQSO_EDGE_PLATFORM_URL: `http://127.0.0.1:${open.port}`,
      },
      dir,
    );
    forwarding = await startBuiltinEdge(
      { config, log: createLogger('silent'), database, metrics: createMetrics() },
      { bind: '0.0.0.0', httpPort: 0 },
    );
  });

  afterAll(async () => {
    await forwarding?.close();
    for (const e of edges) await e.close();
    await database?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("serves the platform's metrics to loopback only when no token is set, whatever a client forwards", async () => {
    const local = await get('127.0.0.1', open.port, 'localhost');
    expect(local.status, local.body).toBe(200);
    expect(local.body).toContain('# TYPE');
    const remote = await get(external!, open.port, 'localhost');
    expect(remote.status).toBe(403);
    expect(JSON.parse(remote.body)).toMatchObject({ error: { code: 'forbidden' } });
    expect(remote.body).not.toContain('# TYPE');
    const spoofed = await get(external!, open.port, 'localhost', {
      'x-forwarded-for': '127.0.0.1',
      'x-real-ip': '127.0.0.1',
    });
    expect(spoofed.status).toBe(403);
  });

  it('asks everyone for the token once one is set, loopback too', async () => {
    for (const address of ['127.0.0.1', external!]) {
      const none = await get(address, tokened.port, 'localhost');
      expect(none.status, address).toBe(401);
      expect(none.headers['www-authenticate']).toMatch(/^Bearer/);
      expect(JSON.parse(none.body)).toMatchObject({ error: { code: 'unauthenticated' } });
      const wrong = await get(address, tokened.port, 'localhost', { authorization: `Bearer ${TOKEN}x` });
      expect(wrong.status, address).toBe(401);
      const right = await get(address, tokened.port, 'localhost', { authorization: `Bearer ${TOKEN}` });
      expect(right.status, address).toBe(200);
      expect(right.body).toContain('# TYPE');
    }
  });

  it("judges a trusted proxy's client by the address it forwards", async () => {
    // 127.0.0.1 is a trusted proxy of `open`: what it forwards is the client.
    const remote = await get('127.0.0.1', open.port, 'localhost', { 'x-forwarded-for': '203.0.113.9' });
    expect(remote.status).toBe(403);
    const local = await get('127.0.0.1', open.port, 'localhost', { 'x-forwarded-for': '127.0.0.1' });
    expect(local.status).toBe(200);
  });

  it("applies the same rule to a forwarding edge's own metrics", async () => {
    const port = forwarding.listeners.httpPort;
    const local = await get('127.0.0.1', port, `127.0.0.1:${port}`);
    expect(local.status).toBe(200);
    expect(local.body).toContain('aiqso_edge_routes');
    const remote = await get(external!, port, `${external}:${port}`);
    expect(remote.status).toBe(403);
    expect(JSON.parse(remote.body)).toMatchObject({ error: { code: 'forbidden' } });
    expect(remote.body).not.toContain('aiqso_edge_routes');
  });
});

describe.skipIf(skip || missingPart('nginx', findNginx() !== undefined, 'apt-get install nginx'))(
  '/metrics access through the nginx edge',
  () => {
    let database: TestDatabase;
    let parts: Awaited<ReturnType<typeof platformParts>>;
    let edge: Awaited<ReturnType<typeof startNginxEdge>>;
    let port: number;

    beforeAll(async () => {
      database = await createTestDatabase();
      parts = await platformParts(database);
      port = await freePort();
      edge = await startNginxEdge(
        { ...parts, database },
        { bind: '0.0.0.0', httpPort: port, dir: path.join(parts.dir, 'nginx'), workerProcesses: 1 },
      );
    });

    afterAll(async () => {
      await edge?.close();
      await parts?.api.close();
      if (parts) rmSync(parts.dir, { recursive: true, force: true });
      await database?.drop();
    });

    it('judges the client nginx saw, not what it forwards', async () => {
      expect((await get('127.0.0.1', port, 'localhost')).status).toBe(200);
      const remote = await get(external!, port, 'localhost', { 'x-forwarded-for': '127.0.0.1' });
      expect(remote.status).toBe(403);
      expect(remote.body).not.toContain('# TYPE');
    });
  },
);
