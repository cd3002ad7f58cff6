import { createHmac } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { verifySignature } from '../src/core/events.ts';
import { runCli } from './support/cli.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import { driverCases, pollUntil, startLivePlatform } from './support/live-platform.ts';

/**
 * Event webhooks on a real `aiqso up` (process driver): receivers on
 * 127.0.0.1 (allowed by AIQSO_WEBHOOKS_ALLOW_PRIVATE=1) get every event of a
 * signup → subscribe → incident → cancel story exactly once, in order per
 * tenant, each signed as docs/webhooks.md says; a receiver that fails 5 times
 * then recovers gets every event too; a tenant's own endpoint gets only its
 * tenant's events; by default private destinations are refused (exit 2).
 */

interface Received {
  body: string;
  signature: string;
  json: { id: string; type: string; tenant: string | null; data: Record<string, unknown> };
}

/** A receiver that records what it accepted; `failFirst` requests answer 500 first. */
async function receiver(failFirst = 0) {
  const accepted: Received[] = [];
  let refused = 0;
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      if (refused < failFirst) {
        refused++;
        res.writeHead(500).end('not yet');
        return;
      }
      accepted.push({
        body,
        signature: String(req.headers['aiqso-signature']),
        json: JSON.parse(body) as Received['json'],
      });
      res.writeHead(200).end('ok');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
  return {
    url,
    accepted,
    refused: () => refused,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** The documented check: HMAC-SHA256 of "t.body" with the secret, hex, as v1. */
function documentedCheck(secret: string, r: Received): boolean {
  const parts = Object.fromEntries(r.signature.split(',').map((p) => p.split('=') as [string, string]));
  const expected = createHmac('sha256', secret).update(`${parts.t}.${r.body}`).digest('hex');
  return parts.v1 === expected && Math.abs(Date.now() / 1000 - Number(parts.t)) < 300;
}

let testDb: TestDatabase;
beforeEach(async () => {
  testDb = await createTestDatabase();
});
afterEach(async () => {
  await testDb.drop();
});

const PASSWORD = 'correct horse battery staple';
const process_ = driverCases().find((d) => d.name === 'process')!;

describe('event webhooks', { timeout: 600_000 }, () => {
  it('delivers a whole tenant story once each, in order, signed; retries a failing receiver; keeps tenants apart', async () => {
    const steady = await receiver();
    const flaky = await receiver(5);
    const own = await receiver();
    const platform = await startLivePlatform({
      databaseUrl: testDb.url,
      driver: process_,
      env: {
        AIQSO_WEBHOOKS_ALLOW_PRIVATE: '1',
        AIQSO_WEBHOOKS_BACKOFF_SECONDS: '0.2',
        AIQSO_HEALTH_INTERVAL_SECONDS: '2',
        AIQSO_HEALTH_TIMEOUT_SECONDS: '1',
        AIQSO_HEALTH_FAILURES: '1',
      },
    });
    const { db } = testDb;
    const base = `http://127.0.0.1:${platform.port}`;
    try {
      // Refused by default, whatever the platform allows: the CLI reads its own configuration.
      const strict = { ...platform.env, AIQSO_WEBHOOKS_ALLOW_PRIVATE: '0' };
      for (const forged of [
        'http://169.254.169.254/latest/meta-data',
        'http://10.1.2.3/hook',
        'http://[::1]:9/hook',
      ]) {
        const refused = await runCli(['webhooks', 'add', forged, '--events', '*'], strict);
        expect(refused.code, refused.stderr).toBe(2);
        expect(refused.stderr).toMatch(
          /private, loopback or link-local address; set AIQSO_WEBHOOKS_ALLOW_PRIVATE=1/,
        );
      }
      const unknown = await runCli(
        ['webhooks', 'add', steady.url, '--events', 'tenant.exploded'],
        platform.env,
      );
      expect(unknown.code).toBe(2);
      expect(unknown.stderr).toContain('"tenant.exploded" is not an event');

      const add = async (url: string, events: string) => {
        const res = await runCli(['webhooks', 'add', url, '--events', events, '--json'], platform.env);
        expect(res.code, res.stderr).toBe(0);
        return JSON.parse(res.stdout) as { endpoint: { id: string }; secret: string };
      };
      const steadyHook = await add(steady.url, '*');
      const flakyHook = await add(flaky.url, 'tenant.*,service.*,incident.*');

      const signup = async (slug: string) => {
        const res = await fetch(`${base}/api/v1/signup`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({
            company: `${slug} Co`,
            slug,
            email: `owner@${slug}.test`,
            password: PASSWORD,
            plan: 'business',
          }),
        });
        expect(res.status).toBe(201);
        const { checkoutUrl } = (await res.json()) as { checkoutUrl: string };
        expect((await fetch(`${checkoutUrl}/pay`, { method: 'POST', redirect: 'manual' })).status).toBe(303);
        expect((await platform.until(slug, (p) => p.status === 200, 180_000)).status).toBe(200);
        const login = await fetch(`${base}/api/v1/auth/login`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ email: `owner@${slug}.test`, password: PASSWORD }),
        });
        return ((await login.json()) as { accessToken: string }).accessToken;
      };
      const tokenA = await signup('hooka');
      const auth = { authorization: `Bearer ${tokenA}`, 'content-type': 'application/json' };
      // The tenant's own endpoint; a private one is refused through the API too (400), not only the CLI.
      const ownRes = await fetch(`${base}/api/v1/tenants/hooka/webhooks`, {
        method: 'POST',
        headers: auth,
        body: JSON.stringify({ url: own.url, events: ['*'] }),
      });
      expect(ownRes.status).toBe(201);
      const ownHook = (await ownRes.json()) as { endpoint: { id: string }; secret: string };
      await signup('hookb');

      const subscribed = await fetch(`${base}/api/v1/tenants/hooka/services`, {
        method: 'POST',
        headers: auth,
        body: JSON.stringify({ service: 'notes' }),
      });
      expect(subscribed.status).toBe(202);
      const service = () =>
        db.selectFrom('tenant_services').select(['id', 'status', 'container_name']).executeTakeFirstOrThrow();
      await pollUntil(service, (s) => s.status === 'active', 180_000);
      const svc = await service();
      const check = () =>
        db.selectFrom('health_checks').selectAll().where('target_id', '=', svc.id).executeTakeFirst();
      await pollUntil(check, (c) => c?.state === 'healthy' && c.rung === 0, 60_000);
      const compute = await process_.open(platform.dataDir, db);
      expect(
        (await compute.exec(svc.container_name!, ['sh', '-c', 'echo 500 > "$HOME/health-fault"'])).exitCode,
      ).toBe(0);
      const incidents = () => db.selectFrom('incidents').selectAll().execute();
      await pollUntil(incidents, (xs) => xs.length === 1 && xs[0]!.resolved_at !== null, 180_000);
      await compute.close();

      const cancelled = await runCli(['tenants', 'cancel', 'hooka'], platform.env);
      expect(cancelled.code, cancelled.stderr).toBe(0);

      const tenants = await db.selectFrom('tenants').select(['id', 'slug']).execute();
      const a = tenants.find((t) => t.slug === 'hooka')!.id;
      const b = tenants.find((t) => t.slug === 'hookb')!.id;
      const storyA = [
        'tenant.created',
        'tenant.activated',
        'service.subscribed',
        'service.ready',
        'incident.opened',
        'incident.resolved',
        'tenant.cancelled',
      ];
      const storyB = ['tenant.created', 'tenant.activated'];
      const typesOf = (r: { accepted: Received[] }, tenant: string) =>
        r.accepted.filter((x) => x.json.tenant === tenant).map((x) => x.json.type);
      await pollUntil(
        () => Promise.resolve([typesOf(steady, a).length, typesOf(flaky, a).length]),
        ([s, f]) => s! >= storyA.length && f! >= storyA.length,
        120_000,
      );
      // Let anything doubled or late arrive before counting.
      await new Promise((r) => setTimeout(r, 3000));

      const emitted = await db
        .selectFrom('webhook_events')
        .select(['id', 'type', 'tenant_id'])
        .orderBy('seq')
        .execute();
      for (const r of [steady, flaky]) {
        // Every event once (by id), in the order the platform emitted them, per tenant.
        expect(typesOf(r, a)).toEqual(storyA);
        expect(typesOf(r, b)).toEqual(storyB);
        const ids = r.accepted.map((x) => x.json.id);
        expect(new Set(ids).size).toBe(ids.length);
        for (const tenant of [a, b])
          expect(r.accepted.filter((x) => x.json.tenant === tenant).map((x) => x.json.id)).toEqual(
            emitted.filter((e) => e.tenant_id === tenant).map((e) => e.id),
          );
      }
      expect(flaky.refused()).toBe(5);
      for (const [r, secret] of [
        [steady, steadyHook.secret],
        [flaky, flakyHook.secret],
        [own, ownHook.secret],
      ] as const) {
        for (const x of r.accepted) {
          expect(verifySignature(secret, x.body, x.signature, Math.floor(Date.now() / 1000))).toBe(true);
          expect(documentedCheck(secret, x)).toBe(true);
          // Another endpoint's secret does not verify it.
          expect(verifySignature(`${secret}x`, x.body, x.signature, Math.floor(Date.now() / 1000))).toBe(
            false,
          );
        }
      }
      // The tenant's own endpoint: its tenant's events after it was registered, nobody else's.
      expect(own.accepted.every((x) => x.json.tenant === a)).toBe(true);
      expect(own.accepted.map((x) => x.json.type)).toEqual(storyA.slice(2));

      // Recorded: the flaky receiver's first delivery took 6 attempts, each answer kept.
      const listed = await runCli(
        ['webhooks', 'deliveries', '--endpoint', flakyHook.endpoint.id, '--limit', '1000', '--json'],
        platform.env,
      );
      expect(listed.code, listed.stderr).toBe(0);
      const deliveries = (
        JSON.parse(listed.stdout) as {
          deliveries: {
            id: string;
            event: string;
            type: string;
            tenant: string | null;
            status: string;
            attempts: number;
            history: { status: number | null; excerpt: string | null }[];
          }[];
        }
      ).deliveries;
      expect(deliveries.every((d) => d.status === 'delivered')).toBe(true);
      // Every refused attempt is recorded, with the receiver's answer.
      const refusals = deliveries.flatMap((d) => d.history.filter((h) => h.status === 500));
      expect(refusals.length, JSON.stringify(deliveries, null, 1)).toBe(5);
      expect(refusals.every((h) => h.excerpt === 'not yet')).toBe(true);
      // A's first delivery waited for its retries (B's lane, meanwhile, was not held back by them).
      const first = deliveries.find((d) => d.type === 'tenant.created' && d.tenant === a)!;
      expect(first.history.length).toBeGreaterThan(1);
      expect(first.history.slice(0, -1).every((h) => h.status === 500)).toBe(true);
      expect(first.history.at(-1)!.status).toBe(200);
      expect(first.attempts).toBe(first.history.length);

      // Redelivered by hand: the same event (same id) once more.
      const again = await runCli(['webhooks', 'redeliver', first.id], platform.env);
      expect(again.code, again.stderr).toBe(0);
      const before = flaky.accepted.length;
      await pollUntil(
        () => Promise.resolve(flaky.accepted.length),
        (n) => n === before + 1,
        30_000,
      );
      expect(flaky.accepted.at(-1)!.json.id).toBe(first.event);
      expect((await runCli(['webhooks', 'redeliver', '999999999'], platform.env)).code).toBe(3);
    } finally {
      await platform.stop(db);
      await Promise.all([steady.close(), flaky.close(), own.close()]);
    }
  });
});
