import { rmSync } from 'node:fs';
import path from 'node:path';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../src/db/embedded.ts';
import { EDGE_TOKEN_TYP } from '../src/edge/auth/edge-token.ts';
import { findNginx } from '../src/edge/nginx/apply.ts';
import { PLATFORM_REQUEST_HEADERS } from '../src/edge/nginx/render-auth.ts';
import { startNginxEdge } from '../src/edge/nginx/edge.ts';
import { upsertRoute } from '../src/edge/routes-store.ts';
import { platformParts, startTestEdge } from './support/edge.ts';
import { createForge } from './support/forge.ts';
import { createHarness, type Harness } from './support/identity.ts';
import { missingPart } from './support/strict.ts';
import {
  eventually,
  rawGet,
  startEchoUpstream,
  wsRoundTrip,
  type Echo,
  type EchoUpstream,
  type RawResponse,
} from './support/upstreams.ts';

/**
 * The sign-in in front of every tenant service, on both edges with the same
 * cases: two tenants (alpha, bravo) from the identity harness, each with its
 * dashboard at `<slug>.localhost` and Notes at `/notes` (`auth: edge`), alpha
 * also with a calendar whose `/booking` pages are public and a documents app
 * that signs in itself (`auth: app`). Every refusal is checked on what the
 * upstreams received: nothing.
 */

const HTML = 'Accept: text/html,application/xhtml+xml\r\n';
const ONE_DAY = 24 * 3600;

interface Tokens {
  member: string;
  bravoOwner: string;
  admin: string;
  forged: string;
  expired: string;
  otherTenantClaims: string;
  accessToken: string;
}

let h: Harness;
let tokensMade: Promise<Tokens> | undefined;
/** The tokens the cases present, made once at first use (so the anonymous cases need none). */
const tokens = () => (tokensMade ??= makeTokens());
const up: Record<string, EchoUpstream> = {};
let cookieSetter: http.Server;

/** An edge session for `host` from the API, as the dashboard obtains it. */
async function edgeSession(accessToken: string, host: string): Promise<string> {
  const res = await h.api.inject({
    method: 'POST',
    url: '/api/v1/auth/edge-session',
    headers: h.bearer(accessToken),
    payload: { host },
  });
  if (res.statusCode !== 200) throw new Error(`edge session: ${res.statusCode} ${res.body}`);
  return res.json<{ token: string }>().token;
}

const sidOf = (jwt: string) =>
  (JSON.parse(Buffer.from(jwt.split('.')[1]!, 'base64url').toString()) as { sid: string }).sid;

beforeAll(async () => {
  h = await createHarness();
  for (const name of ['alpha-dash', 'alpha-notes', 'alpha-cal', 'alpha-docs', 'bravo-dash', 'bravo-notes'])
    up[name] = await startEchoUpstream(name);
  // A service that tries to set the platform's cookies on the tenant's host, and one of its own.
  cookieSetter = http.createServer((_req, res) => {
    res.setHeader('set-cookie', [
      'aiqso_dash=planted; Path=/',
      'aiqso_edge=planted; Path=/',
      '__Host-aiqso_x=planted; Path=/; Secure',
      'shop=kept; Path=/shop',
    ]);
    res.end('ok');
  });
  await new Promise<void>((r) => cookieSetter.listen(0, '127.0.0.1', r));
  const at = (name: string) => ({ host: '127.0.0.1', port: up[name]!.port });
  const db = h.db.db;
  await upsertRoute(db, { hostname: 'alpha.localhost', tenantId: h.a.id, upstream: at('alpha-dash') });
  await upsertRoute(db, {
    hostname: 'alpha.localhost',
    pathPrefix: '/notes',
    tenantId: h.a.id,
    upstream: at('alpha-notes'),
  });
  await upsertRoute(db, {
    hostname: 'alpha.localhost',
    pathPrefix: '/cal',
    tenantId: h.a.id,
    upstream: at('alpha-cal'),
    publicPaths: ['/booking'],
  });
  await upsertRoute(db, {
    hostname: 'alpha.localhost',
    pathPrefix: '/docs',
    tenantId: h.a.id,
    upstream: at('alpha-docs'),
    auth: 'app',
  });
  await upsertRoute(db, {
    hostname: 'alpha.localhost',
    pathPrefix: '/shop',
    tenantId: h.a.id,
    upstream: { host: '127.0.0.1', port: (cookieSetter.address() as AddressInfo).port },
  });
  await upsertRoute(db, { hostname: 'bravo.localhost', tenantId: h.b.id, upstream: at('bravo-dash') });
  await upsertRoute(db, {
    hostname: 'bravo.localhost',
    pathPrefix: '/notes',
    tenantId: h.b.id,
    upstream: at('bravo-notes'),
  });
});

