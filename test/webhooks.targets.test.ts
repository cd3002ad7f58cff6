import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { postSigned } from '../src/events/deliver.ts';
import { addressesFor, checkTarget, isPrivateAddress, type Resolver } from '../src/events/targets.ts';
import { createHarness, type Harness } from './support/identity.ts';

/**
 * Webhook destinations: private, loopback and link-local targets (v4, v6,
 * v4-in-v6, names resolving to them) are refused at registration with a 400
 * naming the address, and again at delivery on the addresses the connection
 * uses (a name rebound to 127.0.0.1 after registration never reaches the
 * receiver listening there), unless the operator allows them.
 */

const FORGED = [
  'http://169.254.169.254/latest/meta-data/',
  'http://10.0.0.5/hook',
  'http://172.20.1.1/hook',
  'http://192.168.1.10/hook',
  'http://127.0.0.1:5678/webhook',
  'http://0.0.0.0/hook',
  'http://100.64.0.1/hook',
  'http://[::1]/hook',
  'http://[fc00::1]/hook',
  'http://[fd12:3456::1]/hook',
  'http://[fe80::1]/hook',
  'http://[::ffff:127.0.0.1]/hook',
  'http://[::ffff:a9fe:a9fe]/hook',
  'http://[::]/hook',
];

const strict = { allowPrivate: false, allow: [] };

describe('webhook destinations', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await createHarness();
  });
  afterAll(() => h.close());

  it('refuses forged destinations through the API with a 400 naming the address, for admins and tenant owners', async () => {
    for (const url of FORGED) {
      for (const [path, token] of [
        ['/api/v1/webhooks', h.admin.token],
        [`/api/v1/tenants/${h.a.slug}/webhooks`, h.a.owner.token],
      ] as const) {
        const res = await h.api.inject({
          method: 'POST',
          url: path,
          headers: h.bearer(token),
          payload: { url, events: ['*'] },
        });
        expect(res.statusCode, `${url}: ${res.body}`).toBe(400);
        expect(res.json<{ error: { message: string } }>().error.message).toMatch(
          /private, loopback or link-local address; set AIQSO_WEBHOOKS_ALLOW_PRIVATE=1/,
        );
      }
    }
    const count = await h.db.db.selectFrom('webhook_endpoints').select('id').execute();
    expect(count).toEqual([]);
  });

  it('refuses other schemes, credentials in the URL and unknown events with a 400 naming the field', async () => {
    for (const [payload, field] of [
      [{ url: 'ftp://93.184.216.34/x', events: ['*'] }, 'url: expected an http or https URL'],
      [{ url: 'https://u:p@93.184.216.34/x', events: ['*'] }, 'url: must not carry a user name or password'],
      [{ url: 'not a url', events: ['*'] }, 'url: "not a url" is not a URL'],
      [
        { url: 'https://93.184.216.34/x', events: ['tenant.exploded'] },
        'events: "tenant.exploded" is not an event',
      ],
      [{ url: 'https://93.184.216.34/x', events: ['nothing.*'] }, 'events: "nothing.*" matches no event'],
    ] as const) {
      const res = await h.api.inject({
        method: 'POST',
        url: '/api/v1/webhooks',
        headers: h.bearer(h.admin.token),
        payload,
      });
      expect(res.statusCode, res.body).toBe(400);
      expect(res.json<{ error: { message: string } }>().error.message).toContain(field);
    }
  });

  it('classifies addresses: private, loopback, link-local and v4-in-v6 refused, public allowed', () => {
    for (const a of [
      '10.1.2.3',
      '127.0.0.1',
      '169.254.169.254',
      '172.31.255.255',
      '192.168.0.1',
      '::1',
      'fc00::1',
      'fe80::1',
      '::ffff:10.0.0.1',
      '64:ff9b::a00:1',
    ])
      expect(isPrivateAddress(a), a).toBe(true);
    for (const a of ['93.184.216.34', '1.1.1.1', '172.32.0.1', '2606:4700:4700::1111'])
      expect(isPrivateAddress(a), a).toBe(false);
  });

  it('refuses a name that resolves to a private address, and allows what the operator allows', async () => {
    const resolve: Resolver = (host) =>
      Promise.resolve(
        host === 'n8n.lan' ? [{ address: '10.0.5.7', family: 4 }] : [{ address: '93.184.216.34', family: 4 }],
      );
    await expect(checkTarget('https://n8n.lan/webhook', strict, resolve)).rejects.toThrow(
      /n8n\.lan resolves to 10\.0\.5\.7, a private, loopback or link-local address/,
    );
    await expect(
      checkTarget('https://n8n.lan/webhook', { allowPrivate: false, allow: ['n8n.lan'] }, resolve),
    ).resolves.toBeInstanceOf(URL);
    await expect(
      checkTarget('https://n8n.lan/webhook', { allowPrivate: false, allow: ['10.0.5.0/24'] }, resolve),
    ).resolves.toBeInstanceOf(URL);
    await expect(
      checkTarget('https://n8n.lan/webhook', { allowPrivate: true, allow: [] }, resolve),
    ).resolves.toBeInstanceOf(URL);
    await expect(addressesFor('10.0.6.1', { allowPrivate: false, allow: ['10.0.5.0/24'] })).rejects.toThrow(
      /10\.0\.6\.1/,
    );
  });

  it('checks again at delivery: a name rebound to 127.0.0.1 never reaches the receiver there', async () => {
    let hits = 0;
    const server = createServer((_req, res) => {
      hits++;
      res.end('ok');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    try {
      // Registered while the name pointed elsewhere; it now resolves to loopback.
      const rebound: Resolver = () => Promise.resolve([{ address: '127.0.0.1', family: 4 }]);
      const refused = await postSigned(
        `http://hooks.example.com:${port}/x`,
        '{}',
        {},
        { policy: strict, timeoutMs: 2000, resolve: rebound },
      );
      expect(refused.statusCode).toBeNull();
      expect(refused.error).toMatch(/hooks\.example\.com resolves to 127\.0\.0\.1/);
      const literal = await postSigned(
        `http://127.0.0.1:${port}/x`,
        '{}',
        {},
        { policy: strict, timeoutMs: 2000 },
      );
      expect(literal.error).toMatch(/127\.0\.0\.1 is a private/);
      expect(hits).toBe(0);
      // Allowed: the same request arrives, answered and timed.
      const allowed = await postSigned(
        `http://hooks.example.com:${port}/x`,
        '{}',
        {},
        {
          policy: { allowPrivate: false, allow: ['127.0.0.1'] },
          timeoutMs: 2000,
          resolve: rebound,
        },
      );
      expect(allowed).toMatchObject({ statusCode: 200, excerpt: 'ok', error: null });
      expect(hits).toBe(1);
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
    }
  });

  it('gives up on a receiver that does not answer within the timeout', async () => {
    const server = createServer(() => undefined);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/slow`;
      const res = await postSigned(
        url,
        '{}',
        {},
        { policy: { allowPrivate: true, allow: [] }, timeoutMs: 300 },
      );
      expect(res.statusCode).toBeNull();
      expect(res.error).toBe('no answer within 300 ms');
      expect(res.durationMs).toBeGreaterThanOrEqual(250);
    } finally {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});
