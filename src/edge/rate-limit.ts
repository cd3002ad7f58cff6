import type { Redis } from 'ioredis';
import {
  RateLimiterMemory,
  RateLimiterRedis,
  RateLimiterRes,
  type RateLimiterAbstract,
} from 'rate-limiter-flexible';

/**
 * Per client IP and per tenant request budgets (requests per second, with
 * one second of burst). With Redis every edge instance shares the budgets;
 * without it each instance keeps its own. A Redis outage falls back to the
 * in-memory limiter rather than failing requests.
 */
export interface RateLimits {
  perIp: number;
  perTenant: number;
}

export interface EdgeRateLimiter {
  /** Seconds to wait when over budget, or 0 when the request may pass (a promise only with Redis). */
  check(ip: string, tenantId: string | null): number | Promise<number>;
}

/**
 * In-process budgets: requests per key in fixed one-second windows, answered
 * synchronously. A window is a fresh map of plain counts, so counting costs
 * no object per key or request (the edge's young generation, and with it its
 * GC pauses, stays small), and a key unseen for a second is simply gone.
 */
export function memoryBudget(points: number): (key: string) => number {
  let counts = new Map<string, number>();
  let windowEnds = performance.now() + 1000;
  return (key) => {
    const now = performance.now();
    if (now >= windowEnds) {
      counts = new Map();
      windowEnds = now + 1000;
    }
    const n = (counts.get(key) ?? 0) + 1;
    counts.set(key, n);
    return n > points ? Math.max(1, Math.ceil((windowEnds - now) / 1000)) : 0;
  };
}

function limiter(prefix: string, points: number, redis: Redis | undefined): RateLimiterAbstract {
  // Memory and Redis share the prefix; Redis keys live under `aiqso:edge:<namespace>:`.
  const memory = new RateLimiterMemory({ keyPrefix: prefix, points, duration: 1 });
  if (!redis) return memory;
  return new RateLimiterRedis({
    storeClient: redis,
    keyPrefix: `aiqso:edge:${prefix}`,
    points,
    duration: 1,
    insuranceLimiter: memory,
  });
}

async function consume(l: RateLimiterAbstract | undefined, key: string): Promise<number> {
  if (!l) return 0;
  try {
    await l.consume(key);
    return 0;
  } catch (res) {
    if (res instanceof RateLimiterRes) return Math.max(1, Math.ceil(res.msBeforeNext / 1000));
    throw res;
  }
}

/** `namespace` (the base domain) keeps two platforms sharing one Redis apart. */
export function createRateLimiter(limits: RateLimits, redis?: Redis, namespace = 'default'): EdgeRateLimiter {
  if (!redis) {
    const ip = limits.perIp > 0 ? memoryBudget(limits.perIp) : undefined;
    const tenant = limits.perTenant > 0 ? memoryBudget(limits.perTenant) : undefined;
    return {
      check(clientIp, tenantId) {
        const wait = ip ? ip(clientIp) : 0;
        if (wait > 0 || !tenantId || !tenant) return wait;
        return tenant(tenantId);
      },
    };
  }
  const ip = limits.perIp > 0 ? limiter(`${namespace}:ip`, limits.perIp, redis) : undefined;
  const tenant = limits.perTenant > 0 ? limiter(`${namespace}:tenant`, limits.perTenant, redis) : undefined;
  return {
    async check(clientIp, tenantId) {
      const wait = await consume(ip, clientIp);
      if (wait > 0 || !tenantId) return wait;
      return consume(tenant, tenantId);
    },
  };
}
