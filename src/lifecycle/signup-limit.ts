import type { Redis } from 'ioredis';
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import { DomainError } from '../core/errors.ts';

/**
 * How many new tenants one client address may create per hour. Each signup
 * that would create a tenant costs a point (a returning customer resuming an
 * unpaid signup costs nothing); Redis holds the counts when configured, so
 * every API process shares them.
 */
export interface SignupLimiter {
  /** Count one signup from `ip`; throws `rate_limited` with Retry-After when the address has used its hour. */
  admit(ip: string): Promise<void>;
}

export function createSignupLimiter(options: {
  perHour: number;
  redis?: Redis;
  namespace?: string;
}): SignupLimiter | undefined {
  if (options.perHour === 0) return undefined;
  const base = {
    keyPrefix: `${options.namespace ?? 'aiqso'}:rl:signup:ip`,
    points: options.perHour,
    duration: 3600,
  };
  const limiter = options.redis
    ? new RateLimiterRedis({ ...base, storeClient: options.redis })
    : new RateLimiterMemory(base);
  return {
    async admit(ip) {
      try {
        await limiter.consume(ip);
      } catch (err) {
        if (!(err instanceof RateLimiterRes)) {
          throw new DomainError('unavailable', 'the rate limiter store is not reachable', { cause: err });
        }
        const retryAfterSeconds = Math.max(1, Math.ceil(err.msBeforeNext / 1000));
        throw new DomainError(
          'rate_limited',
          `too many signups from this address (${options.perHour} an hour); try again in ${Math.ceil(retryAfterSeconds / 60)} min`,
          { details: { retryAfterSeconds } },
        );
      }
    },
  };
}
