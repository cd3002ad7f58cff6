import { readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../src/db/embedded.ts';
import { findNginx } from '../src/edge/nginx/apply.ts';
import { startNginxEdge, type NginxEdge } from '../src/edge/nginx/edge.ts';
import { IDENTITY_HEADERS } from '../src/edge/auth/identity.ts';
import { PLATFORM_REQUEST_HEADERS } from '../src/edge/nginx/render-auth.ts';
import { renderNginxConfig } from '../src/edge/nginx/render.ts';
import type { EdgeRoute } from '../src/edge/route-table.ts';
import { deleteRoute, routeId, upsertRoute } from '../src/edge/routes-store.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import { acmeRoutes, insertTenant, platformParts } from './support/edge.ts';
import { missingPart } from './support/strict.ts';
import {
  eventually,
  rawGet,
  startEchoUpstream,
  wsRoundTrip,
  type Echo,
  type EchoUpstream,
} from './support/upstreams.ts';

function route(hostname: string, pathPrefix: string, extra: Partial<EdgeRoute> = {}): EdgeRoute {
  return {
    id: routeId(hostname, pathPrefix),
    hostname,
    pathPrefix,
    tenantId: 'ten_a',
    tenantServiceId: null,
    upstream: { host: '10.0.0.5', port: 3000 },
    stripPrefix: true,
    state: 'active',
    allowCidrs: [],
    denyCidrs: [],
    auth: pathPrefix === '' ? 'app' : 'edge',
    publicPaths: [],
    ...extra,
  };
}

describe('nginx configuration render (pure)', () => {
  const input = {
    baseDomain: 'aiqso.io',
    dir: '/srv/aiqso/nginx',
    listen: { bind: '0.0.0.0', httpPort: 80 },
    internal: { host: '127.0.0.1', port: 9000 },
    rate: { perIp: 100, perTenant: 0 },
  };

  it('maps hosts and host+segment to upstream pools, sending the rest to the internal edge', () => {
    const { config, skipped } = renderNginxConfig({
      ...input,
      routes: [
        route('acme.aiqso.io', ''),
        route('acme.aiqso.io', '/crm', { upstream: { host: '10.0.0.6', port: 8080 } }),
        route('acme.aiqso.io', '/docs', { upstream: { host: '10.0.0.7', port: 80 }, stripPrefix: false }),
        route('acme.aiqso.io', '/admin', { allowCidrs: ['10.0.0.0/8'] }),
        route('gone.aiqso.io', '', { state: 'suspended' }),
      ],
    });
    expect(skipped).toEqual([]);
    const lines = config.split('\n').map((l) => l.trim());
    expect(lines).toEqual(
      expect.arrayContaining([
        '"acme.aiqso.io" u_10_0_0_5_3000;',
        '"acme.aiqso.io/crm" u_10_0_0_6_8080;',
        '"acme.aiqso.io/docs" u_10_0_0_7_80;',
        '"acme.aiqso.io/admin" aiqso_internal;',
        '"gone.aiqso.io" aiqso_internal;',
        '"acme.aiqso.io/crm" 1;',
        'upstream u_10_0_0_6_8080 { server 10.0.0.6:8080; keepalive 16; }',
        'upstream aiqso_internal { server 127.0.0.1:9000; keepalive 64; }',
        'listen 0.0.0.0:80 default_server;',
        'limit_req_zone $binary_remote_addr zone=aiqso_ip:16m rate=100r/s;',
        'proxy_pass http://$aiqso_up;',
      ]),
    );
    expect(lines).not.toContain('"acme.aiqso.io/docs" 1;');
    expect(config).not.toContain('zone=aiqso_tenant');
    expect(lines).toContain('proxy_connect_timeout 3s; proxy_read_timeout 60s; proxy_send_timeout 60s;');
  });

  it('gives upstreams the configured timeout, as the builtin edge does', () => {
    const { config } = renderNginxConfig({ ...input, routes: [], upstreamTimeoutSeconds: 300 });
    expect(config.split('\n').map((l) => l.trim())).toContain(
      'proxy_connect_timeout 3s; proxy_read_timeout 300s; proxy_send_timeout 300s;',
    );
  });

  it('adds a server per SNI certificate on the HTTPS port, leaving out names that are not DNS names', () => {
    const { config, skipped } = renderNginxConfig({
      ...input,
      listen: {
        ...input.listen,
        https: {
          port: 443,
          certFile: '/tls/default.crt',
          keyFile: '/tls/default.key',
          sni: [
            { serverName: 'shop.example.com', certFile: '/tls/sni/shop.crt', keyFile: '/tls/sni/shop.key' },
            {
              serverName: '*.example.org',
              // The apex too; a name another file is named for, and one that is not a name, are left out.
              altNames: ['example.org', 'shop.example.com', 'x; include /etc/shadow'],
              certFile: '/tls/sni/w.crt',
              keyFile: '/tls/sni/w.key',
            },
            { serverName: 'x; include /etc/passwd', certFile: '/tls/x.crt', keyFile: '/tls/x.key' },
          ],
        },
      },
      routes: [route('acme.aiqso.io', '')],
    });
    expect(skipped).toEqual([{ id: 'x; include /etc/passwd', reason: 'certificate name is not a DNS name' }]);
    const lines = config.split('\n').map((l) => l.trim());
    expect(lines).toEqual(
      expect.arrayContaining([
        'listen 0.0.0.0:443 ssl default_server;',
        'ssl_certificate "/tls/default.crt";',
        'server_name shop.example.com;',
        'ssl_certificate "/tls/sni/shop.crt";',
        'server_name *.example.org example.org;',
      ]),
    );
    expect(lines.filter((l) => l.startsWith('server_name') && l.includes('shop.example.com'))).toEqual([
      'server_name shop.example.com;',
    ]);
    expect(lines.filter((l) => l === 'listen 0.0.0.0:443 ssl;')).toHaveLength(2);
    expect(lines.filter((l) => l === 'proxy_pass http://$aiqso_up;')).toHaveLength(3);
    expect(config).not.toContain('passwd');
    expect(config).not.toContain('shadow');
  });

  it("renders each direct route's sign-in mode and the auth subrequest, sending routes with public paths inside", () => {
    const { config, skipped } = renderNginxConfig({
      ...input,
      routes: [
        route('acme.aiqso.io', ''),
        route('acme.aiqso.io', '/crm'),
        route('acme.aiqso.io', '/docs', { auth: 'app' }),
        route('acme.aiqso.io', '/cal', { publicPaths: ['/booking'] }),
        route('acme.aiqso.io', '/admin', { allowCidrs: ['10.0.0.0/8'] }),
        route('acme.aiqso.io', '/bad', { publicPaths: ['/x"; include /etc/passwd; #'] }),
      ],
    });
    expect(skipped).toEqual([{ id: routeId('acme.aiqso.io', '/bad'), reason: 'bad public path' }]);
    const lines = config.split('\n').map((l) => l.trim());
    expect(lines).toEqual(
      expect.arrayContaining([
        '"acme.aiqso.io" "dash ten_a";',
        '"acme.aiqso.io/crm" "edge ten_a";',
        '"acme.aiqso.io/docs" "app ten_a";',
        '"acme.aiqso.io/cal" aiqso_internal;',
        '"acme.aiqso.io/cal" internal;',
        '"acme.aiqso.io/admin" internal;',
        'auth_request /.aiqso-auth;',
        'set $aiqso_check $aiqso_need;',
        'proxy_set_header X-AIQSO-User-Id $aiqso_user_id;',
        'proxy_set_header Cookie $aiqso_cookie_out;',
      ]),
    );
    // The mode is taken before the rewrite strips the prefix.
    expect(lines.indexOf('set $aiqso_check $aiqso_need;')).toBeLessThan(
      lines.indexOf('rewrite ^ $aiqso_forward break;'),
    );
    expect(config).not.toContain('passwd');
  });

  it('with HTTPS: the minimum TLS version, HSTS and the redirect of plain HTTP', () => {
    const https = { port: 443, certFile: '/tls/a.crt', keyFile: '/tls/a.key' };
    const strict = renderNginxConfig({ ...input, listen: { ...input.listen, https }, routes: [] });
    const lines = strict.config.split('\n').map((l) => l.trim());
    expect(lines).toEqual(
      expect.arrayContaining([
        'ssl_protocols TLSv1.3;',
        'map $scheme $aiqso_hsts { https "max-age=31536000"; default ""; }',
        'add_header Strict-Transport-Security $aiqso_hsts always;',
        'if ($aiqso_to_https) { return 308 https://$host$request_uri; }',
      ]),
    );
    const lenient = renderNginxConfig({
      ...input,
      listen: { ...input.listen, https: { ...https, port: 8443, minVersion: 'TLSv1.2' } },
      routes: [],
    });
    expect(lenient.config).toContain('ssl_protocols TLSv1.2 TLSv1.3;');
    expect(lenient.config).toContain('return 308 https://$host:8443$request_uri;');
    const plain = renderNginxConfig({ ...input, routes: [] }).config;
    expect(plain).not.toContain('ssl_protocols');
    expect(plain).not.toContain('return 308');
  });

  it('leaves out routes that could inject configuration or shadow the platform', () => {
    const { config, skipped } = renderNginxConfig({
      ...input,
      routes: [
        route('evil.aiqso.io"; } server { listen 81; #', ''),
        route('ok.aiqso.io', '', { upstream: { host: '10.0.0.1; include /etc/passwd', port: 1 } }),
        route('aiqso.io', ''),
      ],
    });
    expect(skipped.map((s) => s.reason)).toEqual([
      'hostname is not a DNS name',
      'upstream host is not a DNS name or IPv4 address',
      'the base domain belongs to the platform',
    ]);
    expect(config).not.toContain('listen 81');
    expect(config).not.toContain('passwd');
  });
});

/** Every `x-aiqso-*` header name written anywhere in the platform's code. */
function headerNamesInSource(): Set<string> {
  const names = new Set<string>();
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir)) {
      if (entry === 'node_modules') continue;
      const file = path.join(dir, entry);
      if (statSync(file).isDirectory()) walk(file);
      else if (/\.(ts|mjs|js)$/.test(entry))
        for (const m of readFileSync(file, 'utf8').matchAll(/x-aiqso-[a-z0-9-]*[a-z0-9]/gi))
          names.add(m[0].toLowerCase());
    }
  };
  for (const dir of ['src', 'dashboard', 'apps', 'bin']) walk(path.join(import.meta.dirname, '..', dir));
  return names;
}

