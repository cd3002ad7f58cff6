import { mkdirSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { upsertRoute } from '../src/edge/routes-store.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import { acmeOverHttps, insertTenant, startTestEdge, type TestEdge } from './support/edge.ts';
import { missingPart } from './support/strict.ts';
import { hasOpenssl, selfSigned, tlsGet, trustStore } from './support/tls.ts';
import { eventually, type EchoUpstream } from './support/upstreams.ts';

const skip = missingPart('openssl', hasOpenssl, 'apt-get install openssl');

describe.skipIf(skip)('builtin edge over HTTPS', () => {
  let database: TestDatabase;
  let edge: TestEdge;
  let dir: string;
  const upstreams: EchoUpstream[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'aiqso-tls-'));
    mkdirSync(path.join(dir, 'sni'));
    selfSigned(path.join(dir, 'wildcard'), ['*.aiqso.test', 'aiqso.test']);
    selfSigned(path.join(dir, 'sni', 'shop.example.test'), ['shop.example.test'], 'shop v1');
    // One pair for a wildcard and its apex, as an ACME order for both installs it.
    selfSigned(path.join(dir, 'sni', '_wildcard.brand.test'), ['*.brand.test', 'brand.test'], 'brand');
    database = await createTestDatabase();
    upstreams.push(...(await acmeOverHttps(database.db, ['shop.example.test'])));
    edge = await startTestEdge(database, {
      env: { AIQSO_BASE_DOMAIN: 'aiqso.test' },
      listen: {
        https: {
          port: 0,
          certFile: path.join(dir, 'wildcard.crt'),
          keyFile: path.join(dir, 'wildcard.key'),
          certDir: path.join(dir, 'sni'),
        },
      },
    });
  });

  afterAll(async () => {
    await edge?.close();
    for (const u of upstreams) await u.close();
    await database?.drop();
  });

  const get = (servername: string | undefined, host: string, ca: string[]) =>
    tlsGet(edge.httpsPort!, servername, host, ca);
  const ca = trustStore(() => [
    path.join(dir, 'wildcard.crt'),
    path.join(dir, 'sni', 'shop.example.test.crt'),
    path.join(dir, 'sni', '_wildcard.brand.test.crt'),
  ]);

  it('serves tenants with the wildcard certificate and marks the request as https', async () => {
    const res = await get('acme.aiqso.test', 'acme.aiqso.test', ca());
    expect(res.cn).toBe('*.aiqso.test');
    expect(res.echo).toMatchObject({ name: 'acme-dash', headers: { 'x-forwarded-proto': 'https' } });
  });

  it('serves a certificate by the names it holds, not only the name of its file', async () => {
    await upsertRoute(database.db, {
      hostname: 'brand.test',
      tenantId: await insertTenant(database.db, 'brand'),
      upstream: { host: '127.0.0.1', port: upstreams[1]!.port },
    });
    const apex = await eventually(async () => {
      const r = await get('brand.test', 'brand.test', ca());
      return r.status === 200 ? r : undefined;
    });
    expect(apex.cn).toBe('brand');
    expect((await get('www.brand.test', 'brand.test', ca())).cn).toBe('brand');
  });

  it('picks a per-host certificate by SNI and picks up a renewed one without a restart', async () => {
    const first = await get('shop.example.test', 'shop.example.test', ca());
    expect(first.cn).toBe('shop v1');
    expect(first.echo?.name).toBe('acme-shop');
    selfSigned(path.join(dir, 'sni', 'shop.example.test'), ['shop.example.test'], 'shop v2');
    const renewed = await eventually(async () => {
      const r = await get('shop.example.test', 'shop.example.test', ca());
      return r.cn === 'shop v2' ? r : undefined;
    });
    expect(renewed.echo?.name).toBe('acme-shop');
  });

  it('answers clients without SNI with the default certificate, renewed in place', async () => {
    expect((await get(undefined, 'acme.aiqso.test', ca())).cn).toBe('*.aiqso.test');
    selfSigned(path.join(dir, 'wildcard'), ['*.aiqso.test', 'aiqso.test'], 'wildcard v2');
    await eventually(async () =>
      (await get(undefined, 'acme.aiqso.test', ca())).cn === 'wildcard v2' ? true : undefined,
    );
    const bySni = await get('acme.aiqso.test', 'acme.aiqso.test', ca());
    expect(bySni.cn).toBe('wildcard v2');
    expect(bySni.echo?.name).toBe('acme-dash');
  });
});
