import { createHash, randomBytes } from 'node:crypto';
import { Secret, TOTP } from 'otpauth';
import { DomainError, conflict } from '../core/errors.ts';
import type { Database } from '../db/database.ts';
import type { SecretBox } from './secrets.ts';

/**
 * TOTP second factor (RFC 6238: SHA-1, 6 digits, 30 s, ±1 step). A code is
 * accepted at most once: the accepted time step is inserted into
 * `totp_used_steps`, whose primary key lets exactly one of any number of
 * concurrent submissions win. Recovery codes are random, stored as SHA-256
 * and spent by one conditional UPDATE.
 */
const PERIOD = 30;
const WINDOW = 1;
export const RECOVERY_CODE_COUNT = 10;
const context = (userId: string) => `user_totp:${userId}`;

export interface TotpDeps {
  db: Database;
  box: SecretBox;
  issuer: string;
}

function totpFor(secretBase32: string, label: string, issuer: string): TOTP {
  return new TOTP({
    issuer,
    label,
    algorithm: 'SHA1',
    digits: 6,
    period: PERIOD,
    secret: Secret.fromBase32(secretBase32),
  });
}

export async function totpEnabled(db: Database, userId: string): Promise<boolean> {
  const row = await db
    .selectFrom('user_totp')
    .select('enabled_at')
    .where('user_id', '=', userId)
    .executeTakeFirst();
  return Boolean(row?.enabled_at);
}

/** Start (or restart) enrolment: a fresh secret, not yet enabled. */
export async function beginEnrolment(deps: TotpDeps, user: { id: string; email: string }) {
  if (await totpEnabled(deps.db, user.id)) throw conflict('two-factor authentication is already enabled');
  const secret = new Secret({ size: 20 }).base32;
  const sealed = deps.box.seal(secret, context(user.id));
  await deps.db
    .insertInto('user_totp')
    .values({ user_id: user.id, secret_enc: sealed })
    .onConflict((oc) => oc.column('user_id').doUpdateSet({ secret_enc: sealed, enabled_at: null }))
    .execute();
  return { secret, otpauthUrl: totpFor(secret, user.email, deps.issuer).toString() };
}

/** Accept `code` for `userId` once; false when wrong, expired or already used. */
export async function acceptTotp(deps: TotpDeps, userId: string, code: string, requireEnabled = true) {
  const row = await deps.db
    .selectFrom('user_totp')
    .selectAll()
    .where('user_id', '=', userId)
    .executeTakeFirst();
  if (!row || (requireEnabled && !row.enabled_at)) return false;
  if (!/^\d{6}$/.test(code)) return false;
  const secret = deps.box.open(row.secret_enc, context(userId));
  const now = Date.now();
  const delta = TOTP.validate({
    token: code,
    secret: Secret.fromBase32(secret),
    period: PERIOD,
    window: WINDOW,
    timestamp: now,
  });
  if (delta === null) return false;
  const step = TOTP.counter({ period: PERIOD, timestamp: now }) + delta;
  const won = await deps.db
    .insertInto('totp_used_steps')
    .values({ user_id: userId, step })
    .onConflict((oc) => oc.columns(['user_id', 'step']).doNothing())
    .returning('step')
    .executeTakeFirst();
  return won !== undefined;
}

/** Finish enrolment with a first valid code; returns the recovery codes, shown this once. */
export async function confirmEnrolment(deps: TotpDeps, userId: string, code: string): Promise<string[]> {
  if (await totpEnabled(deps.db, userId)) throw conflict('two-factor authentication is already enabled');
  if (!(await acceptTotp(deps, userId, code, false))) {
    throw new DomainError('unauthenticated', 'the code is wrong, expired or already used');
  }
  const codes = Array.from({ length: RECOVERY_CODE_COUNT }, newRecoveryCode);
  await deps.db.transaction().execute(async (trx) => {
    await trx
      .updateTable('user_totp')
      .set({ enabled_at: new Date() })
      .where('user_id', '=', userId)
      .execute();
    await trx.deleteFrom('recovery_codes').where('user_id', '=', userId).execute();
    await trx
      .insertInto('recovery_codes')
      .values(codes.map((c) => ({ user_id: userId, code_hash: recoveryHash(userId, c) })))
      .execute();
  });
  return codes;
}

