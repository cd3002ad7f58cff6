import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../src/db/embedded.ts';
import { findNginx } from '../src/edge/nginx/apply.ts';
import { startNginxEdge } from '../src/edge/nginx/edge.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import { acmeOverHttps, platformParts, startTestEdge } from './support/edge.ts';
import { missingPart } from './support/strict.ts';
import { hasOpenssl, selfSigned } from './support/tls.ts';
import { rawGet, type EchoUpstream } from './support/upstreams.ts';

/**
 * HTTPS as the seed asks, on both edges: with a certificate, plain HTTP for a
 * name is redirected to HTTPS (ACME's challenges and requests to an address
 * excepted), HTTPS answers carry HSTS, and TLS 1.2 is refused unless
 * AIQSO_TLS_MIN_VERSION=TLSv1.2.
 */
const skipTls = missingPart('openssl', hasOpenssl, 'apt-get install openssl');
const skipNginx = missingPart('nginx', findNginx() !== undefined, 'apt-get install nginx');

interface Listening {
  http: number;
  https: number;
  close(): Promise<void>;
}

let database: TestDatabase;
let dir: string;
let ca: string;
const upstreams: EchoUpstream[] = [];
const cert = () => ({
  certFile: path.join(dir, 'wildcard.crt'),
  keyFile: path.join(dir, 'wildcard.key'),
  certDir: path.join(dir, 'sni'),
});
const ENV = { AIQSO_BASE_DOMAIN: 'aiqso.test', AIQSO_EDGE_RATE_IP: '0', AIQSO_EDGE_RATE_TENANT: '0' };

beforeAll(async () => {
  if (skipTls) return;
  dir = mkdtempSync(path.join(os.tmpdir(), 'aiqso-https-'));
  selfSigned(path.join(dir, 'wildcard'), ['*.aiqso.test', 'aiqso.test']);
  mkdirSync(path.join(dir, 'sni'));
  selfSigned(path.join(dir, 'sni', 'shop.example.test'), ['shop.example.test']);
  ca = readFileSync(path.join(dir, 'wildcard.crt'), 'utf8');
  database = await createTestDatabase();
  upstreams.push(...(await acmeOverHttps(database.db, ['shop.example.test'])));
});

afterAll(async () => {
  for (const u of upstreams) await u.close();
  await database?.drop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const EDGES = [
  {
    name: 'builtin',
    skip: skipTls,
    async start(env: Record<string, string>): Promise<Listening> {
      const edge = await startTestEdge(database, {
        env: { ...ENV, ...env },
        listen: { https: { port: 0, ...cert() } },
      });
      return { http: edge.port, https: edge.httpsPort!, close: () => edge.close() };
    },
  },
  {
    name: 'nginx',
    skip: skipTls || skipNginx,
    async start(env: Record<string, string>): Promise<Listening> {
      const parts = await platformParts(database, { ...ENV, ...env });
      const ports = { http: await freePort(), https: await freePort() };
      const edge = await startNginxEdge(
        { ...parts, database },
        {
          bind: '127.0.0.1',
          httpPort: ports.http,
          https: { port: ports.https, ...cert() },
          dir: path.join(parts.dir, 'nginx'),
          workerProcesses: 1,
        },
      );
      return {
        ...ports,
        close: async () => {
          await edge.close();
          await parts.api.close();
          rmSync(parts.dir, { recursive: true, force: true });
        },
      };
    },
  },
];

/** GET over HTTPS: status and headers. */
function httpsGet(port: number, host: string, target: string) {
  return new Promise<{ status: number; headers: Record<string, string | string[] | undefined> }>(
    (resolve, reject) => {
      const req = https.request(
        { host: '127.0.0.1', port, path: target, servername: host, headers: { host }, ca, agent: false },
        (res) => {
          res.resume();
          res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers }));
        },
      );
      req.on('error', reject);
      req.end();
    },
  );
}

/** The TLS version a handshake at most `maxVersion` settles on, or the error that ended it. */
function handshake(port: number, servername: string, maxVersion: tls.SecureVersion) {
  return new Promise<string>((resolve) => {
    const socket = tls.connect({
      host: '127.0.0.1',
      port,
      servername,
      maxVersion,
      rejectUnauthorized: false,
    });
    socket.once('secureConnect', () => {
      resolve(String(socket.getProtocol()));
      socket.destroy();
    });
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(`refused: ${err.code ?? err.message}`));
  });
}

for (const e of EDGES) {
  describe.skipIf(e.skip)(`HTTPS policy (${e.name} edge)`, () => {
    let edge: Listening;
    beforeAll(async () => {
      edge = await e.start({});
    });
    afterAll(() => edge?.close());

    it('redirects plain HTTP for a name to HTTPS, keeping the path and query', async () => {
      for (const [host, target] of [
        ['acme.aiqso.test', '/notes/x?y=1'],
        ['aiqso.test', '/api/v1/catalog'],
        ['shop.example.test', '/'],
      ] as const) {
        const res = await rawGet(edge.http, target, host);
        expect(res.status, host).toBe(308);
        expect(res.headers.location, host).toBe(`https://${host}:${edge.https}${target}`);
        expect(res.headers['strict-transport-security'], host).toBeUndefined();
      }
    });

    it("answers ACME's challenge path and requests to an address over plain HTTP", async () => {
      const challenge = await rawGet(
        edge.http,
        '/.well-known/acme-challenge/unknown-token',
        'acme.aiqso.test',
      );
      expect(challenge.status).not.toBe(308);
      const health = await rawGet(edge.http, '/healthz', '127.0.0.1');
      expect(health.status).toBe(200);
    });

    it('sends HSTS on HTTPS answers', async () => {
      for (const host of ['acme.aiqso.test', 'aiqso.test']) {
        const res = await httpsGet(edge.https, host, host === 'aiqso.test' ? '/healthz' : '/');
        expect(res.status, host).toBe(200);
        expect(res.headers['strict-transport-security'], host).toBe('max-age=31536000');
      }
    });

    it('refuses TLS 1.2 by default, with the default and a per-host certificate', async () => {
      expect(await handshake(edge.https, 'acme.aiqso.test', 'TLSv1.3')).toBe('TLSv1.3');
      expect(await handshake(edge.https, 'acme.aiqso.test', 'TLSv1.2')).toMatch(/^refused/);
      expect(await handshake(edge.https, 'shop.example.test', 'TLSv1.2')).toMatch(/^refused/);
    });

    it('accepts TLS 1.2 with AIQSO_TLS_MIN_VERSION=TLSv1.2', async () => {
      const lenient = await e.start({ AIQSO_TLS_MIN_VERSION: 'TLSv1.2' });
      try {
        expect(await handshake(lenient.https, 'acme.aiqso.test', 'TLSv1.2')).toBe('TLSv1.2');
        expect(await handshake(lenient.https, 'acme.aiqso.test', 'TLSv1.3')).toBe('TLSv1.3');
      } finally {
        await lenient.close();
      }
    });
  });
}
