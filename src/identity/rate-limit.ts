import type { Redis } from 'ioredis';
import {
  RateLimiterMemory,
  RateLimiterRedis,
  RateLimiterRes,
  type RateLimiterAbstract,
} from 'rate-limiter-flexible';
import { DomainError } from '../core/errors.ts';

/**
 * Brute-force protection for login, TOTP and recovery codes: every attempt
 * costs a point per account and per source address; running out locks that
 * key for `lockSeconds`, after which it opens again on its own. A success
 * clears the account's count. Redis holds the counts when configured (so all
 * API processes share them), memory otherwise.
 */
export interface AttemptLimits {
  accountPoints: number;
  ipPoints: number;
  windowSeconds: number;
  lockSeconds: number;
}

export const DEFAULT_LIMITS: AttemptLimits = {
  accountPoints: 10,
  ipPoints: 50,
  windowSeconds: 15 * 60,
  lockSeconds: 15 * 60,
};

export type AttemptKind = 'login' | 'totp' | 'recovery';

export interface AttemptLimiter {
  /** Count one attempt; throws `rate_limited` with Retry-After when the account or address is locked. */
  attempt(kind: AttemptKind, account: string, ip: string): Promise<void>;
  /** Forget the account's failures after a success. */
  succeeded(kind: AttemptKind, account: string): Promise<void>;
}

export function createAttemptLimiter(
  options: { redis?: Redis; limits?: Partial<AttemptLimits>; namespace?: string } = {},
) {
  // The namespace separates platforms (or test runs) that share one Redis.
  const ns = options.namespace ?? 'aiqso';
  const limits = { ...DEFAULT_LIMITS, ...options.limits };
  const make = (keyPrefix: string, points: number): RateLimiterAbstract => {
    const base = { keyPrefix, points, duration: limits.windowSeconds, blockDuration: limits.lockSeconds };
    return options.redis
      ? new RateLimiterRedis({ ...base, storeClient: options.redis })
      : new RateLimiterMemory(base);
  };
  const kinds: AttemptKind[] = ['login', 'totp', 'recovery'];
  const byKind = new Map(
    kinds.map((k) => [
      k,
      {
        account: make(`${ns}:rl:${k}:acct`, limits.accountPoints),
        ip: make(`${ns}:rl:${k}:ip`, limits.ipPoints),
      },
    ]),
  );

  const limiter: AttemptLimiter = {
    async attempt(kind, account, ip) {
      const pair = byKind.get(kind)!;
      try {
        await pair.ip.consume(ip);
        await pair.account.consume(account.toLowerCase());
      } catch (err) {
        if (!(err instanceof RateLimiterRes)) {
          throw new DomainError('unavailable', 'the rate limiter store is not reachable', { cause: err });
        }
        const retryAfterSeconds = Math.max(1, Math.ceil(err.msBeforeNext / 1000));
        throw new DomainError(
          'rate_limited',
          `too many ${kind} attempts; locked for ${retryAfterSeconds} s, try again after that`,
          { details: { retryAfterSeconds } },
        );
      }
    },
    async succeeded(kind, account) {
      await byKind.get(kind)!.account.delete(account.toLowerCase());
    },
  };
  return limiter;
}