function newRecoveryCode(): string {
  // 80 random bits in Crockford-ish base32, grouped for reading aloud.
  const alphabet = '0123456789abcdefghjkmnpqrstvwxyz';
  const bytes = randomBytes(16);
  const chars = [...bytes].map((b) => alphabet[b % 32]).join('');
  return chars.match(/.{4}/g)!.join('-');
}

export function recoveryHash(userId: string, code: string): string {
  const normalised = code.toLowerCase().replace(/[^0-9a-z]/g, '');
  return createHash('sha256').update(`${userId}:${normalised}`).digest('hex');
}

/** Spend one recovery code; false when unknown or already used. */
export async function useRecoveryCode(db: Database, userId: string, code: string): Promise<boolean> {
  const spent = await db
    .updateTable('recovery_codes')
    .set({ used_at: new Date() })
    .where('user_id', '=', userId)
    .where('code_hash', '=', recoveryHash(userId, code))
    .where('used_at', 'is', null)
    .returning('code_hash')
    .executeTakeFirst();
  return spent !== undefined;
}

/** Forget a user's TOTP secret and recovery codes in one transaction; false when none were enrolled. */
async function removeTotp(db: Database, userId: string): Promise<boolean> {
  return db.transaction().execute(async (trx) => {
    const removed = await trx
      .deleteFrom('user_totp')
      .where('user_id', '=', userId)
      .returning('enabled_at')
      .executeTakeFirst();
    await trx.deleteFrom('recovery_codes').where('user_id', '=', userId).execute();
    return Boolean(removed?.enabled_at);
  });
}

/**
 * A user turns their own (optional) second factor off, proving they still hold
 * it with a current code or an unused recovery code. Either is spent like at
 * login, so a code seen once cannot be replayed here.
 */
export async function disableTotp(
  deps: TotpDeps,
  userId: string,
  proof: { code?: string; recoveryCode?: string },
): Promise<void> {
  if (!(await totpEnabled(deps.db, userId))) throw conflict('two-factor authentication is not enabled');
  const accepted = proof.code
    ? await acceptTotp(deps, userId, proof.code)
    : proof.recoveryCode
      ? await useRecoveryCode(deps.db, userId, proof.recoveryCode)
      : undefined;
  if (accepted === undefined) {
    throw new DomainError('bad_request', 'send the current code (code) or a recovery code (recoveryCode)', {
      details: { field: 'code' },
    });
  }
  if (!accepted) throw new DomainError('unauthenticated', 'the code is wrong, expired or already used');
  await removeTotp(deps.db, userId);
}

/**
 * An admin's reset of someone else's second factor (a lost phone): the
 * secret and recovery codes go, so the user enrols again — a platform admin
 * before their next login, as for any admin without TOTP. Returns whether
 * anything was enrolled.
 */
export async function resetTotp(db: Database, userId: string): Promise<boolean> {
  return removeTotp(db, userId);
}

/** Whether the user's second factor is on, since when, and how many unused recovery codes are left. */
export async function totpStatus(db: Database, userId: string) {
  const row = await db
    .selectFrom('user_totp')
    .select('enabled_at')
    .where('user_id', '=', userId)
    .executeTakeFirst();
  if (!row?.enabled_at) return { enabled: false, enabledAt: null, recoveryCodesLeft: 0 };
  const left = await db
    .selectFrom('recovery_codes')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .where('user_id', '=', userId)
    .where('used_at', 'is', null)
    .executeTakeFirstOrThrow();
  return { enabled: true, enabledAt: row.enabled_at.toISOString(), recoveryCodesLeft: Number(left.n) };
}
