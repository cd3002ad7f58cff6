import { mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as acme from 'acme-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { databaseChallengeStore, orderCertificate } from '../src/edge/acme.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import { startTestEdge, type TestEdge } from './support/edge.ts';
import { startFakeAcme, type FakeAcme } from './support/fake-acme.ts';
import { missingPart } from './support/strict.ts';
import { hasOpenssl, selfSigned, tlsGet } from './support/tls.ts';
import { eventually, rawGet } from './support/upstreams.ts';

/**
 * A whole HTTP-01 order through the real acme-client against a local CA that
 * checks what a CA checks (tests/support/fake-acme.ts): the answer is stored
 * in the database by one process and fetched by the CA from another edge
 * instance, and the issued certificate is served by SNI without a restart.
 * The domain is `localhost` because acme-client first fetches the answer
 * itself at http://<domain>:<port>/ (the port is acme-client's setting for
 * test CAs).
 */
const skip = missingPart('openssl', hasOpenssl, 'apt-get install openssl');

describe.skipIf(skip)('ACME order against a local CA', () => {
  let database: TestDatabase;
  let ca: FakeAcme;
  let dir: string;
  const edges: TestEdge[] = [];
  const settings = (acme.axios.defaults as unknown as { acmeSettings: { httpChallengePort: number } })
    .acmeSettings;
  const previousPort = settings.httpChallengePort;

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
    // acme-client checks the answer through the first edge; the CA validates through the second.
    settings.httpChallengePort = edges[0]!.port;
    ca = await startFakeAcme({ host: '127.0.0.1', port: edges[1]!.port });
  });

  afterAll(async () => {
    settings.httpChallengePort = previousPort;
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
      { identifier: 'localhost', token: expect.any(String) as string, ok: true },
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
});
