import { createHash, randomBytes } from 'node:crypto';
import { DomainError } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import type { Database } from '../db/database.ts';
import type { Role } from '../core/identity.ts';
import { checkPassword, dummyHash, hashPassword, normaliseEmail, verifyPassword } from './passwords.ts';
import type { AttemptLimiter } from './rate-limit.ts';
import type { SecretBox } from './secrets.ts';
import type { TokenIssuer } from './tokens.ts';
import { acceptTotp, totpEnabled, useRecoveryCode } from './totp.ts';

/**
 * Logins and sessions. A session is a refresh token (stored as SHA-256) in a
 * rotation family: using it revokes it and issues the next; presenting a
 * revoked one means it was stolen or replayed, and revokes the whole family.
 * Access tokens name their session, so logout takes effect at once.
 */
export const REFRESH_TTL_SECONDS = 30 * 24 * 3600;
const REFRESH_PREFIX = 'aiqso_rt_';

export interface SessionDeps {
  db: Database;
  tokens: TokenIssuer;
  box: () => Promise<SecretBox>;
  limiter: AttemptLimiter;
  totpIssuer: string;
}

export interface LoginInput {
  email: string;
  password: string;
  totp?: string;
  recoveryCode?: string;
}

export interface Tokens {
  accessToken: string;
  tokenType: 'Bearer';
  expiresIn: number;
  refreshToken: string;
  user: { id: string; email: string; role: Role; tenantId: string | null };
}

export interface LoginOutcome {
  userId?: string;
  tenantId?: string | null;
}

const hashToken = (t: string) => createHash('sha256').update(t).digest('hex');
const wrong = () => new DomainError('unauthenticated', 'email or password is wrong');

/**
 * Where a login comes from: the client's address (for the attempt limits),
 * and, when a tenant's dashboard forwarded it, that tenant: only its users
 * may sign in there.
 */
export interface LoginSource {
  ip: string;
  tenantId?: string;
}

export async function login(
  deps: SessionDeps,
  input: LoginInput,
  source: LoginSource,
  outcome: LoginOutcome = {},
) {
  const { ip } = source;
  const email = normaliseEmail(input.email);
  await deps.limiter.attempt('login', email, ip);
  const user = await deps.db.selectFrom('users').selectAll().where('email', '=', email).executeTakeFirst();
  const ok = await verifyPassword(user?.password_hash ?? (await dummyHash()), input.password);
  if (!user || !user.password_hash || !ok) throw wrong();
  // Another tenant's user (or an admin) at a tenant's dashboard: the same answer as a wrong password.
  if (source.tenantId !== undefined && user.tenant_id !== source.tenantId) throw wrong();
  outcome.userId = user.id;
  outcome.tenantId = user.tenant_id;
  const claims = { sub: user.id, role: user.role, tid: user.tenant_id };
  const hasTotp = await totpEnabled(deps.db, user.id);
  if (!hasTotp && user.role === 'platform_admin') {
    const enrol = await deps.tokens.sign('totp_enrol', claims);
    throw new DomainError(
      'forbidden',
      'platform admins must enrol two-factor authentication before logging in: POST /api/v1/auth/totp/enrol with the enrolmentToken as bearer, then /api/v1/auth/totp/confirm',
      { details: { reason: 'totp_enrolment_required', enrolmentToken: enrol.token } },
    );
  }
  if (hasTotp && !input.totp && !input.recoveryCode) {
    // The password was right: the token lets the second step come without it.
    const pending = await deps.tokens.sign('totp_pending', claims);
    throw new DomainError('unauthenticated', 'a two-factor code is required (totp or recoveryCode)', {
      details: { reason: 'totp_required', secondFactorToken: pending.token },
    });
  }
  if (hasTotp) await secondFactor(deps, user.id, email, input, ip);
  await deps.limiter.succeeded('login', email, ip);
  return issueSession(deps, { ...claims, email: user.email }, newId('session'));
}

/**
 * The second step of a login: the token a password login answered with
 * (`totp_pending`), or a platform admin's enrolment token once enrolment is
 * confirmed, and a TOTP or recovery code.
 */
