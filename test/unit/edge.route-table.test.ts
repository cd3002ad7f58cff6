import { describe, expect, it } from 'vitest';
import { normalizeHost, normalizePath, normalizeTarget } from '../../src/edge/normalize.ts';
import {
  buildRouteTable,
  hostRoutes,
  isIpLiteral,
  matchRoute,
  replaceHosts,
  tableRoutes,
  type EdgeRoute,
} from '../../src/edge/route-table.ts';
import { RouteInterner, routeId, toEdgeRoute } from '../../src/edge/routes-store.ts';

function route(hostname: string, pathPrefix = '', extra: Partial<EdgeRoute> = {}): EdgeRoute {
  return {
    id: routeId(hostname, pathPrefix),
    hostname,
    pathPrefix,
    tenantId: `ten_${hostname.split('.')[0]}`,
    tenantServiceId: null,
    upstream: { host: '10.0.0.1', port: 3000 },
    stripPrefix: true,
    state: 'active',
    allowCidrs: [],
    denyCidrs: [],
    auth: pathPrefix === '' ? 'app' : 'edge',
    publicPaths: [],
    ...extra,
  };
}

describe('route table (pure)', () => {
  const table = buildRouteTable([
    route('acme.aiqso.io'),
    route('acme.aiqso.io', '/crm'),
    route('acme.aiqso.io', '/docs', { stripPrefix: false }),
    route('shop.example.com', '/crm'),
  ]);

  it('matches host then first segment, stripping or keeping the prefix', () => {
    const m = (host: string, path: string) => matchRoute(table, 'aiqso.io', host, path);
    expect(m('aiqso.io', '/x')).toEqual({ kind: 'platform' });
    expect(m('10.1.2.3', '/x')).toEqual({ kind: 'platform' });
    expect(m('[::1]', '/x')).toEqual({ kind: 'platform' });
    expect(m('other.aiqso.io', '/')).toEqual({ kind: 'unknown_host' });
    expect(m('acme.aiqso.io', '/crm/a/b')).toMatchObject({
      kind: 'route',
      forwardPath: '/a/b',
      route: { pathPrefix: '/crm' },
    });
    expect(m('acme.aiqso.io', '/crm')).toMatchObject({ forwardPath: '/' });
    expect(m('acme.aiqso.io', '/docs/a')).toMatchObject({
      forwardPath: '/docs/a',
      route: { pathPrefix: '/docs' },
    });
    expect(m('acme.aiqso.io', '/crmx')).toMatchObject({ forwardPath: '/crmx', route: { pathPrefix: '' } });
    expect(m('shop.example.com', '/')).toEqual({ kind: 'no_route', tenantId: 'ten_shop' });
  });

  it('replaces only the hosts a notification names', () => {
    const next = replaceHosts(table, ['acme.aiqso.io'], [route('acme.aiqso.io', '', { state: 'suspended' })]);
    expect(next.size).toBe(2);
    expect(hostRoutes(next.hosts.get('acme.aiqso.io'))).toMatchObject([{ state: 'suspended' }]);
    expect(next.hosts.get('shop.example.com')).toBe(table.hosts.get('shop.example.com'));
    expect(table.size).toBe(4);
  });

  it('keeps one route per host and prefix, the later row replacing the earlier', () => {
    const again = buildRouteTable([
      route('acme.aiqso.io', '/crm'),
      route('acme.aiqso.io'),
      route('acme.aiqso.io', '/crm', { state: 'suspended' }),
    ]);
    expect(again.size).toBe(2);
    expect(matchRoute(again, 'aiqso.io', 'acme.aiqso.io', '/crm/x')).toMatchObject({
      route: { pathPrefix: '/crm', state: 'suspended' },
    });
    expect(tableRoutes(again).map((r) => r.pathPrefix)).toEqual(['/crm', '']);
    expect(tableRoutes(table)).toHaveLength(4);
  });

  it('derives the same route id from the same key', () => {
    expect(routeId('Acme.aiqso.io', '/crm')).toBe(routeId('acme.aiqso.io', '/crm'));
    expect(routeId('acme.aiqso.io', '/crm')).toMatch(/^rte_[0-9a-z]{26}$/);
    expect(routeId('acme.aiqso.io', '/crm')).not.toBe(routeId('acme.aiqso.io', ''));
  });
});

