import { Redis } from 'ioredis';
import { sql } from 'kysely';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey } from '../src/identity/api-keys.ts';
import { loadSecretBox } from '../src/identity/master-key.ts';
import { dashboardCredentials } from '../src/lifecycle/dashboard-credential.ts';
import { createHarness, PASSWORD, totpCodeAtStep, type Harness } from './support/identity.ts';
import { missingPart } from './support/strict.ts';

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

function reachable(url: string): Promise<boolean> {
  const u = new URL(url);
  return new Promise((resolve) => {
    const socket = net.connect(Number(u.port || 6379), u.hostname);
    socket.once('connect', () => {
      socket.end();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/**
 * Login limits an attacker cannot turn against users: a (account, address)
 * pair locks, an address spraying many accounts locks, and an account guessed
 * at from many addresses slows down exponentially for unfamiliar addresses
 * only, so its owner (the admin here) still signs in from where they did
 * before. The harness's own logins come from 127.0.0.1; attackers use others.
 */
const LIMITS = {
  pairPoints: 3,
  ipPoints: 8,
  accountPoints: 5,
  windowSeconds: 60,
  lockSeconds: 2,
  maxDelaySeconds: 4,
};

type Answer = { statusCode: number; headers: Record<string, unknown>; json<T>(): T };
const reason = (res: Answer) =>
  res.json<{ error: { details?: { reason?: string } } }>().error.details?.reason;
const retryAfter = (res: Answer) => Number(res.headers['retry-after']);
const sleep = (s: number) => new Promise((r) => setTimeout(r, s * 1000 + 300));

/** A TOTP code for a time step inside the accepted window that this user has not spent yet. */
async function freshCode(h: Harness, userId: string, secret: string): Promise<string> {
  const used = new Set(
    (await h.db.db.selectFrom('totp_used_steps').select('step').where('user_id', '=', userId).execute()).map(
      (r) => Number(r.step),
    ),
  );
  const now = Math.floor(Date.now() / 30_000);
  const step = [now, now + 1, now - 1].find((s) => !used.has(s));
  if (step === undefined) throw new Error('no unspent TOTP step in the window');
  return totpCodeAtStep(secret, step);
}

function suite(label: string, env: () => Promise<Record<string, string> | undefined>) {
  describe(`login brute-force protection (${label})`, () => {
    let h: Harness | undefined;
    beforeAll(async () => {
      const e = await env();
      if (e) h = await createHarness({ env: e, limits: LIMITS });
    });
    afterAll(() => h?.close());

    const attempt = (email: string, password: string, ip: string, extra: object = {}) =>
      h!.api.inject({
        method: 'POST',
        url: '/api/v1/auth/login',
        payload: { email, password, ...extra },
        remoteAddress: ip,
      });

    it('locks an (account, address) pair, not the account: another address signs in; the lock expires', async (ctx) => {
      if (!h) return ctx.skip();
      const email = h.b.member.email;
      for (let i = 0; i < LIMITS.pairPoints; i++)
        expect((await attempt(email, 'wrong password!!', '198.51.100.1')).statusCode).toBe(401);
      const locked = await attempt(email, PASSWORD, '198.51.100.1');
      expect(locked.statusCode).toBe(429);
      expect(retryAfter(locked)).toBeGreaterThan(0);
      expect(reason(locked)).toBe('account_address');
      const error = locked.json<{ error: { code: string; message: string } }>().error;
      expect(error.code).toBe('rate_limited');
      expect(error.message).toMatch(
        /too many login attempts at this account from this address; locked for \d+ s/,
      );
      if (h.config.redisUrl) {
        // The counts live in Redis, where every API process sees them; keys name no address or email.
        const redis = new Redis(h.config.redisUrl);
        const keys = await redis.keys(`aiqso-test-${h.db.name}:rl:login:pair*`);
        await redis.quit();
        expect(keys.length).toBeGreaterThan(0);
        expect(keys.join(' ')).not.toContain(email);
      }
      // The owner of the account, elsewhere, is not locked out.
      expect((await attempt(email, PASSWORD, '198.51.100.2')).statusCode).toBe(200);
      await sleep(retryAfter(locked));
      expect((await attempt(email, PASSWORD, '198.51.100.1')).statusCode).toBe(200);
    });

    it('limits one address across many accounts', async (ctx) => {
      if (!h) return ctx.skip();
      const statuses = [];
      for (let i = 0; i <= LIMITS.ipPoints; i++) {
        statuses.push((await attempt(`nobody${i}@nowhere.test`, 'whatever', '192.0.2.9')).statusCode);
      }
      expect(statuses).toEqual([...Array<number>(LIMITS.ipPoints).fill(401), 429]);
    });

    /** Wrong guesses, each from a fresh address, until one is refused (at most 30); returns the answers. */
    async function floodUntilRefused(email: string, net: string) {
      const answers = [];
      for (let i = 1; i <= 30; i++) {
        const res = await attempt(email, `guess number ${i}`, `${net}.${i}`);
        answers.push(res);
        if (res.statusCode !== 401) break;
      }
      return answers;
    }

    it('does not hard-lock the admin under a flood from many addresses: their familiar address passes', async (ctx) => {
      if (!h) return ctx.skip();
      const { email, id, totpSecret } = h.admin;
      // One guess per address, so no pair or address limit ever trips: the account's allowance (less
      // the harness's own two attempts), one guess for the first 1-s slot, then a refusal.
      const answers = await floodUntilRefused(email, '203.0.113');
      const waiting = answers[answers.length - 1]!;
      expect(waiting.statusCode).toBe(429);
      expect(answers.length - 1).toBeGreaterThan(2);
      expect(answers.length - 1).toBeLessThanOrEqual(LIMITS.accountPoints + 1);
      expect(reason(waiting)).toBe('account');
      expect(retryAfter(waiting)).toBe(1);
      // From a new address, even with the right password: a wait of seconds (a slot), not a lock.
      const elsewhere = await attempt(email, PASSWORD, '203.0.113.250');
      expect(elsewhere.statusCode).toBe(429);
      expect(retryAfter(elsewhere)).toBeLessThanOrEqual(LIMITS.maxDelaySeconds);
      // The admin, from the address they signed in from before: straight in, with password and TOTP.
      const familiar = await attempt(email, PASSWORD, '127.0.0.1', {
        totp: await freshCode(h, id, totpSecret),
      });
      expect(familiar.statusCode, JSON.stringify(familiar.json())).toBe(200);
    });

    it('spaces guesses from unfamiliar addresses exponentially; a sign-in makes its address familiar', async (ctx) => {
      if (!h) return ctx.skip();
      const email = h.a.owner.email;
      const answers = await floodUntilRefused(email, '203.0.114');
      const waiting = answers[answers.length - 1]!;
      expect(waiting.statusCode).toBe(429);
      // The first slot was 1 s; each guess let through doubles the gap: 2 s, then 4 s (the cap).
      await sleep(retryAfter(waiting));
      expect((await attempt(email, 'one more guess', '203.0.114.200')).statusCode).toBe(401);
      const second = await attempt(email, PASSWORD, '203.0.114.201');
      expect(second.statusCode).toBe(429);
      expect(retryAfter(second)).toBe(2);
      await sleep(retryAfter(second));
      expect((await attempt(email, PASSWORD, '203.0.114.201')).statusCode).toBe(200);
      const third = await attempt(email, 'guess again', '203.0.114.202');
      expect(third.statusCode).toBe(429);
      expect(retryAfter(third)).toBe(LIMITS.maxDelaySeconds);
      // 203.0.114.201 signed in, so it is familiar now: not slowed.
      expect((await attempt(email, PASSWORD, '203.0.114.201')).statusCode).toBe(200);
    });
  });
}

suite('in memory', () => Promise.resolve({}));
suite('Redis', async () => {
  const ok = await reachable(REDIS_URL);
  if (missingPart('Redis', ok, 'apt-get install redis-server, or set TEST_REDIS_URL')) return undefined;
  return { REDIS_URL };
});

describe('a dashboard vouches for its users’ addresses', () => {
  let h: Harness;
  let keyA: string;
  beforeAll(async () => {
    h = await createHarness({ limits: { pairPoints: 3, ipPoints: 50, accountPoints: 1000 } });
    const box = () => loadSecretBox({ configured: h.config.masterKey, dataDir: h.dataDir });
    keyA = await dashboardCredentials(h.db.db, box).get(h.a.id);
  });
  afterAll(() => h.close());

  const viaDashboard = (key: string, address: string | undefined, email: string, password = PASSWORD) =>
    h.api.inject({
      method: 'POST',
      url: '/api/v1/auth/login',
      payload: { email, password },
      headers: {
        'x-aiqso-dashboard-key': key,
        ...(address !== undefined ? { 'x-aiqso-client-address': address } : {}),
      },
    });

  it('counts the forwarded client address, so one client locks only itself, and audits that address', async () => {
    for (let i = 0; i < 3; i++)
      expect(
        (await viaDashboard(keyA, '198.51.100.7', h.a.owner.email, 'not the password!')).statusCode,
      ).toBe(401);
    const locked = await viaDashboard(keyA, '198.51.100.7', h.a.owner.email);
    expect(locked.statusCode).toBe(429);
    // The same dashboard (same peer address) signs the owner in for another client.
    expect((await viaDashboard(keyA, '198.51.100.8', h.a.owner.email)).statusCode).toBe(200);
    expect((await viaDashboard(keyA, '2001:db8::8', h.a.owner.email)).statusCode).toBe(200);
    const rows = await h.db.db
      .selectFrom('audit_log')
      .innerJoin('audit_addresses', 'audit_addresses.audit_id', 'audit_log.id')
      .select(sql<string>`host(audit_addresses.address)`.as('ip'))
      .where('action', '=', 'auth.login')
      .where('result', '=', 'denied')
      .execute();
    expect(rows.map((r) => r.ip)).toContain('198.51.100.7');
  });

  it("signs in only the dashboard's own tenant's users", async () => {
    const other = await viaDashboard(keyA, '198.51.100.9', h.b.owner.email);
    expect(other.statusCode).toBe(401);
    expect(other.json()).toMatchObject({ error: { message: 'email or password is wrong' } });
    expect((await viaDashboard(keyA, '198.51.100.9', h.admin.email)).statusCode).toBe(401);
  });

  it('believes a forwarded address only with a live dashboard key', async () => {
    const alone = await h.api.inject({
      method: 'POST',
      url: '/api/v1/auth/login',
      payload: { email: h.a.owner.email, password: PASSWORD },
      headers: { 'x-aiqso-client-address': '198.51.100.10' },
    });
    expect(alone.statusCode).toBe(400);
    expect(alone.json<{ error: { message: string } }>().error.message).toContain(
      'only from a tenant dashboard',
    );
    // A key its owner made, even named like the dashboard's, is not a dashboard's key.
    const imitation = await createApiKey(h.db.db, {
      tenantId: h.a.id,
      role: 'tenant_member',
      name: 'dashboard-api-key',
      createdBy: h.a.owner.id,
    });
    expect((await viaDashboard(imitation.key, '198.51.100.10', h.a.owner.email)).statusCode).toBe(401);
    expect((await viaDashboard('aiqso_made-up', '198.51.100.10', h.a.owner.email)).statusCode).toBe(401);
    const noAddress = await viaDashboard(keyA, undefined, h.a.owner.email);
    expect(noAddress.statusCode).toBe(400);
    expect((await viaDashboard(keyA, 'not-an-address', h.a.owner.email)).statusCode).toBe(400);
  });
});
