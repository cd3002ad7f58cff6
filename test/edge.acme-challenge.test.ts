import os from 'node:os';
import path from 'node:path';
import * as acme from 'acme-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  challengeHandlers,
  databaseChallengeStore,
  orderCertificate,
  type DnsHook,
} from '../src/edge/acme.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import { startTestEdge, type TestEdge } from './support/edge.ts';
import { rawGet } from './support/upstreams.ts';

/**
 * There is no ACME server here (no network to Let's Encrypt, no Pebble), so
 * these tests cover what can be shown honestly: key authorisations computed
 * by the real acme-client, stored and answered by every edge instance over
 * real sockets, the DNS-01 hook's record names, and how a failed order is
 * reported. A whole order against a local CA is in edge.acme-order.test.ts.
 */
let database: TestDatabase;
const edges: TestEdge[] = [];

beforeAll(async () => {
  database = await createTestDatabase();
  const challenges = databaseChallengeStore(database.db);
  edges.push(await startTestEdge(database, { challenges }), await startTestEdge(database, { challenges }));
});

afterAll(async () => {
  for (const e of edges) await e.close();
  await database?.drop();
});

describe('ACME challenges at the edge', () => {
  it('answers an HTTP-01 challenge on every edge instance, for any host, until it is removed', async () => {
    const client = new acme.Client({
      directoryUrl: 'http://127.0.0.1:9/directory',
      accountKey: await acme.crypto.createPrivateKey(2048),
    });
    const challenge = {
      type: 'http-01' as const,
      token: 'tok_En-123',
      url: 'http://ca.invalid/chall/1',
      status: 'pending' as const,
    };
    const keyAuthorization = await client.getChallengeKeyAuthorization(challenge);
    expect(keyAuthorization).toMatch(/^tok_En-123\.[\w-]{43}$/);

    const handlers = challengeHandlers(databaseChallengeStore(database.db));
    const authz = { identifier: { value: 'shop.example.test' } };
    await handlers.create(authz, challenge, keyAuthorization);
    for (const e of edges) {
      const res = await rawGet(e.port, '/.well-known/acme-challenge/tok_En-123', 'Shop.Example.Test');
      expect(res.status).toBe(200);
      expect(res.body).toBe(keyAuthorization);
      expect(res.headers['content-type']).toBe('text/plain');
    }
    await handlers.remove(authz, challenge, keyAuthorization);
    const after = await rawGet(edges[0]!.port, '/.well-known/acme-challenge/tok_En-123', 'shop.example.test');
    expect(after.status).toBe(404);
  });

  it('sends DNS-01 challenges to the hook under _acme-challenge of the base name', async () => {
    const calls: string[] = [];
    const dns: DnsHook = {
      createTxt: (name, value) => Promise.resolve(void calls.push(`+${name}=${value}`)),
      removeTxt: (name, value) => Promise.resolve(void calls.push(`-${name}=${value}`)),
    };
    const handlers = challengeHandlers(databaseChallengeStore(database.db), dns);
    const authz = { identifier: { value: '*.aiqso.example' } };
    await handlers.create(authz, { type: 'dns-01', token: 't' }, 'digest');
    await handlers.remove(authz, { type: 'dns-01', token: 't' }, 'digest');
    expect(calls).toEqual(['+_acme-challenge.aiqso.example=digest', '-_acme-challenge.aiqso.example=digest']);
    await expect(
      challengeHandlers(databaseChallengeStore(database.db)).create(
        authz,
        { type: 'dns-01', token: 't' },
        'x',
      ),
    ).rejects.toThrow(/no way to answer an ACME dns-01 challenge/);
  });

  it('refuses a wildcard order without a DNS hook and reports a refusing CA as a dependency failure', async () => {
    const base = {
      accountKey: await acme.crypto.createPrivateKey(2048),
      email: 'ops@aiqso.example',
      certDir: path.join(os.tmpdir(), `aiqso-acme-${process.pid}`),
      store: databaseChallengeStore(database.db),
    };
    await expect(
      orderCertificate({ ...base, directoryUrl: 'http://127.0.0.1:9/dir', domains: ['*.aiqso.example'] }),
    ).rejects.toMatchObject({ code: 'bad_request' });
    // A CA that refuses (acme-client retries 5xx and refused connections for over a minute; a 4xx it does not).
    const ca = http.createServer((_req, res) => {
      res.writeHead(403, { 'content-type': 'application/problem+json' });
      res.end(JSON.stringify({ type: 'urn:ietf:params:acme:error:unauthorized', detail: 'not here' }));
    });
    await new Promise<void>((r) => ca.listen(0, '127.0.0.1', r));
    const port = (ca.address() as AddressInfo).port;
    try {
      await expect(
        orderCertificate({
          ...base,
          directoryUrl: `http://127.0.0.1:${port}/directory`,
          domains: ['shop.example.test'],
        }),
      ).rejects.toMatchObject({
        code: 'dependency_failed',
        message: expect.stringMatching(
          /^ACME order for shop\.example\.test failed: Attempting to read ACME directory returned error 403/,
        ) as string,
      });
    } finally {
      ca.close();
    }
  });
});