describe('the platform headers at the nginx edge (pure)', () => {
  it('knows every x-aiqso-* header the platform uses, and sets or clears each on what it proxies', () => {
    const known = new Set<string>([...Object.values(IDENTITY_HEADERS), ...PLATFORM_REQUEST_HEADERS]);
    const used = headerNamesInSource();
    expect(used.size).toBeGreaterThan(5);
    expect([...used].filter((n) => !known.has(n))).toEqual([]);
    const conf = renderNginxConfig({
      baseDomain: 'aiqso.io',
      dir: '/srv/aiqso/nginx',
      listen: { bind: '0.0.0.0', httpPort: 80 },
      internal: { host: '127.0.0.1', port: 9000 },
      rate: { perIp: 0, perTenant: 0 },
      routes: [],
    }).config.toLowerCase();
    for (const name of known) expect(conf, name).toContain(`proxy_set_header ${name} $`);
  });
});

const nginxBin = findNginx();
const skipReal = missingPart('nginx', nginxBin !== undefined, 'apt-get install nginx');

describe.skipIf(skipReal)('nginx edge with the real nginx', () => {
  let database: TestDatabase;
  let edge: NginxEdge;
  let port: number;
  let dir: string;
  let parts: Awaited<ReturnType<typeof platformParts>>;
  const upstreams: Record<string, EchoUpstream> = {};
  let acme: string;
  const up = (name: string) => ({ host: '127.0.0.1', port: upstreams[name]!.port });

  beforeAll(async () => {
    database = await createTestDatabase();
    for (const n of ['acme-dash', 'acme-crm', 'acme-docs', 'acme-new'])
      upstreams[n] = await startEchoUpstream(n);
    acme = await insertTenant(database.db, 'acme');
    const globex = await insertTenant(database.db, 'globex');
    const db = database.db;
    await acmeRoutes(db, acme, up);
    await upsertRoute(db, { hostname: 'globex.localhost', tenantId: globex, state: 'suspended' });
    parts = await platformParts(database, { AIQSO_EDGE_RATE_IP: '0', AIQSO_EDGE_RATE_TENANT: '0' });
    dir = path.join(parts.dir, 'nginx');
    port = await freePort();
    edge = await startNginxEdge(
      { ...parts, database },
      { bind: '127.0.0.1', httpPort: port, dir, workerProcesses: 1 },
    );
  });

  afterAll(async () => {
    await edge?.close();
    await parts?.api.close();
    if (parts) rmSync(parts.dir, { recursive: true, force: true });
    for (const u of Object.values(upstreams)) await u.close();
    await database?.drop();
  });

  async function get(host: string, target: string, extra = '') {
    const res = await rawGet(port, target, host, extra);
    return { ...res, echo: res.headers['x-upstream'] ? (JSON.parse(res.body) as Echo) : undefined };
  }

  it('routes by host and path, stripping or keeping the prefix, with forwarding headers overwritten', async () => {
    expect((await get('acme.localhost', '/')).echo).toMatchObject({ name: 'acme-dash', url: '/' });
    expect((await get('ACME.localhost.:8080', '/crm/a?x=1')).echo).toMatchObject({
      name: 'acme-crm',
      url: '/a?x=1',
    });
    expect((await get('acme.localhost', '/crm')).echo).toMatchObject({ name: 'acme-crm', url: '/' });
    expect((await get('acme.localhost', '/docs/a')).echo).toMatchObject({
      name: 'acme-docs',
      url: '/docs/a',
    });
    expect((await get('acme.localhost', '/crm/%2e%2e/docs/b')).echo).toMatchObject({
      name: 'acme-docs',
      url: '/docs/b',
    });
    const spoof = await get(
      'acme.localhost',
      '/crm/h',
      'X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Host: evil\r\n',
    );
    expect(spoof.echo?.headers).toMatchObject({
      'x-forwarded-for': '127.0.0.1',
      'x-forwarded-host': 'acme.localhost',
      'x-forwarded-proto': 'http',
    });
  });

  it('refuses encoded slashes and sends the base domain, unknown hosts and suspended tenants to the internal edge', async () => {
    expect((await get('acme.localhost', '/crm%2f..%2fdocs')).status).toBe(400);
    expect((await get('acme.localhost', '/crm\\..\\docs')).status).toBe(400);
    expect((await get('localhost', '/healthz')).status).toBe(200);
    const unknown = await get('nobody.localhost', '/');
    expect(unknown.status).toBe(404);
    expect(unknown.body).toContain('no workspace at this address');
    expect((await get('globex.localhost', '/')).status).toBe(402);
  });

  it('keeps checkout ids and query strings out of its access log', async () => {
    expect((await get('acme.localhost', '/crm/billing/checkout/cs_local_secret1/pay?x=1')).status).toBe(200);
    expect((await get('acme.localhost', '/crm/list?token=secret2&page=2')).status).toBe(200);
    const log = path.join(dir, 'access.log');
    // nginx writes its buffered log at least every second.
    const lines = await eventually(() => {
      const text = readFileSync(log, 'utf8');
      return Promise.resolve(text.includes('/crm/list') && text.includes('/pay') ? text : undefined);
    });
    expect(lines).not.toMatch(/secret1|secret2/);
    expect(lines).toContain('"path":"/crm/billing/checkout/[redacted]/pay"');
    expect(lines).toContain('"path":"/crm/list?[redacted]"');
  });

  it('carries WebSocket upgrades', async () => {
    expect(await wsRoundTrip(port, 'acme.localhost', '/crm/ws', 'hello')).toBe('acme-crm:hello');
  });

  it('reloads on a route change, and keeps the working configuration when nginx refuses a render', async () => {
    const db = database.db;
    await upsertRoute(db, {
      hostname: 'acme.localhost',
      pathPrefix: '/new',
      auth: 'app',
      tenantId: acme,
      upstream: up('acme-new'),
    });
    await eventually(async () =>
      (await get('acme.localhost', '/new/x')).echo?.name === 'acme-new' ? true : undefined,
    );

    const working = readFileSync(edge.nginx.configFile, 'utf8');
    // An upstream name nginx cannot resolve makes `nginx -t` fail: a render that must not go live.
    await upsertRoute(db, {
      hostname: 'acme.localhost',
      pathPrefix: '/broken',
      auth: 'app',
      tenantId: acme,
      upstream: { host: 'nosuch-container.invalid', port: 80 },
    });
    await eventually(() => Promise.resolve(edge.lastApply().result === 'invalid' ? true : undefined));
    const last = edge.lastApply();
    expect(last.result === 'invalid' && last.error).toMatch(/host not found in upstream/);
    expect(readFileSync(edge.nginx.configFile, 'utf8')).toBe(working);
    expect((await get('acme.localhost', '/crm/still')).echo?.name).toBe('acme-crm');
    expect(await parts.metrics.registry.metrics()).toMatch(
      /aiqso_edge_nginx_apply_total\{result="invalid"\} [1-9]/,
    );

    await deleteRoute(db, 'acme.localhost', '/broken');
    // Back to the working render: nothing to reload.
    await eventually(() => Promise.resolve(edge.lastApply().result === 'unchanged' ? true : undefined));
    expect((await get('acme.localhost', '/new/y')).echo?.name).toBe('acme-new');
  });
});
