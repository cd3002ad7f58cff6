import { Redis } from 'ioredis';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHarness, PASSWORD, type Harness } from './support/identity.ts';
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

// The harness's own logins come from 127.0.0.1 (6 of them); the tests use other addresses.
const LIMITS = { accountPoints: 3, ipPoints: 8, windowSeconds: 60, lockSeconds: 2 };

function suite(label: string, env: () => Promise<Record<string, string> | undefined>) {
  describe(`login brute-force protection (${label})`, () => {
    let h: Harness | undefined;
    beforeAll(async () => {
      const e = await env();
      if (e) h = await createHarness({ env: e, limits: LIMITS });
    });
    afterAll(() => h?.close());

    const attempt = (email: string, password: string, ip = '198.51.100.1') =>
      h!.api.inject({
        method: 'POST',
        url: '/api/v1/auth/login',
        payload: { email, password },
        remoteAddress: ip,
      });

    it('locks an account after repeated attempts with Retry-After and a clear message, and the lock expires', async (ctx) => {
      if (!h) return ctx.skip();
      const email = h.b.member.email;
      for (let i = 0; i < LIMITS.accountPoints; i++)
        expect((await attempt(email, 'wrong password!!')).statusCode).toBe(401);
      const locked = await attempt(email, PASSWORD);
      expect(locked.statusCode).toBe(429);
      expect(Number(locked.headers['retry-after'])).toBeGreaterThan(0);
      if (h.config.redisUrl) {
        // The count lives in Redis, where every API process sees it.
        const redis = new Redis(h.config.redisUrl);
        const keys = await redis.keys(`aiqso-test-${h.db.name}:rl:login:acct*`);
        await redis.quit();
        expect(keys).toContain(`aiqso-test-${h.db.name}:rl:login:acct:${email}`);
      }
      const error = locked.json<{ error: { code: string; message: string } }>().error;
      expect(error.code).toBe('rate_limited');
      expect(error.message).toMatch(/too many login attempts; locked for \d+ s/);
      // Another address does not unlock the account.
      expect((await attempt(email, PASSWORD, '198.51.100.2')).statusCode).toBe(429);
      await new Promise((r) => setTimeout(r, (Number(locked.headers['retry-after']) + 0.5) * 1000));
      expect((await attempt(email, PASSWORD)).statusCode).toBe(200);
    });

    it('limits one address across many accounts', async (ctx) => {
      if (!h) return ctx.skip();
      const statuses = [];
      for (let i = 0; i <= LIMITS.ipPoints; i++) {
        statuses.push((await attempt(`nobody${i}@nowhere.test`, 'whatever', '192.0.2.9')).statusCode);
      }
      expect(statuses).toEqual([...Array<number>(LIMITS.ipPoints).fill(401), 429]);
    });
  });
}

suite('in memory', () => Promise.resolve({}));
suite('Redis', async () => {
  const ok = await reachable(REDIS_URL);
  if (missingPart('Redis', ok, 'apt-get install redis-server, or set TEST_REDIS_URL')) return undefined;
  return { REDIS_URL };
});