describe('routes from rows', () => {
  const row = (hostname: string, path_prefix: string, port: number): Parameters<typeof toEdgeRoute>[0] => ({
    id: routeId(hostname, path_prefix),
    hostname,
    path_prefix,
    tenant_id: 'ten_a',
    tenant_service_id: null,
    upstream_host: '10.0.0.5',
    upstream_port: port,
    strip_prefix: true,
    state: 'active',
    allow_cidrs: [],
    deny_cidrs: [],
    auth: path_prefix === '' ? 'app' : 'edge',
    public_paths: [],
  });

  it('share the upstream objects and strings of one load, and keep each address its own', () => {
    const intern = new RouteInterner();
    const [a, b, c] = [
      row('a.aiqso.io', '', 8080),
      row('b.aiqso.io', '/crm', 8080),
      row('a.aiqso.io', '/crm', 9090),
    ].map((r) => toEdgeRoute(r, intern));
    expect(a!.upstream).toEqual({ host: '10.0.0.5', port: 8080 });
    expect(b!.upstream).toBe(a!.upstream);
    expect(c!.upstream).toEqual({ host: '10.0.0.5', port: 9090 });
    expect(c!.upstream).not.toBe(a!.upstream);
    // Loads that do not share an interner share nothing.
    expect(toEdgeRoute(row('a.aiqso.io', '', 8080)).upstream).not.toBe(a!.upstream);
    expect(toEdgeRoute({ ...row('a.aiqso.io', '', 8080), upstream_host: null }).upstream).toBeNull();
  });
});

describe('normalisation (pure)', () => {
  it('normalises hosts', () => {
    expect(normalizeHost('Acme.AIQSO.io.:8443')).toBe('acme.aiqso.io');
    expect(normalizeHost('[::1]:80')).toBe('[::1]');
    expect(() => normalizeHost('a..b')).toThrow();
    expect(() => normalizeHost('a.b:')).toThrow();
    expect(() => normalizeHost(undefined)).toThrow(/missing Host/);
  });

  it('normalises paths once and refuses ambiguous ones', () => {
    expect(normalizePath('/a/%2e%2E/b/./c/%7E?x=%2F')).toEqual({ path: '/b/c/~', query: '?x=%2F' });
    expect(normalizePath('/a//b/')).toEqual({ path: '/a/b/', query: '' });
    expect(normalizePath('/%e2%82%ac')).toEqual({ path: '/%E2%82%AC', query: '' });
    for (const bad of ['/a%2fb', '/a%5Cb', '/a\\b', '/a%00', '/a%g0', '/a%', 'a/b', '/a b', '/a#b']) {
      expect(() => normalizePath(bad), bad).toThrow();
    }
  });

  it('tells addresses from names as the address pattern does, looking at the last character first', () => {
    const pattern = /^(\d{1,3}(\.\d{1,3}){3}|\[[0-9a-f:.]+\])$/;
    const hosts = [
      '10.1.2.3',
      '255.255.255.255',
      '[::1]',
      '[fe80::1]',
      '[::ffff:10.0.0.1]',
      '1.2.3',
      '1.2.3.4.5',
    ];
    hosts.push(
      '1.2.3.4.example',
      'acme.aiqso.io',
      'a',
      '9',
      'x9',
      '1a.b.c.9',
      '[::1',
      '::1]',
      '[]',
      'aiqso.io',
      '',
    );
    for (const host of hosts) expect(isIpLiteral(host), host).toBe(pattern.test(host));
    expect(isIpLiteral('10.1.2.3')).toBe(true);
    expect(isIpLiteral('[::1]')).toBe(true);
    expect(isIpLiteral('1.2.3.4.example')).toBe(false);
  });

  it('reads an origin-form target with the Host header, and refuses one that is neither form', () => {
    expect(normalizeTarget('/crm/../docs?q=1', 'Acme.aiqso.io')).toEqual({
      host: 'acme.aiqso.io',
      path: '/docs',
      query: '?q=1',
    });
    expect(() => normalizeTarget('/x', 'bad host')).toThrow(/bad Host/);
    expect(() => normalizeTarget('x/y', 'acme.aiqso.io')).toThrow(/must start with \//);
    expect(() => normalizeTarget('ftp://acme.aiqso.io/', 'acme.aiqso.io')).toThrow(/must start with \//);
  });

  it('takes the host of an absolute-form target over the Host header', () => {
    expect(normalizeTarget('http://Acme.aiqso.io:80/crm?q', 'evil.aiqso.io')).toEqual({
      host: 'acme.aiqso.io',
      path: '/crm',
      query: '?q',
    });
    expect(() => normalizeTarget('http://user@acme.aiqso.io/', 'x')).toThrow();
  });
});
