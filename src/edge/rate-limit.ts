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
  /** Seconds to wait when over budget, or 0 when the request may pass. */
  check(ip: string, tenantId: string | null): Promise<number>;
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
