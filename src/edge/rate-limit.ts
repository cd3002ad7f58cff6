import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { BlockList } from 'node:net';
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
  /**
   * Seconds to wait when over budget, or 0 when the request may pass (a promise only with Redis).
   * `holder` (the route) keeps the tenant's in-process tally between requests.
   */
  check(ip: string, tenantId: string | null, holder?: BudgetHolder): number | Promise<number>;
}

/** Every this many windows, the tallies of keys unused in the last full window are dropped. */
const SWEEP_WINDOWS = 10;
/** Past this many keys (a flood from many addresses), that happens at every new window. */
const MAX_KEYS = 100_000;

/** One key's requests in the current window. */
export interface BudgetTally {
  readonly key: string;
  window: number;
  count: number;
  /** Dropped from its budget (idle): a holder must look the key up again. */
  dropped: boolean;
}

/** What keeps a key's tally between requests: a route keeps its tenant's. */
export interface BudgetHolder {
  tenantBudget?: BudgetTally;
}

export interface MemoryBudget {
  /**
   * Count one request of `key`: 0 when it may pass, else the seconds until its budget refills.
   * With `holder`, the key's tally is kept there and found without a lookup next time.
   */
  take(key: string, holder?: BudgetHolder): number;
  /** How many keys have a tally. */
  readonly keys: number;
}

/**
 * In-process budgets: requests per key in fixed one-second windows, answered
 * synchronously. Each key keeps one small tally, reset in place when a new
 * window starts, so a busy edge allocates nothing per request or per window
 * (a tally for a key's first request only).
 * (A fresh map of counts every second had to grow again to as many entries as
 * there are tenants, and those tables were a quarter of what the edge
 * promoted to V8's old generation under load.) Keys unused for a window are
 * dropped every `SWEEP_WINDOWS` windows, or at every window past `MAX_KEYS`
 * keys, so memory stays bounded by the keys of the last two windows then.
 *
 * A holder keeps its key's tally (the edge's routes keep their tenant's):
 * looked up per request in a map of 10,000 tenants, it was most of the 0.9% of
 * the edge's CPU that the budgets' lookups took under load (cache misses, in
 * `perf`). A dropped tally is marked so, and its holders look the key up
 * again: every holder of a key counts into the one tally the map has for it.
 */
export function memoryBudget(points: number, clock: () => number = () => performance.now()): MemoryBudget {
  const tallies = new Map<string, BudgetTally>();
  let window = 0;
  let windowEnds = clock() + 1000;
  let sweepAt = SWEEP_WINDOWS;
  const sweep = () => {
    for (const [key, tally] of tallies) {
      if (tally.window >= window - 1) continue;
      tally.dropped = true;
      tallies.delete(key);
    }
  };
  const take = (key: string, holder?: BudgetHolder) => {
    const now = clock();
    if (now >= windowEnds) {
      window++;
      windowEnds = now + 1000;
      if (window >= sweepAt || tallies.size > MAX_KEYS) {
        sweep();
        sweepAt = window + SWEEP_WINDOWS;
      }
    }
    let tally = holder?.tenantBudget;
    if (tally === undefined || tally.dropped || tally.key !== key) {
      tally = tallies.get(key);
      if (!tally) tallies.set(key, (tally = { key, window, count: 0, dropped: false }));
      if (holder) holder.tenantBudget = tally;
    }
    if (tally.window !== window) {
      tally.window = window;
      tally.count = 0;
    }
    return ++tally.count > points ? Math.max(1, Math.ceil((windowEnds - now) / 1000)) : 0;
  };
  return {
    take,
    get keys() {
      return tallies.size;
    },
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

/**
 * The key a request's per-address budget is counted under. Platform-internal
 * callers (the tenants' dashboards calling the API) reach the edge from
 * `internal` addresses, all from the same one (loopback, through the host
 * gateway): counted by address, one attacker driving one dashboard would
 * starve every other dashboard's calls. So a request from an internal address
 * that presents a credential (a dashboard's own key, or a bearer token) is
 * counted under a hash of that credential instead, a budget of its own; one
 * without a credential shares the address's. The credential is not checked
 * here (the API does that), so a made-up one only earns a budget of 401s.
 */
export function budgetKey(req: IncomingMessage, ip: string, internal: BlockList | undefined): string {
  if (!internal || !internal.check(ip, ip.includes(':') ? 'ipv6' : 'ipv4')) return ip;
  const dashboard = req.headers['x-aiqso-dashboard-key'];
  const auth = req.headers.authorization;
  const credential =
    typeof dashboard === 'string' ? dashboard : auth?.startsWith('Bearer ') ? auth.slice(7) : undefined;
  if (!credential) return ip;
  return `internal:${createHash('sha256').update(credential).digest('base64url').slice(0, 22)}`;
}

/** `namespace` (the base domain) keeps two platforms sharing one Redis apart. */
export function createRateLimiter(limits: RateLimits, redis?: Redis, namespace = 'default'): EdgeRateLimiter {
  if (!redis) {
    const ip = limits.perIp > 0 ? memoryBudget(limits.perIp) : undefined;
    const tenant = limits.perTenant > 0 ? memoryBudget(limits.perTenant) : undefined;
    return {
      check(clientIp, tenantId, holder) {
        const wait = ip ? ip.take(clientIp) : 0;
        if (wait > 0 || !tenantId || !tenant) return wait;
        return tenant.take(tenantId, holder);
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
