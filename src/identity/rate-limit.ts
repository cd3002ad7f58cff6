import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import {
  RateLimiterMemory,
  RateLimiterRedis,
  RateLimiterRes,
  type RateLimiterAbstract,
} from 'rate-limiter-flexible';
import { DomainError } from '../core/errors.ts';

/**
 * Brute-force protection for login, TOTP and recovery codes that an attacker
 * cannot turn against the account's owner (OWASP Authentication Cheat Sheet):
 *
 * - per (account, address): `pairPoints` attempts per window, then that pair
 *   is locked for `lockSeconds`. Only the guessing client is locked out.
 * - per address, over all accounts: `ipPoints` attempts per window, then the
 *   address is locked (one client spraying many accounts).
 * - per account, over all addresses: past `accountPoints` attempts in a window
 *   (a guess from many addresses), an attempt from an address that has not
 *   signed in to the account before waits for a slot: the gap between slots
 *   doubles with each attempt let through (1 s, 2 s, 4 s … up to
 *   `maxDelaySeconds`), and a refused attempt is not counted. So the account
 *   is never hard-locked, guesses slow down exponentially, and an address the
 *   owner signed in from in the last `familiarSeconds` (a successful login
 *   marks it) is not slowed at all.
 *
 * Counts live in Redis when configured (every API process shares them),
 * memory otherwise. Keys carry a hash of the account, not the address itself.
 */
export interface AttemptLimits {
  pairPoints: number;
  ipPoints: number;
  accountPoints: number;
  windowSeconds: number;
  lockSeconds: number;
  maxDelaySeconds: number;
  familiarSeconds: number;
}

export const DEFAULT_LIMITS: AttemptLimits = {
  pairPoints: 10,
  ipPoints: 50,
  accountPoints: 100,
  windowSeconds: 15 * 60,
  lockSeconds: 15 * 60,
  maxDelaySeconds: 5 * 60,
  // Three weeks: the in-process store keeps each key with a Node timer, which cannot wait past 24.8 days.
  familiarSeconds: 21 * 24 * 3600,
};

export type AttemptKind = 'login' | 'totp' | 'recovery';

export interface AttemptLimiter {
  /** Count one attempt; throws `rate_limited` with Retry-After when it may not be made now. */
  attempt(kind: AttemptKind, account: string, ip: string): Promise<void>;
  /** After a success: forget this address's failures at the account; a login makes the address familiar. */
  succeeded(kind: AttemptKind, account: string, ip: string): Promise<void>;
}

/** Why an attempt was refused, in `details.reason` of the 429. */
export type RefusalReason = 'address' | 'account_address' | 'account';

const MESSAGES: Record<RefusalReason, (kind: AttemptKind, s: number) => string> = {
  address: (kind, s) =>
    `too many ${kind} attempts from this address; locked for ${s} s, try again after that`,
  account_address: (kind, s) =>
    `too many ${kind} attempts at this account from this address; locked for ${s} s, try again after that`,
  account: (kind, s) =>
    `too many ${kind} attempts at this account from many addresses; the next attempt from an address it was not used from is possible in ${s} s`,
};

export function createAttemptLimiter(
  options: { redis?: Redis; limits?: Partial<AttemptLimits>; namespace?: string } = {},
): AttemptLimiter {
  // The namespace separates platforms (or test runs) that share one Redis.
  const ns = options.namespace ?? 'aiqso';
  const limits = { ...DEFAULT_LIMITS, ...options.limits };
  const make = (keyPrefix: string, points: number, duration: number, block = 0): RateLimiterAbstract => {
    const base = { keyPrefix, points, duration, blockDuration: block };
    return options.redis
      ? new RateLimiterRedis({ ...base, storeClient: options.redis })
      : new RateLimiterMemory(base);
  };
  const { windowSeconds: window, lockSeconds: lock } = limits;
  const kinds: AttemptKind[] = ['login', 'totp', 'recovery'];
  const byKind = new Map(
    kinds.map((k) => [
      k,
      {
        ip: make(`${ns}:rl:${k}:ip`, limits.ipPoints, window, lock),
        pair: make(`${ns}:rl:${k}:pair`, limits.pairPoints, window, lock),
        account: make(`${ns}:rl:${k}:acct`, limits.accountPoints, window),
        // One point per slot; each slot's key lives as long as the delay it was taken with.
        slot: make(`${ns}:rl:${k}:slot`, 1, 1),
      },
    ]),
  );
  const familiar = make(`${ns}:rl:familiar`, 1, limits.familiarSeconds);
  const accountKey = (account: string) =>
    createHash('sha256').update(account.toLowerCase()).digest('base64url').slice(0, 32);

  const refuse = (kind: AttemptKind, reason: RefusalReason, ms: number) => {
    const retryAfterSeconds = Math.max(1, Math.ceil(ms / 1000));
    return new DomainError('rate_limited', MESSAGES[reason](kind, retryAfterSeconds), {
      details: { retryAfterSeconds, reason },
    });
  };
  const storeDown = (err: unknown) =>
    new DomainError('unavailable', 'the rate limiter store is not reachable', { cause: err });

  /** Consume a point of `limiter`; refuse with `reason` when it is spent. */
  async function take(limiter: RateLimiterAbstract, key: string, kind: AttemptKind, reason: RefusalReason) {
    try {
      await limiter.consume(key);
    } catch (err) {
      if (err instanceof RateLimiterRes) throw refuse(kind, reason, err.msBeforeNext);
      throw storeDown(err);
    }
  }

  /** The account-wide ceiling for an address the account was not used from. */
  async function spaced(kind: AttemptKind, account: string) {
    const { account: counter, slot } = byKind.get(kind)!;
    try {
      const seen = (await counter.get(account))?.consumedPoints ?? 0;
      const over = seen - limits.accountPoints;
      if (over >= 0) {
        const delay = Math.min(2 ** over, limits.maxDelaySeconds);
        // Atomic: of many attempts racing for the slot, one gets it.
        await slot.consume(account, 1, { customDuration: delay });
      }
      await counter.penalty(account);
    } catch (err) {
      if (err instanceof RateLimiterRes) throw refuse(kind, 'account', err.msBeforeNext);
      throw storeDown(err);
    }
  }

  return {
    async attempt(kind, account, ip) {
      const limiters = byKind.get(kind)!;
      const acct = accountKey(account);
      await take(limiters.ip, ip, kind, 'address');
      await take(limiters.pair, `${acct}|${ip}`, kind, 'account_address');
      const known = await familiar.get(`${acct}|${ip}`).catch((err: unknown) => {
        throw storeDown(err);
      });
      if (!known) await spaced(kind, acct);
    },
    async succeeded(kind, account, ip) {
      const acct = accountKey(account);
      await byKind.get(kind)!.pair.delete(`${acct}|${ip}`);
      if (kind === 'login') await familiar.set(`${acct}|${ip}`, 1, limits.familiarSeconds);
    },
  };
}
