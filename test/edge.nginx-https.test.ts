import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../src/db/embedded.ts';
import { findNginx } from '../src/edge/nginx/apply.ts';
import { startNginxEdge, type NginxEdge } from '../src/edge/nginx/edge.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import { acmeOverHttps, platformParts } from './support/edge.ts';
import { missingPart } from './support/strict.ts';
import { hasOpenssl, selfSigned, tlsGet, trustStore } from './support/tls.ts';
import { eventually, type EchoUpstream } from './support/upstreams.ts';

const skip =
  missingPart('nginx', findNginx() !== undefined, 'apt-get install nginx') ||
  missingPart('openssl', hasOpenssl, 'apt-get install openssl');

describe.skipIf(skip)('nginx edge over HTTPS with the real nginx', () => {
  let database: TestDatabase;
  let edge: NginxEdge;
  let parts: Awaited<ReturnType<typeof platformParts>>;
  let httpsPort: number;
  let tls: string;
  let sni: string;
  const upstreams: EchoUpstream[] = [];
  const masterPid = () => readFileSync(path.join(parts.dir, 'nginx', 'nginx.pid'), 'utf8').trim();

  beforeAll(async () => {
    database = await createTestDatabase();
    upstreams.push(
      ...(await acmeOverHttps(database.db, ['shop.example.test', 'blog.example.test', 'brand.test'])),
    );
    parts = await platformParts(database, {
      AIQSO_BASE_DOMAIN: 'aiqso.test',
      AIQSO_EDGE_RATE_IP: '0',
      AIQSO_EDGE_RATE_TENANT: '0',
    });
    tls = path.join(parts.dir, 'tls');
    sni = path.join(tls, 'sni');
    mkdirSync(sni, { recursive: true });
    selfSigned(path.join(tls, 'wildcard'), ['*.aiqso.test', 'aiqso.test']);
    selfSigned(path.join(sni, 'shop.example.test'), ['shop.example.test'], 'shop v1');
    selfSigned(path.join(sni, '_wildcard.brand.test'), ['*.brand.test', 'brand.test'], 'brand');
    httpsPort = await freePort();
    edge = await startNginxEdge(
      { ...parts, database },
      {
        bind: '127.0.0.1',
        httpPort: await freePort(),
        https: {
          port: httpsPort,
          certFile: path.join(tls, 'wildcard.crt'),
          keyFile: path.join(tls, 'wildcard.key'),
          certDir: sni,
        },
        dir: path.join(parts.dir, 'nginx'),
        workerProcesses: 1,
        certPollMs: 200,
      },
    );
  });

  afterAll(async () => {
    await edge?.close();
    await parts?.api.close();
    if (parts) rmSync(parts.dir, { recursive: true, force: true });
    for (const u of upstreams) await u.close();
    await database?.drop();
  });

  const get = (servername: string | undefined, host: string) => tlsGet(httpsPort, servername, host, ca());
  const ca = trustStore(() =>
    [
      path.join(tls, 'wildcard.crt'),
      ...['shop', 'blog'].map((h) => path.join(sni, `${h}.example.test.crt`)),
      path.join(sni, '_wildcard.brand.test.crt'),
    ].filter((f) => {
      try {
        readFileSync(f);
        return true;
      } catch {
        return false;
      }
    }),
  );

  it('serves tenants with the default certificate and marks the request as https', async () => {
    const res = await get('acme.aiqso.test', 'acme.aiqso.test');
    expect(res.cn).toBe('*.aiqso.test');
    expect(res.echo).toMatchObject({ name: 'acme-dash', headers: { 'x-forwarded-proto': 'https' } });
  });

  it('picks a per-host certificate by SNI from the certificate directory', async () => {
    const res = await get('shop.example.test', 'shop.example.test');
    expect(res.cn).toBe('shop v1');
    expect(res.echo?.name).toBe('acme-shop');
  });

  it('serves a wildcard pair to its apex too, by the names the certificate holds', async () => {
    const res = await get('brand.test', 'brand.test');
    expect(res.cn).toBe('brand');
    expect(res.echo?.name).toBe('acme-shop');
  });

  it('reloads nginx (same master process) when a certificate is renewed or added', async () => {
    const pid = masterPid();
    selfSigned(path.join(sni, 'shop.example.test'), ['shop.example.test'], 'shop v2');
    await eventually(async () =>
      (await get('shop.example.test', 'shop.example.test')).cn === 'shop v2' ? true : undefined,
    );

    selfSigned(path.join(tls, 'wildcard'), ['*.aiqso.test', 'aiqso.test'], 'wildcard v2');
    await eventually(async () =>
      (await get(undefined, 'acme.aiqso.test')).cn === 'wildcard v2' ? true : undefined,
    );

    selfSigned(path.join(sni, 'blog.example.test'), ['blog.example.test'], 'blog v1');
    // Until the reload, a new name gets the default certificate, which does not cover it.
    const blog = await eventually(async () => {
      const r = await get('blog.example.test', 'blog.example.test').catch(() => undefined);
      return r?.cn === 'blog v1' ? r : undefined;
    });
    expect(blog.echo?.name).toBe('acme-shop');
    expect(masterPid()).toBe(pid);
    expect(edge.nginx.running()).toBe(true);
  });
});
