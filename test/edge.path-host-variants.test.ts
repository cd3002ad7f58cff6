import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { upsertRoute } from '../src/edge/routes-store.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import { insertTenant, startTestEdge, type TestEdge } from './support/edge.ts';
import { rawRequest, startEchoUpstream, type Echo, type EchoUpstream } from './support/upstreams.ts';

/**
 * Hundreds of spellings of hosts and paths, each with the outcome a careful
 * reader of RFC 3986/9112 expects: either the named service of the named
 * tenant with exactly this forwarded path, or a 400/404. Every upstream says
 * who it is, so a request reaching the wrong tenant or service cannot hide.
 */

type Expect = { svc: 'dash' | 'crm' | 'docs'; url: string } | { status: number };

const PATHS: [string, Expect][] = [
  ['/', { svc: 'dash', url: '/' }],
  ['/crm', { svc: 'crm', url: '/' }],
  ['/crm/', { svc: 'crm', url: '/' }],
  ['/crm/a', { svc: 'crm', url: '/a' }],
  ['/%63rm/a', { svc: 'crm', url: '/a' }],
  ['/%63%72%6D/a', { svc: 'crm', url: '/a' }],
  ['/%43RM/a', { svc: 'dash', url: '/CRM/a' }],
  ['/CRM/a', { svc: 'dash', url: '/CRM/a' }],
  ['/crm/../docs/a', { svc: 'docs', url: '/docs/a' }],
  ['/crm/%2e%2e/docs/a', { svc: 'docs', url: '/docs/a' }],
  ['/crm/%2E%2E/docs', { svc: 'docs', url: '/docs' }],
  ['/crm/.%2e/docs', { svc: 'docs', url: '/docs' }],
  ['/.%2e/docs', { svc: 'docs', url: '/docs' }],
  ['/%64ocs/a', { svc: 'docs', url: '/docs/a' }],
  ['/docs', { svc: 'docs', url: '/docs' }],
  ['/docsx', { svc: 'dash', url: '/docsx' }],
  ['/crm%2f..%2fdocs', { status: 400 }],
  ['/crm%2F', { status: 400 }],
  ['/crm/%2fetc', { status: 400 }],
  ['/crm/%5c..%5cdocs', { status: 400 }],
  ['/crm\\..\\docs', { status: 400 }],
  ['/crm/%00', { status: 400 }],
  ['/crm%00', { status: 400 }],
  ['/crm/%zz', { status: 400 }],
  ['/crm/%2', { status: 400 }],
  ['/crm/%u002e', { status: 400 }],
  ['/crm/%2e%2e%2f', { status: 400 }],
  ['/%2e%2e%2fcrm', { status: 400 }],
  ['/crm#frag', { status: 400 }],
  ['/crm/%0a', { status: 400 }],
  ['/crm/%252e%252e/docs', { svc: 'crm', url: '/%252e%252e/docs' }],
  ['/%252e%252e/crm', { svc: 'dash', url: '/%252e%252e/crm' }],
  ['/docs/%252fa', { svc: 'docs', url: '/docs/%252fa' }],
  ['/crm%252fx', { svc: 'dash', url: '/crm%252fx' }],
  ['//crm/a', { svc: 'crm', url: '/a' }],
  ['/./crm/a', { svc: 'crm', url: '/a' }],
  ['/../../crm/a', { svc: 'crm', url: '/a' }],
  ['/a/../../crm', { svc: 'crm', url: '/' }],
  ['/crm/./a/./b', { svc: 'crm', url: '/a/b' }],
  ['/crm/a/..', { svc: 'crm', url: '/' }],
  ['/docs/../crm/x?y=../z', { svc: 'crm', url: '/x?y=../z' }],
  ['/crm?x=%2F', { svc: 'crm', url: '/?x=%2F' }],
  ['/crm/a%20b', { svc: 'crm', url: '/a%20b' }],
  ['/crm/%7euser', { svc: 'crm', url: '/~user' }],
  ['/crm/%41', { svc: 'crm', url: '/A' }],
  ['/crm/%C0%AE%C0%AE/docs', { svc: 'crm', url: '/%C0%AE%C0%AE/docs' }],
  ['/crm;/a', { svc: 'dash', url: '/crm;/a' }],
  ['/crm/..;/docs', { svc: 'crm', url: '/..;/docs' }],
];

const TENANTS = ['acme', 'globex'] as const;
const other = (t: string) => (t === 'acme' ? 'globex' : 'acme');

/** Request lines and Host headers that all name tenant `t`. */
function hostSpellings(t: string): { target: (path: string) => string; host: string }[] {
  const origin = (host: string) => ({ target: (p: string) => p, host });
  return [
    origin(`${t}.localhost`),
    origin(`${t.toUpperCase()}.LOCALHOST`),
    origin(`${t}.localhost.`),
    origin(`${t}.localhost:8080`),
    origin(`${t[0]!.toUpperCase()}${t.slice(1)}.LocalHost.:80`),
    origin(`${t}.localhost:1`),
    // Absolute-form: the target's host wins over the Host header (RFC 9112 §3.2.2).
    { target: (p) => `http://${t}.localhost${p}`, host: `${other(t)}.localhost` },
    { target: (p) => `HTTP://${t.toUpperCase()}.localhost.:8080${p}`, host: `${other(t)}.localhost` },
    { target: (p) => `http://${t}.LOCALHOST${p}`, host: 'localhost' },
  ];
}

