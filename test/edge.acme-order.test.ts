import { existsSync, mkdirSync, mkdtempSync, readFileSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as acme from 'acme-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { databaseChallengeStore, orderCertificate } from '../src/edge/acme.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import { runCli } from './support/cli.ts';
import { startTestEdge, type TestEdge } from './support/edge.ts';
import { startFakeAcme, type FakeAcme } from './support/fake-acme.ts';
import { missingPart } from './support/strict.ts';
import { hasOpenssl, selfSigned, tlsGet } from './support/tls.ts';
import { eventually, rawGet } from './support/upstreams.ts';

/**
 * Whole HTTP-01 orders through the real acme-client against a local CA that
 * checks what a CA checks (test/support/fake-acme.ts): the answer is stored
 * in the database by one process and fetched by the CA from another edge
 * instance (with the domain as Host), and the issued certificate is served by
 * SNI without a restart.
 */
const skip = missingPart('openssl', hasOpenssl, 'apt-get install openssl');

describe.skipIf(skip)('ACME order against a local CA', () => {
  let database: TestDatabase;
  let ca: FakeAcme;
  let dir: string;
  const edges: TestEdge[] = [];

  beforeAll(async () => {
    database = await createTestDatabase();
    dir = mkdtempSync(path.join(os.tmpdir(), 'aiqso-acme-'));
    mkdirSync(path.join(dir, 'sni'));
    selfSigned(path.join(dir, 'default'), ['default.test']);
    const challenges = databaseChallengeStore(database.db);
    for (let i = 0; i < 2; i++) {
      edges.push(
        await startTestEdge(database, {
          challenges,
          listen: {
            https: {
              port: 0,
              certFile: path.join(dir, 'default.crt'),
              keyFile: path.join(dir, 'default.key'),
              certDir: path.join(dir, 'sni'),
            },
          },
        }),
      );
    }
    // The CA validates through the second edge; the order runs in this process (or the CLI's).
    ca = await startFakeAcme({ host: '127.0.0.1', port: edges[1]!.port });
  });

  afterAll(async () => {
    await ca?.close();
    for (const e of edges) await e.close();
    await database?.drop();
  });

  it('orders a certificate over HTTP-01, installs it, and the edge serves it by SNI', async () => {
    const installed = await orderCertificate({
      directoryUrl: ca.directoryUrl,
      accountKey: await acme.crypto.createPrivateKey(2048),
      email: 'ops@aiqso.test',
      domains: ['localhost'],
      certDir: path.join(dir, 'sni'),
      store: databaseChallengeStore(database.db),
    });
    expect(installed.certFile).toBe(path.join(dir, 'sni', 'localhost.crt'));
    expect(ca.validations).toEqual([
      { type: 'http-01', identifier: 'localhost', token: expect.any(String) as string, ok: true },
    ]);
    expect(ca.issued).toBe(1);
    expect(readFileSync(installed.certFile, 'utf8')).toContain('BEGIN CERTIFICATE');

    // The answer is gone once the order is done.
    const token = ca.validations[0]!.token;
    expect(
      (await rawGet(edges[1]!.port, `/.well-known/acme-challenge/${token}`, 'localhost')).status,
    ).not.toBe(200);

    for (const e of edges) {
      const served = await eventually(async () => {
        const r = await tlsGet(e.httpsPort!, 'localhost', 'localhost', [ca.caPem]).catch(() => undefined);
        return r?.cn === 'localhost' ? r : undefined;
      });
      expect(served.cn).toBe('localhost'); // issued by the CA, trusted through ca.caPem
    }
  });

  it('aiqso certs order: the account key kept in the data directory, the pair in AIQSO_TLS_CERT_DIR', async () => {
    const dataDir = mkdtempSync(path.join(os.tmpdir(), 'aiqso-acme-cli-'));
    const env = {
      DATABASE_URL: database.url,
      AIQSO_DATA_DIR: dataDir,
      AIQSO_TLS_CERT_DIR: path.join(dir, 'sni'),
      AIQSO_ACME_DIRECTORY_URL: ca.directoryUrl,
      AIQSO_ACME_EMAIL: 'ops@aiqso.test',
    };
    const run = await runCli(['certs', 'order', 'shop.example.test', '--json'], env);
    expect(run.code, run.stderr).toBe(0);
    expect(JSON.parse(run.stdout)).toMatchObject({
      domains: ['shop.example.test'],
      certFile: path.join(dir, 'sni', 'shop.example.test.crt'),
    });
    expect(statSync(path.join(dataDir, 'acme-account.key')).mode & 0o777).toBe(0o600);
    const served = await eventually(async () => {
      const r = await tlsGet(edges[0]!.httpsPort!, 'shop.example.test', 'shop.example.test', [
        ca.caPem,
      ]).catch(() => undefined);
      return r?.cn === 'shop.example.test' ? r : undefined;
    });
    expect(served.cn).toBe('shop.example.test');

    const missing = await runCli(['certs', 'order', 'x.example.test'], { ...env, AIQSO_TLS_CERT_DIR: '' });
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toContain('AIQSO_TLS_CERT_DIR');
  });

  it('fails the order as a dependency failure when the CA finds the wrong answer', async () => {
    const real = databaseChallengeStore(database.db);
    const wrong = {
      ...real,
      put: (token: string, ka: string, domain: string) => real.put(token, `${ka}x`, domain),
    };
    await expect(
      orderCertificate({
        directoryUrl: ca.directoryUrl,
        accountKey: await acme.crypto.createPrivateEcdsaKey(),
        domains: ['wrong.example.test'],
        certDir: path.join(dir, 'sni'),
        store: wrong,
      }),
    ).rejects.toMatchObject({ code: 'dependency_failed' });
    expect(ca.validations.at(-1)).toMatchObject({ identifier: 'wrong.example.test', ok: false });
    expect(existsSync(path.join(dir, 'sni', 'wrong.example.test.crt'))).toBe(false);
  });
});