export async function loginSecondFactor(
  deps: SessionDeps,
  input: { token: string; totp?: string; recoveryCode?: string },
  source: LoginSource,
  outcome: LoginOutcome = {},
): Promise<Tokens> {
  let claims;
  try {
    claims = await deps.tokens.verify('totp_pending', input.token);
  } catch {
    try {
      claims = await deps.tokens.verify('totp_enrol', input.token);
    } catch {
      throw new DomainError('unauthenticated', 'the sign-in has expired; start again with the password');
    }
  }
  const user = await deps.db.selectFrom('users').selectAll().where('id', '=', claims.sub).executeTakeFirst();
  if (!user || user.role !== claims.role || user.tenant_id !== claims.tid) {
    throw new DomainError('unauthenticated', 'the sign-in has expired; start again with the password');
  }
  if (source.tenantId !== undefined && user.tenant_id !== source.tenantId) throw wrong();
  outcome.userId = user.id;
  outcome.tenantId = user.tenant_id;
  if (!(await totpEnabled(deps.db, user.id))) {
    throw new DomainError('forbidden', 'two-factor authentication is not set up for this account', {
      details: { reason: 'totp_enrolment_required' },
    });
  }
  if (!input.totp && !input.recoveryCode) {
    throw new DomainError('bad_request', 'a two-factor code is required (totp or recoveryCode)');
  }
  await secondFactor(deps, user.id, user.email, input, source.ip);
  return issueSession(
    deps,
    { sub: user.id, role: user.role, tid: user.tenant_id, email: user.email },
    newId('session'),
  );
}

async function secondFactor(
  deps: SessionDeps,
  userId: string,
  email: string,
  input: Pick<LoginInput, 'totp' | 'recoveryCode'>,
  ip: string,
) {
  if (input.totp) {
    await deps.limiter.attempt('totp', email, ip);
    if (
      !(await acceptTotp({ db: deps.db, box: await deps.box(), issuer: deps.totpIssuer }, userId, input.totp))
    ) {
      throw new DomainError('unauthenticated', 'the two-factor code is wrong, expired or already used');
    }
    await deps.limiter.succeeded('totp', email, ip);
    return;
  }
  if (input.recoveryCode) {
    await deps.limiter.attempt('recovery', email, ip);
    if (!(await useRecoveryCode(deps.db, userId, input.recoveryCode))) {
      throw new DomainError('unauthenticated', 'the recovery code is wrong or already used');
    }
    await deps.limiter.succeeded('recovery', email, ip);
    return;
  }
  throw new DomainError('unauthenticated', 'a two-factor code is required (totp or recoveryCode)', {
    details: { reason: 'totp_required' },
  });
}

async function issueSession(
  deps: SessionDeps,
  user: { sub: string; role: Role; tid: string | null; email: string },
  family: string,
): Promise<Tokens> {
  const id = newId('session');
  const refreshToken = REFRESH_PREFIX + randomBytes(32).toString('base64url');
  await deps.db
    .insertInto('sessions')
    .values({
      id,
      user_id: user.sub,
      family,
      token_hash: hashToken(refreshToken),
      expires_at: new Date(Date.now() + REFRESH_TTL_SECONDS * 1000),
    })
    .execute();
  const access = await deps.tokens.sign('access', { sub: user.sub, role: user.role, tid: user.tid, sid: id });
  return {
    accessToken: access.token,
    tokenType: 'Bearer',
    expiresIn: access.expiresIn,
    refreshToken,
    user: { id: user.sub, email: user.email, role: user.role, tenantId: user.tid },
  };
}

/** Trade a refresh token for a new pair; the old one is spent. */
export async function refresh(deps: SessionDeps, refreshToken: string): Promise<Tokens> {
  const spent = await deps.db
    .updateTable('sessions')
    .set({ revoked_at: new Date() })
    .where('token_hash', '=', hashToken(refreshToken))
    .where('revoked_at', 'is', null)
    .where('expires_at', '>', new Date())
    .returning(['id', 'family', 'user_id'])
    .executeTakeFirst();
  if (!spent) {
    const known = await deps.db
      .selectFrom('sessions')
      .select(['family', 'revoked_at'])
      .where('token_hash', '=', hashToken(refreshToken))
      .executeTakeFirst();
    if (known?.revoked_at) await revokeFamily(deps.db, known.family);
    throw new DomainError('unauthenticated', 'the refresh token is invalid, expired or already used');
  }
  const user = await deps.db
    .selectFrom('users')
    .selectAll()
    .where('id', '=', spent.user_id)
    .executeTakeFirstOrThrow();
  const next = await issueSession(
    deps,
    { sub: user.id, role: user.role, tid: user.tenant_id, email: user.email },
    spent.family,
  );
  return next;
}

export async function revokeFamily(db: Database, family: string): Promise<void> {
  await db
    .updateTable('sessions')
    .set({ revoked_at: new Date() })
    .where('family', '=', family)
    .where('revoked_at', 'is', null)
    .execute();
}

/** Logout: the session and everything rotated from the same login. */
export async function logout(db: Database, sessionId: string): Promise<void> {
  const row = await db.selectFrom('sessions').select('family').where('id', '=', sessionId).executeTakeFirst();
  if (row) await revokeFamily(db, row.family);
}

/** The live session and user behind an access token's claims, or undefined when revoked or changed. */
export async function liveSession(db: Database, userId: string, sessionId: string) {
  return db
    .selectFrom('sessions as s')
    .innerJoin('users as u', 'u.id', 's.user_id')
    .select(['u.id', 'u.role', 'u.tenant_id', 'u.email'])
    .where('s.id', '=', sessionId)
    .where('s.user_id', '=', userId)
    .where('s.revoked_at', 'is', null)
    .executeTakeFirst();
}