/** Hosts that name no tenant, and what they get: a status, or the platform app's own answers. */
const BAD_HOSTS: [string, number | 'platform'][] = [
  ['acme.localhost:abc', 400],
  ['acme.localhost..', 400],
  ['acme..localhost', 400],
  ['acme.localhost@globex.localhost', 400],
  ['acme_x.localhost', 400],
  ['acme.localhost:80:80', 400],
  ['acme-x.localhost', 404],
  ['xacme.localhost', 404],
  ['acme.localhost.evil', 404],
  ['acme.localhos', 404],
  ['globex.acme.localhost', 404],
  // A bare address is the platform's (no route there): its app answers.
  ['127.0.0.1', 'platform'],
  ['[::1]:8080', 'platform'],
];

let database: TestDatabase;
let edge: TestEdge;
const upstreams: EchoUpstream[] = [];

beforeAll(async () => {
  database = await createTestDatabase();
  for (const t of TENANTS) {
    const tenantId = await insertTenant(database.db, t);
    for (const svc of ['dash', 'crm', 'docs'] as const) {
      const u = await startEchoUpstream(`${t}-${svc}`);
      upstreams.push(u);
      await upsertRoute(database.db, {
        hostname: `${t}.localhost`,
        pathPrefix: svc === 'dash' ? '' : `/${svc}`,
        auth: 'app',
        tenantId,
        upstream: { host: '127.0.0.1', port: u.port },
        stripPrefix: svc !== 'docs',
      });
    }
  }
  edge = await startTestEdge(database, { env: { AIQSO_EDGE_RATE_IP: '0', AIQSO_EDGE_RATE_TENANT: '0' } });
});

afterAll(async () => {
  await edge?.close();
  for (const u of upstreams) await u.close();
  await database?.drop();
});

interface Case {
  line: string;
  host: string;
  tenant?: string;
  expect: Expect;
}

async function runAll(cases: Case[], concurrency = 16) {
  const results: { c: Case; status: number; echo?: Echo }[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < cases.length) {
        const c = cases[next++]!;
        const res = await rawRequest(
          edge.port,
          `GET ${c.line} HTTP/1.1\r\nHost: ${c.host}\r\nConnection: close\r\n\r\n`,
        );
        const echo = res.headers['x-upstream'] ? (JSON.parse(res.body) as Echo) : undefined;
        results.push({ c, status: res.status, echo });
      }
    }),
  );
  return results;
}

describe('edge normalisation under hostile spellings', () => {
  it('sends no request to the wrong tenant or service across 800+ host and path variants', async () => {
    const cases: Case[] = [];
    for (const t of TENANTS) {
      for (const spelling of hostSpellings(t)) {
        for (const [path, expect] of PATHS) {
          cases.push({ line: spelling.target(path), host: spelling.host, tenant: t, expect });
        }
      }
    }
    for (const [host, status] of BAD_HOSTS) {
      for (const [path] of PATHS.slice(0, 8)) {
        // The platform app's front page is at `/`; it has none of the tenants' paths.
        const want = status === 'platform' ? (path === '/' ? 200 : 404) : status;
        cases.push({ line: path, host, expect: { status: want } });
      }
    }
    expect(cases.length).toBeGreaterThanOrEqual(700);

    const results = await runAll(cases);
    const wrongPlace = results.filter(
      (r) => r.echo && (!r.c.tenant || !r.echo.name.startsWith(`${r.c.tenant}-`)),
    );
    expect(wrongPlace).toEqual([]);
    const mismatched = results
      .filter((r) =>
        'svc' in r.c.expect
          ? r.echo?.name !== `${r.c.tenant}-${r.c.expect.svc}` || r.echo.url !== r.c.expect.url
          : r.status !== r.c.expect.status || r.echo !== undefined,
      )
      .map((r) => ({
        line: r.c.line,
        host: r.c.host,
        want: r.c.expect,
        got: r.echo ? [r.echo.name, r.echo.url] : r.status,
      }));
    expect(mismatched).toEqual([]);
    // Upstreams never see a dot segment, an encoded slash or backslash.
    for (const r of results) {
      if (r.echo) expect(r.echo.url.split('?')[0]).not.toMatch(/(^|\/)\.\.?(\/|$)|%2f|%5c|\\/i);
    }
  });

  it('refuses a request line no parser could agree on', async () => {
    const res = await rawRequest(
      edge.port,
      'GET * HTTP/1.1\r\nHost: acme.localhost\r\nConnection: close\r\n\r\n',
    );
    expect(res.status).toBe(400);
    const noHost = await rawRequest(edge.port, 'GET /crm HTTP/1.1\r\nConnection: close\r\n\r\n');
    expect(noHost.status).toBe(400);
  });
});