async function makeTokens(): Promise<Tokens> {
  const forge = await createForge(h);
  const now = Math.floor(Date.now() / 1000);
  const member = {
    sub: h.a.member.id,
    role: 'tenant_member',
    tid: h.a.id,
    sid: sidOf(h.a.member.token),
    email: h.a.member.email,
  };
  const edgeClaims = (extra: Record<string, unknown>) => ({
    ...forge.claims(member),
    aud: 'alpha.localhost',
    ...extra,
  });
  const typ = { typ: EDGE_TOKEN_TYP };
  return {
    member: await edgeSession(h.a.member.token, 'alpha.localhost'),
    bravoOwner: await edgeSession(h.b.owner.token, 'bravo.localhost'),
    admin: await edgeSession(h.admin.token, 'alpha.localhost'),
    forged: await forge.attacker(edgeClaims({}), typ),
    expired: await forge.real(edgeClaims({ iat: now - ONE_DAY, nbf: now - ONE_DAY, exp: now - 600 }), typ),
    // Signed by the platform's key for alpha's host, but naming bravo's owner and tenant.
    otherTenantClaims: await forge.real(
      edgeClaims({
        sub: h.b.owner.id,
        role: 'tenant_owner',
        tid: h.b.id,
        sid: sidOf(h.b.owner.token),
        email: h.b.owner.email,
      }),
      typ,
    ),
    accessToken: h.a.member.token,
  };
}

afterAll(async () => {
  for (const u of Object.values(up)) await u.close();
  await new Promise((r) => cookieSetter?.close(r));
  await h?.close();
});

interface EdgeUnderTest {
  port: number;
  close(): Promise<void>;
}

const nginxSkip = missingPart('nginx', findNginx() !== undefined, 'apt-get install nginx');
const NO_LIMITS = { AIQSO_EDGE_RATE_IP: '0', AIQSO_EDGE_RATE_TENANT: '0' };

const EDGES = [
  {
    name: 'builtin',
    skip: false,
    /** The builtin edge drops every client `x-aiqso-*` and every Set-Cookie a service sends for a platform cookie. */
    strict: true,
    start: async (): Promise<EdgeUnderTest> => {
      const edge = await startTestEdge(h.db, {
        env: { ...NO_LIMITS, AIQSO_MASTER_KEY: h.config.masterKey! },
      });
      return { port: edge.port, close: () => edge.close() };
    },
  },
  {
    name: 'nginx',
    skip: nginxSkip,
    /**
     * nginx sets or clears every X-AIQSO-* header the platform gives a meaning to, but cannot drop
     * other names by prefix, nor Set-Cookie headers by cookie name (docs/security.md).
     */
    strict: false,
    start: async (): Promise<EdgeUnderTest> => {
      const parts = await platformParts(h.db, { ...NO_LIMITS, AIQSO_MASTER_KEY: h.config.masterKey! });
      const port = await freePort();
      const edge = await startNginxEdge(
        { ...parts, database: h.db },
        { bind: '127.0.0.1', httpPort: port, dir: path.join(parts.dir, 'nginx'), workerProcesses: 1 },
      );
      return {
        port,
        close: async () => {
          await edge.close();
          await parts.api.close();
          rmSync(parts.dir, { recursive: true, force: true });
        },
      };
    },
  },
];

let probes = 0;

