import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deleteRoute, setTenantRouteState, upsertRoute } from '../src/edge/routes-store.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import { acmeRoutes, insertTenant, startTestEdge, type TestEdge } from './support/edge.ts';
import {
  eventually,
  rawGet,
  rawRequest,
  readSlowly,
  startEchoUpstream,
  wsRoundTrip,
  type Echo,
  type EchoUpstream,
} from './support/upstreams.ts';

let database: TestDatabase;
let edge: TestEdge;
const upstreams: Record<string, EchoUpstream> = {};
const logLines: Record<string, unknown>[] = [];
let acme: string;
let globex: string;

const up = (name: string) => ({ host: '127.0.0.1', port: upstreams[name]!.port });

beforeAll(async () => {
  database = await createTestDatabase();
  for (const name of ['acme-dash', 'acme-crm', 'acme-docs', 'globex-dash', 'globex-crm']) {
    upstreams[name] = await startEchoUpstream(name);
  }
  acme = await insertTenant(database.db, 'acme', 'Acme Ltd');
  globex = await insertTenant(database.db, 'globex', 'Globex <Corp>');
  const db = database.db;
  await acmeRoutes(db, acme, up);
  await upsertRoute(db, { hostname: 'globex.localhost', tenantId: globex, upstream: up('globex-dash') });
  await upsertRoute(db, {
    hostname: 'globex.localhost',
    pathPrefix: '/crm',
    auth: 'app',
    tenantId: globex,
    upstream: up('globex-crm'),
  });
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n').filter(Boolean))
        logLines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  edge = await startTestEdge(database, { logTo: sink });
});

afterAll(async () => {
  await edge?.close();
  for (const u of Object.values(upstreams)) await u.close();
  await database?.drop();
});

async function get(host: string, target: string, extra = '') {
  const res = await rawGet(edge.port, target, host, extra);
  const echo = res.headers['content-type']?.startsWith('application/json')
    ? (JSON.parse(res.body) as Echo)
    : undefined;
  return { ...res, echo };
}