/** End every login of a user at once (their access tokens stop working on the next request). */
export async function revokeUserSessions(db: Database, userId: string): Promise<number> {
  const rows = await db
    .updateTable('sessions')
    .set({ revoked_at: new Date() })
    .where('user_id', '=', userId)
    .where('revoked_at', 'is', null)
    .execute();
  return Number(rows[0]?.numUpdatedRows ?? 0);
}

/**
 * A user changes their own password (the current one is checked, and counts
 * as a login attempt). Every login of theirs ends, this one included: a
 * session that a stolen password opened does not outlive the change.
 */
export async function changePassword(
  deps: SessionDeps,
  userId: string,
  input: { currentPassword: string; newPassword: string },
  ip: string,
): Promise<number> {
  const user = await deps.db
    .selectFrom('users')
    .select(['email', 'password_hash'])
    .where('id', '=', userId)
    .executeTakeFirstOrThrow();
  await deps.limiter.attempt('login', user.email, ip);
  if (!user.password_hash || !(await verifyPassword(user.password_hash, input.currentPassword))) {
    throw new DomainError('unauthenticated', 'the current password is wrong');
  }
  checkPassword(input.newPassword, user.email);
  const hash = await hashPassword(input.newPassword);
  await deps.db
    .updateTable('users')
    .set({ password_hash: hash, updated_at: new Date() })
    .where('id', '=', userId)
    .execute();
  await deps.limiter.succeeded('login', user.email, ip);
  return revokeUserSessions(deps.db, userId);
}

/** One of a user's signed-in sessions as they see it: a login and everything rotated from it. */
export interface UserSession {
  /** The login's family id: stable while its refresh token rotates. */
  id: string;
  createdAt: string;
  /** When its refresh token was last traded (about every 10 minutes while it is used). */
  lastUsedAt: string;
  expiresAt: string;
  current: boolean;
}

/**
 * A user's live sessions, newest use first. `currentSessionId` (the caller's
 * session row) marks the login the request came from.
 */
export async function listUserSessions(
  db: Database,
  userId: string,
  currentSessionId: string | undefined,
): Promise<UserSession[]> {
  const live = await db
    .selectFrom('sessions')
    .select(['id', 'family', 'created_at', 'expires_at'])
    .where('user_id', '=', userId)
    .where('revoked_at', 'is', null)
    .where('expires_at', '>', new Date())
    .orderBy('created_at', 'desc')
    .execute();
  if (live.length === 0) return [];
  const firsts = await db
    .selectFrom('sessions')
    .select(['family', (eb) => eb.fn.min<Date>('created_at').as('first')])
    .where('user_id', '=', userId)
    .where(
      'family',
      'in',
      live.map((s) => s.family),
    )
    .groupBy('family')
    .execute();
  const firstOf = new Map(firsts.map((f) => [f.family, f.first]));
  const seen = new Set<string>();
  const out: UserSession[] = [];
  for (const s of live) {
    // One entry per login (a family holds at most one live row; the newest wins if not).
    if (seen.has(s.family)) continue;
    seen.add(s.family);
    out.push({
      id: s.family,
      createdAt: new Date(firstOf.get(s.family) ?? s.created_at).toISOString(),
      lastUsedAt: s.created_at.toISOString(),
      expiresAt: s.expires_at.toISOString(),
      current: s.id === currentSessionId,
    });
  }
  return out;
}

/** End one of the user's own logins (by its family id); false when they have no such live login. */
export async function endUserSession(db: Database, userId: string, familyId: string): Promise<boolean> {
  const rows = await db
    .updateTable('sessions')
    .set({ revoked_at: new Date() })
    .where('user_id', '=', userId)
    .where('family', '=', familyId)
    .where('revoked_at', 'is', null)
    .where('expires_at', '>', new Date())
    .execute();
  return Number(rows[0]?.numUpdatedRows ?? 0) > 0;
}

/** End every login of the user except the one `currentSessionId` belongs to; how many ended. */
export async function endOtherSessions(
  db: Database,
  userId: string,
  currentSessionId: string,
): Promise<number> {
  const current = await db
    .selectFrom('sessions')
    .select('family')
    .where('id', '=', currentSessionId)
    .where('user_id', '=', userId)
    .executeTakeFirstOrThrow();
  const ended = await db
    .updateTable('sessions')
    .set({ revoked_at: new Date() })
    .where('user_id', '=', userId)
    .where('family', '!=', current.family)
    .where('revoked_at', 'is', null)
    .where('expires_at', '>', new Date())
    .returning('family')
    .execute();
  return new Set(ended.map((r) => r.family)).size;
}