for (const e of EDGES) {
  describe.skipIf(e.skip)(`sign-in in front of tenant services (${e.name} edge)`, () => {
    let edge: EdgeUnderTest;
    beforeAll(async () => {
      edge = await e.start();
    });
    afterAll(() => edge?.close());

    /** A request with a unique marker in its query, and every upstream request that carried it. */
    async function probe(host: string, target: string, headers = '') {
      const marker = `probe${++probes}`;
      const url = `${target}${target.includes('?') ? '&' : '?'}m=${marker}`;
      const res = await rawGet(edge.port, url, host, headers);
      const reached = Object.values(up).flatMap((u) => u.received.filter((r) => r.url.includes(marker)));
      return { res, reached, marker, url };
    }
    const cookie = (token: string, more = '') => `Cookie: aiqso_edge=${token}${more}\r\n`;
    const echoOf = (res: RawResponse) => JSON.parse(res.body) as Echo;

    it('sends an anonymous browser to the tenant sign-in with a same-origin next, and an API client a 401', async () => {
      const browser = await probe('alpha.localhost', '/notes/list?sort=new', HTML);
      expect(browser.res.status).toBe(302);
      const location = browser.res.headers.location!;
      expect(location.startsWith('/login?next=/notes/list')).toBe(true);
      expect(new URL(location, 'http://x').searchParams.get('next')).toBe(browser.url);
      expect(browser.reached).toEqual([]);

      const api = await probe('alpha.localhost', '/notes/api/items', 'Accept: application/json\r\n');
      expect(api.res.status).toBe(401);
      expect(api.res.headers['content-type']).toMatch(/^application\/json/);
      expect(JSON.parse(api.res.body)).toEqual({
        error: { code: 'unauthenticated', message: 'sign in to this workspace to reach this service' },
      });
      expect(api.reached).toEqual([]);
      // A POST is refused the same way, its body never sent.
      const post = await probe('alpha.localhost', '/notes/', 'Content-Length: 0\r\n');
      expect(post.res.status).toBe(401);
      expect(post.reached).toEqual([]);
    });

    it('refuses forged, expired, other-tenant, other-host and access tokens; none reaches the service', async () => {
      const t = await tokens();
      const refused: [string, string, string][] = [
        ['forged (an attacker key)', 'alpha.localhost', t.forged],
        ['expired', 'alpha.localhost', t.expired],
        ["naming another tenant (the platform's key)", 'alpha.localhost', t.otherTenantClaims],
        ["bravo's, at alpha", 'alpha.localhost', t.bravoOwner],
        ["alpha's, at bravo", 'bravo.localhost', t.member],
        ['an access token', 'alpha.localhost', t.accessToken],
        ['not a token', 'alpha.localhost', 'x.y.z'],
      ];
      for (const [what, host, token] of refused) {
        const { res, reached } = await probe(host, '/notes/', cookie(token) + HTML);
        expect(res.status, what).toBe(302);
        expect(res.headers.location, what).toMatch(/^\/login\?next=\/notes\//);
        expect(reached, what).toEqual([]);
      }
    });

    it('refuses the edge session of a signed-out session, also one it had let through', async () => {
      const login = async () => {
        const session = await h.login(h.a.member.email);
        return { ...session, edge: await edgeSession(session.accessToken, 'alpha.localhost') };
      };
      const logout = async (accessToken: string) => {
        const res = await h.api.inject({
          method: 'POST',
          url: '/api/v1/auth/logout',
          headers: h.bearer(accessToken),
        });
        expect(res.statusCode).toBe(204);
      };
      const never = await login();
      await logout(never.accessToken);
      const first = await probe('alpha.localhost', '/notes/', cookie(never.edge));
      expect(first.res.status).toBe(401);
      expect(first.reached).toEqual([]);

      const used = await login();
      expect((await probe('alpha.localhost', '/notes/', cookie(used.edge))).res.status).toBe(200);
      await logout(used.accessToken);
      // Within the edge's session check interval (5 s).
      const later = await eventually(async () => {
        const p = await probe('alpha.localhost', '/notes/', cookie(used.edge));
        return p.res.status === 401 ? p : undefined;
      });
      expect(later.reached).toEqual([]);
    });

    it('lets a member through with the identity headers, never a forged one, and without the platform cookies', async () => {
      const t = await tokens();
      const forgedHeaders = [
        'X-AIQSO-User-Id: usr_attacker',
        'X-AIQSO-User-Email: attacker@evil.test',
        'X-AIQSO-User-Role: platform_admin',
        'X-AIQSO-Tenant-Id: ten_other',
        'X-AIQSO-Auth-Mode: dash ten_other',
        'X-AIQSO-Cookie: aiqso_dash=stolen',
        'X-AIQSO-Client-Address: 203.0.113.9',
        'X-AIQSO-Dashboard-Key: aiqso_stolen',
        'X-Aiqso-Something: else',
        '',
      ].join('\r\n');
      const { res, reached } = await probe(
        'alpha.localhost',
        '/notes/x',
        cookie(t.member, '; aiqso_dash=dashboard-session; theme=dark; aiqso_rt=refresh') + forgedHeaders,
      );
      expect(res.status).toBe(200);
      expect(reached).toHaveLength(1);
      const seen = reached[0]!;
      expect(seen.name).toBe('alpha-notes');
      expect(seen.headers).toMatchObject({
        'x-aiqso-user-id': h.a.member.id,
        'x-aiqso-user-email': h.a.member.email,
        'x-aiqso-user-role': 'tenant_member',
        'x-aiqso-tenant-id': h.a.id,
        cookie: 'theme=dark',
      });
      // Every header the platform gives a meaning to, whichever edge; the builtin drops any x-aiqso-*.
      for (const name of PLATFORM_REQUEST_HEADERS) expect(seen.headers[name], name).toBeUndefined();
      if (e.strict) expect(seen.headers['x-aiqso-something']).toBeUndefined();
      expect(echoOf(res).url).toMatch(/^\/x\?m=/);
    });

    it('lets a platform admin through as such, and drops the Cookie header when only platform cookies came', async () => {
      const t = await tokens();
      const { res, reached } = await probe('alpha.localhost', '/notes/', cookie(t.admin));
      expect(res.status).toBe(200);
      expect(reached[0]!.headers).toMatchObject({
        'x-aiqso-user-id': h.admin.id,
        'x-aiqso-user-role': 'platform_admin',
        'x-aiqso-tenant-id': h.a.id,
      });
      expect(reached[0]!.headers.cookie).toBeUndefined();
    });

    it('gives the dashboard the platform cookies only, and no identity headers', async () => {
      const t = await tokens();
      const { res, reached } = await probe(
        'alpha.localhost',
        '/',
        cookie(t.member, '; theme=dark; aiqso_dash=s1') + 'X-AIQSO-User-Id: usr_attacker\r\n',
      );
      expect(res.status).toBe(200);
      expect(reached[0]!.name).toBe('alpha-dash');
      expect(reached[0]!.headers.cookie).toBe(`aiqso_edge=${t.member}; aiqso_dash=s1`);
      expect(reached[0]!.headers['x-aiqso-user-id']).toBeUndefined();
    });

    it('lets public paths and a service with its own login through, without identity or platform cookies', async () => {
      const t = await tokens();
      const booking = await probe('alpha.localhost', '/cal/booking/42', HTML);
      expect(booking.res.status).toBe(200);
      expect(booking.reached.map((r) => [r.name, r.url.split('?')[0]])).toEqual([
        ['alpha-cal', '/booking/42'],
      ]);
      expect((await probe('alpha.localhost', '/cal/booking', HTML)).res.status).toBe(200);
      // Not below a public path: signed in only.
      for (const target of ['/cal/', '/cal/bookings', '/cal/admin/booking']) {
        const p = await probe('alpha.localhost', target, HTML);
        expect(p.res.status, target).toBe(302);
        expect(p.reached, target).toEqual([]);
      }
      const withCookies = await probe(
        'alpha.localhost',
        '/docs/a',
        cookie(t.member, '; paperless=own') + 'X-AIQSO-User-Id: usr_attacker\r\n',
      );
      expect(withCookies.res.status).toBe(200);
      const seen = withCookies.reached[0]!;
      expect(seen.name).toBe('alpha-docs');
      expect(seen.headers.cookie).toBe('paperless=own');
      expect(seen.headers['x-aiqso-user-id']).toBeUndefined();
      expect((await probe('alpha.localhost', '/docs/b')).res.status).toBe(200);
    });

    it('refuses an anonymous WebSocket upgrade and carries a signed-in one with the identity', async () => {
      const t = await tokens();
      const before = up['alpha-notes']!.received.length;
      await expect(wsRoundTrip(edge.port, 'alpha.localhost', '/notes/ws', 'hi')).rejects.toThrow(/401/);
      expect(up['alpha-notes']!.received.length).toBe(before);
      const reply = await wsRoundTrip(
        edge.port,
        'alpha.localhost',
        '/notes/ws',
        'hi',
        cookie(t.member, '; aiqso_dash=s') + 'X-AIQSO-User-Id: usr_attacker\r\n',
      );
      expect(reply).toBe('alpha-notes:hi');
      const upgrade = up['alpha-notes']!.received.at(-1)!;
      expect(upgrade.headers).toMatchObject({ 'x-aiqso-user-id': h.a.member.id });
      expect(upgrade.headers.cookie).toBeUndefined();
    });

    if (e.strict) {
      it("drops a service's Set-Cookie for the platform's cookies and keeps its own", async () => {
        const t = await tokens();
        const res = await rawGet(edge.port, '/shop/', 'alpha.localhost', cookie(t.member));
        expect(res.status).toBe(200);
        const raw = await new Promise<string[]>((resolve, reject) => {
          const req = http.get(
            {
              host: '127.0.0.1',
              port: edge.port,
              path: '/shop/',
              headers: { host: 'alpha.localhost', cookie: `aiqso_edge=${t.member}` },
            },
            (r) => {
              r.resume();
              resolve(r.headers['set-cookie'] ?? []);
            },
          );
          req.on('error', reject);
        });
        expect(raw).toEqual(['shop=kept; Path=/shop']);
      });
    }
  });
}