describe('builtin edge routing', () => {
  it('routes a tenant host to its dashboard and a path to that service, stripping or keeping the prefix', async () => {
    expect((await get('acme.localhost', '/')).echo).toMatchObject({ name: 'acme-dash', url: '/' });
    expect((await get('acme.localhost', '/crm/contacts?q=1')).echo).toMatchObject({
      name: 'acme-crm',
      url: '/contacts?q=1',
    });
    expect((await get('acme.localhost', '/crm')).echo).toMatchObject({ name: 'acme-crm', url: '/' });
    expect((await get('acme.localhost', '/docs/a/b')).echo).toMatchObject({
      name: 'acme-docs',
      url: '/docs/a/b',
    });
    expect((await get('acme.localhost', '/crmx/1')).echo).toMatchObject({
      name: 'acme-dash',
      url: '/crmx/1',
    });
    expect((await get('globex.localhost', '/crm/contacts')).echo).toMatchObject({ name: 'globex-crm' });
    expect((await get('globex.localhost', '/docs/a')).echo).toMatchObject({
      name: 'globex-dash',
      url: '/docs/a',
    });
  });

  it('serves the platform app on the base domain and a 404 page for an unknown host', async () => {
    const health = await get('localhost', '/healthz');
    expect(health.status).toBe(200);
    expect(JSON.parse(health.body)).toMatchObject({ status: 'ok' });
    const unknown = await get('initech.localhost', '/');
    expect(unknown.status).toBe(404);
    expect(unknown.body).toContain('no workspace at this address');
    expect((await get('acme.localhost.evil.example', '/')).status).toBe(404);
  });

  it('overwrites forwarding headers the client sent and drops hop-by-hop ones', async () => {
    const res = await get(
      'ACME.localhost:8080',
      '/crm/x',
      [
        'X-Forwarded-For: 6.6.6.6',
        'X-Forwarded-Host: globex.localhost',
        'X-Forwarded-Proto: https',
        'X-Forwarded-Port: 8443',
        'X-Real-IP: 6.6.6.6',
        'Forwarded: for=6.6.6.6',
        'Keep-Alive: timeout=99',
        'TE: trailers',
        'Connection: X-Secret', // names a header as hop-by-hop (joined with the `close` sent after it)
        'X-Secret: for this hop only',
        'X-Kept: yes',
        'Cookie: a=1',
        'Cookie: b=2',
        '',
      ].join('\r\n'),
    );
    const headers = res.echo!.headers;
    expect(headers).toMatchObject({
      'x-forwarded-for': '127.0.0.1',
      'x-real-ip': '127.0.0.1',
      'x-forwarded-host': 'acme.localhost',
      'x-forwarded-proto': 'http',
      host: 'acme.localhost',
      'x-kept': 'yes',
      cookie: 'a=1; b=2',
    });
    for (const name of ['forwarded', 'x-forwarded-port', 'keep-alive', 'te', 'x-secret'])
      expect(headers[name], name).toBeUndefined();
  });

  it('proxies request bodies and refuses one over the size limit', async () => {
    const body = JSON.stringify({ hello: 'world' });
    const ok = await rawRequest(
      edge.port,
      `POST /crm/items HTTP/1.1\r\nHost: acme.localhost\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`,
    );
    expect(JSON.parse(ok.body)).toMatchObject({ name: 'acme-crm', method: 'POST', body });
    const big = await rawRequest(
      edge.port,
      `POST /crm/items HTTP/1.1\r\nHost: acme.localhost\r\nContent-Length: ${20 * 1024 * 1024}\r\nConnection: close\r\n\r\n`,
    );
    expect(big.status).toBe(413);
  });

  it('echoes WebSocket messages through the edge to the right service', async () => {
    expect(await wsRoundTrip(edge.port, 'acme.localhost', '/crm/socket', 'ping')).toBe('acme-crm:ping');
    expect(await wsRoundTrip(edge.port, 'Globex.localhost.', '/socket', 'hi')).toBe('globex-dash:hi');
    await expect(wsRoundTrip(edge.port, 'nobody.localhost', '/socket', 'hi')).rejects.toThrow(/404/);
  });

  it('shows a suspended page, a preparing page with the steps, and a 502 for a dead upstream', async () => {
    const db = database.db;
    const initech = await insertTenant(db, 'initech', 'Initech <b>');
    await db
      .insertInto('resources')
      .values({
        kind: 'tenant',
        id: initech,
        tenant_id: initech,
        spec: '{}',
        steps: JSON.stringify([
          { name: 'place on a host', state: 'done', attempts: 1 },
          { name: 'create dashboard container', state: 'running', attempts: 1 },
        ]),
      })
      .execute();
    await upsertRoute(db, { hostname: 'initech.localhost', tenantId: initech, state: 'provisioning' });
    await upsertRoute(db, { hostname: 'dead.localhost', upstream: { host: '127.0.0.1', port: 1 } });
    await setTenantRouteState(db, globex, 'suspended');
    const preparing = await eventually(async () => {
      const r = await get('initech.localhost', '/');
      return r.status === 503 ? r : undefined;
    });
    expect(preparing.body).toContain('Preparing your workspace');
    expect(preparing.body).toContain('create dashboard container — running');
    expect(preparing.body).toContain('Initech &lt;b&gt;');
    const suspended = await eventually(async () => {
      const r = await get('globex.localhost', '/crm/x');
      return r.status === 402 ? r : undefined;
    });
    expect(suspended.body).toContain('Workspace suspended');
    const dead = await eventually(async () => {
      const r = await get('dead.localhost', '/');
      return r.status === 502 ? r : undefined;
    });
    expect(dead.body).toContain('did not answer');
    // Each refused exchange is recorded once, with the status the client got.
    const deadLines = () => logLines.filter((l) => l.host === 'dead.localhost' && l.status === 502).length;
    const before = await eventually(() => Promise.resolve(deadLines() || undefined));
    await get('dead.localhost', '/again');
    await eventually(() => Promise.resolve(deadLines() === before + 1 ? true : undefined));
    await new Promise((r) => setTimeout(r, 300)); // one more access-log flush
    expect(deadLines()).toBe(before + 1);
    await setTenantRouteState(db, globex, 'active');
  });

  it("says why a workspace is held back, as its tenant's state says, with a way back to the front page", async () => {
    const db = database.db;
    const cases = [
      {
        slug: 'umbrella',
        status: 'cancelled',
        reason: 'subscription cancelled',
        code: 410,
        says: 'Its data is kept until 2027-01-05 and then deleted for good',
      },
      {
        slug: 'hooli',
        status: 'suspended',
        reason: 'suspended by an operator',
        code: 402,
        says: "suspended by the platform's operator",
      },
      {
        slug: 'stark',
        status: 'suspended',
        reason: 'payment_failed',
        code: 402,
        says: 'because a payment did not go through',
      },
    ];
    for (const c of cases) {
      const id = await insertTenant(db, c.slug);
      await db
        .updateTable('tenants')
        .set({
          status: c.status as 'cancelled',
          status_reason: c.reason,
          purge_after: new Date('2027-01-05T04:00:00Z'),
        })
        .where('id', '=', id)
        .execute();
      await upsertRoute(db, { hostname: `${c.slug}.localhost`, tenantId: id, state: 'suspended' });
    }
    for (const c of cases) {
      const page = await eventually(async () => {
        const r = await get(`${c.slug}.localhost:${edge.port}`, '/');
        return r.status === c.code ? r : undefined;
      });
      expect([c.slug, page.body]).toEqual([c.slug, expect.stringContaining(c.says)]);
      expect(page.body).toContain(`<a href="http://localhost:${edge.port}/">Go to the home page</a>`);
    }
  });

  it('streams a large answer to a slow reader whole, and cancels the upstream request when the client leaves', async () => {
    // 8 MiB in 64 KiB pieces, each written only when the previous one was taken (backpressure),
    // or endless for /forever; every upstream response's end or abort is recorded.
    const piece = Buffer.alloc(64 * 1024, 'x');
    const outcomes: string[] = [];
    const upstreamSaw: string[] = [];
    const upstream = http.createServer((req, res) => {
      upstreamSaw.push(req.url!);
      res.on('close', () => outcomes.push(`${req.url} ${res.writableFinished ? 'finished' : 'aborted'}`));
      if (req.url === '/stall') return; // never answers
      if (req.url === '/quick') return void res.end('ok');
      const forever = req.url === '/forever';
      res.writeHead(200, {
        'content-type': 'application/octet-stream',
        ...(forever ? {} : { 'content-length': String(128 * piece.length) }),
      });
      let left = forever ? Infinity : 128;
      const pump = () => {
        while (left > 0 && !res.destroyed) {
          left--;
          if (!res.write(piece)) return void res.once('drain', pump);
        }
        if (left === 0) res.end();
      };
      pump();
    });
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    const port = (upstream.address() as AddressInfo).port;
    try {
      await upsertRoute(database.db, { hostname: 'stream.localhost', upstream: { host: '127.0.0.1', port } });
      await eventually(async () =>
        (await get('stream.localhost', '/ping')).status === 200 ? true : undefined,
      );

      // A client that stops reading for a while, then reads everything.
      const received = await readSlowly(edge.port, '/big', 'stream.localhost', 500);
      expect(received).toBeGreaterThan(128 * piece.length); // the body plus the head
      expect(received).toBeLessThan(128 * piece.length + 1024);

      // A client that leaves mid-answer: the edge cancels its upstream request.
      await new Promise<void>((resolve, reject) => {
        const socket = net.connect(edge.port, '127.0.0.1');
        socket.on('error', reject);
        socket.write('GET /forever HTTP/1.1\r\nHost: stream.localhost\r\n\r\n');
        socket.once('data', () => {
          socket.destroy();
          resolve();
        });
      });
      await eventually(() => Promise.resolve(outcomes.includes('/forever aborted') ? true : undefined));
      expect(outcomes).toContain('/big finished');

      // Two requests pipelined on one connection, the second waiting behind the first: a client that
      // leaves cancels both upstream requests, the one still waiting for its answer too.
      await new Promise<void>((resolve, reject) => {
        const socket = net.connect(edge.port, '127.0.0.1');
        socket.on('error', reject);
        socket.write(
          'GET /forever HTTP/1.1\r\nHost: stream.localhost\r\n\r\nGET /stall HTTP/1.1\r\nHost: stream.localhost\r\n\r\n',
        );
        socket.once('data', () => {
          // The second request reaches the upstream while the first answer streams.
          void eventually(() => Promise.resolve(upstreamSaw.includes('/stall') ? true : undefined)).then(
            () => {
              socket.destroy();
              resolve();
            },
            reject,
          );
        });
      });
      await eventually(() => Promise.resolve(outcomes.includes('/stall aborted') ? true : undefined));
      expect(outcomes.filter((o) => o === '/forever aborted')).toHaveLength(2);

      // Each exchange has one access line: the status its client got, or 499 for a client that
      // left before any answer (as nginx logs it).
      const lines = () =>
        logLines
          .filter((l) => l.host === 'stream.localhost' && l.path !== '/ping')
          .map((l) => `${String(l.path)} ${String(l.status)}`)
          .sort();
      const expected = ['/big 200', '/forever 200', '/forever 200', '/stall 499'];
      await eventually(() => Promise.resolve(lines().length >= expected.length ? true : undefined));
      await new Promise((r) => setTimeout(r, 300)); // one more access-log flush
      expect(lines()).toEqual(expected);

      // Three pipelined, the middle one over first (its answer waits behind the first's): a client
      // that leaves then still cancels the two on either side of it.
      const before = outcomes.length;
      await new Promise<void>((resolve, reject) => {
        const socket = net.connect(edge.port, '127.0.0.1');
        socket.on('error', reject);
        socket.write(
          ['/forever', '/quick', '/stall']
            .map((t) => `GET ${t} HTTP/1.1\r\nHost: stream.localhost\r\n\r\n`)
            .join(''),
        );
        socket.once('data', () => {
          void eventually(() =>
            Promise.resolve(
              outcomes.slice(before).includes('/quick finished') &&
                upstreamSaw.filter((u) => u === '/stall').length === 2
                ? true
                : undefined,
            ),
          ).then(() => {
            socket.destroy();
            resolve();
          }, reject);
        });
      });
      await eventually(() => Promise.resolve(outcomes.length - before >= 3 ? true : undefined));
      expect(outcomes.slice(before).sort()).toEqual([
        '/forever aborted',
        '/quick finished',
        '/stall aborted',
      ]);
    } finally {
      await deleteRoute(database.db, 'stream.localhost');
      upstream.closeAllConnections();
      await new Promise((r) => upstream.close(r));
    }
  });

  it('applies a route change after its NOTIFY without a restart', async () => {
    const db = database.db;
    await upsertRoute(db, {
      hostname: 'acme.localhost',
      pathPrefix: '/crm',
      auth: 'app',
      tenantId: acme,
      upstream: up('acme-docs'),
    });
    const moved = await eventually(async () => {
      const r = await get('acme.localhost', '/crm/a');
      return r.echo?.name === 'acme-docs' ? r : undefined;
    });
    expect(moved.echo?.url).toBe('/a');
    await deleteRoute(db, 'acme.localhost', '/crm');
    await eventually(async () =>
      (await get('acme.localhost', '/crm/a')).echo?.name === 'acme-dash' ? true : undefined,
    );
    await upsertRoute(db, {
      hostname: 'acme.localhost',
      pathPrefix: '/crm',
      auth: 'app',
      tenantId: acme,
      upstream: up('acme-crm'),
    });
    await eventually(async () =>
      (await get('acme.localhost', '/crm/a')).echo?.name === 'acme-crm' ? true : undefined,
    );
  });

  it('enforces per-route allow and deny lists', async () => {
    const db = database.db;
    await upsertRoute(db, {
      hostname: 'acme.localhost',
      pathPrefix: '/admin',
      auth: 'app',
      tenantId: acme,
      upstream: up('acme-dash'),
      allowCidrs: ['10.0.0.0/8'],
    });
    await upsertRoute(db, {
      hostname: 'acme.localhost',
      pathPrefix: '/open',
      auth: 'app',
      tenantId: acme,
      upstream: up('acme-dash'),
      denyCidrs: ['127.0.0.0/8'],
    });
    const denied = await eventually(async () => {
      const r = await get('acme.localhost', '/admin/');
      return r.status === 403 ? r : undefined;
    });
    expect(denied.body).toContain('not allowed');
    await eventually(async () => ((await get('acme.localhost', '/open')).status === 403 ? true : undefined));
    await upsertRoute(db, {
      hostname: 'acme.localhost',
      pathPrefix: '/admin',
      auth: 'app',
      tenantId: acme,
      upstream: up('acme-dash'),
      allowCidrs: ['127.0.0.1/32'],
    });
    await eventually(async () =>
      (await get('acme.localhost', '/admin/')).status === 200 ? true : undefined,
    );
  });

  it('writes a JSON access log line and per-route metrics', async () => {
    await get('acme.localhost', '/crm/logged');
    const line = await eventually(() =>
      Promise.resolve(logLines.find((l) => l.msg === 'edge request' && l.path === '/crm/logged')),
    );
    expect(line).toMatchObject({
      tenantId: acme,
      status: 200,
      route: expect.stringMatching(/^rte_/) as unknown,
    });
    expect(typeof line.ms).toBe('number');
    const text = await edge.metrics.registry.metrics();
    expect(text).toMatch(
      new RegExp(`aiqso_edge_requests_total\\{route="rte_\\w+",tenant="${acme}",status="2xx"\\} \\d+`),
    );
    expect(text).toMatch(/aiqso_edge_routes \d+/);

    // Counted exactly across scrapes: each request once, whichever scrape it falls before.
    const crm = new RegExp(
      `aiqso_edge_requests_total\\{route="(${String(line.route)})",tenant="${acme}",status="2xx"\\} (\\d+)`,
    );
    const count = async () => Number(crm.exec(await edge.metrics.registry.metrics())?.[2] ?? 0);
    const before = await count();
    // (An exchange is counted when the edge's side of it closes, just after the client has the answer.)
    const reaches = (n: number) => eventually(async () => ((await count()) === n ? true : undefined));
    for (let i = 0; i < 3; i++) await get('acme.localhost', '/crm/again');
    await reaches(before + 3);
    expect(await count()).toBe(before + 3); // a scrape with no traffic in between adds nothing
    await get('acme.localhost', '/crm/again');
    await reaches(before + 4);
    expect(await count()).toBe(before + 4);
  });
});
