import { createHash, randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { sql } from 'kysely';
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import { DomainError } from '../core/errors.ts';
import { mailboxProblem } from '../core/mailbox.ts';
import { tenantUrl } from '../core/services.ts';
import type { Database } from '../db/database.ts';
import { writeOutbox } from '../orchestrator/outbox.ts';
import { hashPassword, normaliseEmail, passwordProblem } from './passwords.ts';
import { revokeUserSessions } from './sessions.ts';

/**
 * Getting back into an account by e-mail: a password reset link and "find my
 * workspace". Both answer the same whether or not the address has an
 * account (no account enumeration): a known address gets the link or its
 * workspaces, an unknown one a mail saying no account uses it, so the work
 * done is the same too. A reset link is single-use, expires after
 * `RESET_TTL_MINUTES`, and only its SHA-256 is stored; setting the new
 * password spends every other open link of the user and ends all their
 * sessions, in one transaction.
 */
export const RESET_TTL_MINUTES = 60;
/** Requests (reset and find-workspace together) one client address may make an hour; then 429. */
export const REQUESTS_PER_IP_HOUR = 10;
/** Mails of each kind one address receives an hour; more requests are answered the same and send nothing. */
export const MAILS_PER_ADDRESS_HOUR = 3;

export type RecoveryKind = 'password-reset' | 'find-workspace';

export interface RecoveryLimiter {
  /** Count a request from `ip`; throws `rate_limited` with Retry-After when it has used its hour. */
  admitClient(ip: string): Promise<void>;
  /** Whether `email` may get another mail of `kind` this hour (never told to the caller). */
  admitRecipient(kind: RecoveryKind, email: string): Promise<boolean>;
}

export function createRecoveryLimiter(
  options: { redis?: Redis; namespace?: string; perIp?: number; perAddress?: number } = {},
): RecoveryLimiter {
  const ns = options.namespace ?? 'aiqso';
  const make = (keyPrefix: string, points: number) =>
    options.redis
      ? new RateLimiterRedis({ keyPrefix, points, duration: 3600, storeClient: options.redis })
      : new RateLimiterMemory({ keyPrefix, points, duration: 3600 });
  const perIp = options.perIp ?? REQUESTS_PER_IP_HOUR;
  const client = make(`${ns}:rl:recovery:ip`, perIp);
  const recipient = make(`${ns}:rl:recovery:to`, options.perAddress ?? MAILS_PER_ADDRESS_HOUR);
  const storeDown = (err: unknown) =>
    new DomainError('unavailable', 'the rate limiter store is not reachable', { cause: err });
  return {
    async admitClient(ip) {
      try {
        await client.consume(ip);
      } catch (err) {
        if (!(err instanceof RateLimiterRes)) throw storeDown(err);
        const retryAfterSeconds = Math.max(1, Math.ceil(err.msBeforeNext / 1000));
        throw new DomainError(
          'rate_limited',
          `too many requests from this address (${perIp} an hour); try again in ${Math.ceil(retryAfterSeconds / 60)} min`,
          { details: { retryAfterSeconds } },
        );
      }
    },
    async admitRecipient(kind, email) {
      // The key holds a hash of the address, not the address.
      const key = `${kind}:${createHash('sha256').update(email).digest('base64url').slice(0, 32)}`;
      try {
        await recipient.consume(key);
        return true;
      } catch (err) {
        if (!(err instanceof RateLimiterRes)) throw storeDown(err);
        return false;
      }
    },
  };
}

export interface RecoveryDeps {
  db: Database;
  publicUrl: string;
  /** Decides which email domains are real: only a `localhost` platform accepts `name@localhost`. */
  baseDomain: string;
  limiter: RecoveryLimiter;
}

const hashToken = (token: string) => createHash('sha256').update(token).digest('hex');
const fieldError = (field: string, message: string) =>
  new DomainError('validation_failed', `${field}: ${message}`, { details: { field } });

/** The address as given, checked to be one mailbox (a 400 naming `email` otherwise, whoever owns it). */
function checkedEmail(deps: Pick<RecoveryDeps, 'baseDomain'>, raw: string): string {
  const email = normaliseEmail(raw);
  if (!email) throw fieldError('email', 'is required');
  const problem = mailboxProblem(email, { dotlessDomain: deps.baseDomain === 'localhost' });
  if (problem) throw fieldError('email', problem);
  return email;
}

/** Who asked, for the audit row: the account the address belongs to, if any (never told to the caller). */
export interface RecoveryOutcome {
  userId?: string;
  tenantId?: string | null;
}

/**
 * Ask for a password reset link for `rawEmail`. Resolves the same way for
 * every valid address; the mail says either "here is your link" or "no
 * account uses this address".
 */
export async function requestPasswordReset(
  deps: RecoveryDeps,
  rawEmail: string,
  ip: string,
  outcome: RecoveryOutcome = {},
): Promise<void> {
  const email = checkedEmail(deps, rawEmail);
  await deps.limiter.admitClient(ip);
  if (!(await deps.limiter.admitRecipient('password-reset', email))) return;
  const user = await deps.db
    .selectFrom('users')
    .select(['id', 'tenant_id'])
    .where('email', '=', email)
    .executeTakeFirst();
  const key = `password-reset:${randomBytes(12).toString('base64url')}`;
  if (!user) {
    await writeOutbox(deps.db, {
      key,
      kind: 'email',
      payload: {
        template: 'password-reset-unknown',
        to: email,
        subject: 'Password reset requested',
        text: `Someone asked to reset the password of an account with this address at ${deps.publicUrl}/, but no account uses it.\n\nIf it was you, you may have signed up with another address. If it was not you, you can ignore this mail.\n`,
      },
    });
    return;
  }
  outcome.userId = user.id;
  outcome.tenantId = user.tenant_id;
  const token = randomBytes(32).toString('base64url');
  const link = `${deps.publicUrl}/password-reset/new?token=${token}`;
  await deps.db.transaction().execute(async (trx) => {
    await trx
      .insertInto('password_resets')
      .values({
        token_hash: hashToken(token),
        user_id: user.id,
        expires_at: new Date(Date.now() + RESET_TTL_MINUTES * 60_000),
      })
      .execute();
    await writeOutbox(trx, {
      key,
      kind: 'email',
      payload: {
        template: 'password-reset',
        ...(user.tenant_id ? { tenantId: user.tenant_id } : {}),
        to: email,
        subject: 'Reset your password',
        text: `To choose a new password, open this link within ${RESET_TTL_MINUTES} minutes:\n\n${link}\n\nThe link works once. Setting the new password signs you out everywhere.\nIf you did not ask for this, ignore this mail: your password stays as it is.\n`,
        // The link is a credential: the outbox keeps it only until the mail is sent.
        scrubAfterSend: true,
      },
    });
  });
}

/** Whether `token` is an open reset link now (the page asks before showing the form). */
export async function resetTokenOpen(db: Database, token: string): Promise<boolean> {
  if (!token) return false;
  const row = await db
    .selectFrom('password_resets')
    .select('user_id')
    .where('token_hash', '=', hashToken(token))
    .where('used_at', 'is', null)
    .where('expires_at', '>', new Date())
    .executeTakeFirst();
  return row !== undefined;
}

const LINK_GONE = 'the link is invalid, expired or already used; ask for a new one';

/**
 * Set a new password with a reset link's token. The token is spent in the
 * same transaction that changes the password (a second use, or a race of two,
 * finds it spent), every other open link of the user is spent too, every
 * session of the user ends. A password the
 * rules refuse leaves the link open, so the user can try another.
 */
export async function confirmPasswordReset(
  db: Database,
  input: { token: string; newPassword: string },
  outcome: RecoveryOutcome = {},
): Promise<{ userId: string; tenantSlug: string | null; sessionsEnded: number }> {
  const tokenHash = hashToken(input.token);
  const found = await db
    .selectFrom('password_resets as r')
    .innerJoin('users as u', 'u.id', 'r.user_id')
    .leftJoin('tenants as t', 't.id', 'u.tenant_id')
    .select(['u.id', 'u.email', 'u.tenant_id', 't.slug'])
    .where('r.token_hash', '=', tokenHash)
    .where('r.used_at', 'is', null)
    .where('r.expires_at', '>', new Date())
    .executeTakeFirst();
  if (!found) throw fieldError('token', LINK_GONE);
  outcome.userId = found.id;
  outcome.tenantId = found.tenant_id;
  const problem = passwordProblem(input.newPassword, found.email);
  if (problem) throw fieldError('newPassword', problem.replace(/^password /, ''));
  const hash = await hashPassword(input.newPassword);
  return db.transaction().execute(async (trx) => {
    const spent = await trx
      .updateTable('password_resets')
      .set({ used_at: sql`now()` })
      .where('token_hash', '=', tokenHash)
      .where('used_at', 'is', null)
      .where('expires_at', '>', new Date())
      .returning('user_id')
      .executeTakeFirst();
    if (!spent || spent.user_id !== found.id) throw fieldError('token', LINK_GONE);
    await trx
      .updateTable('password_resets')
      .set({ used_at: sql`now()` })
      .where('user_id', '=', found.id)
      .where('used_at', 'is', null)
      .execute();
    await trx
      .updateTable('users')
      .set({ password_hash: hash, updated_at: new Date() })
      .where('id', '=', found.id)
      .execute();
    const sessionsEnded = await revokeUserSessions(trx, found.id);
    return { userId: found.id, tenantSlug: found.slug, sessionsEnded };
  });
}

/**
 * "Find my workspace": mail `rawEmail` the addresses of the workspaces it
 * belongs to (or that none does). The answer is the same either way.
 */
export async function findWorkspaces(
  deps: RecoveryDeps,
  rawEmail: string,
  ip: string,
  outcome: RecoveryOutcome = {},
): Promise<void> {
  const email = checkedEmail(deps, rawEmail);
  await deps.limiter.admitClient(ip);
  if (!(await deps.limiter.admitRecipient('find-workspace', email))) return;
  const rows = await deps.db
    .selectFrom('users as u')
    .innerJoin('tenants as t', 't.id', 'u.tenant_id')
    .select(['u.id', 't.id as tenantId', 't.slug', 't.company', 't.status'])
    .where('u.email', '=', email)
    .where('t.status', 'not in', ['purged', 'failed'])
    .orderBy('t.slug')
    .execute();
  const first = rows[0];
  if (first) {
    outcome.userId = first.id;
    outcome.tenantId = first.tenantId;
  }
  const list = rows
    .map((r) => {
      const note = r.status === 'active' ? '' : ` (${r.status.replace(/_/g, ' ')})`;
      return `- ${r.company ?? r.slug}: ${tenantUrl(deps.publicUrl, r.slug)}/${note}`;
    })
    .join('\n');
  await writeOutbox(deps.db, {
    key: `find-workspace:${randomBytes(12).toString('base64url')}`,
    kind: 'email',
    payload: {
      template: rows.length ? 'find-workspace' : 'find-workspace-none',
      ...(first ? { tenantId: first.tenantId } : {}),
      to: email,
      subject: rows.length ? 'Your workspaces' : 'No workspace uses this address',
      text: rows.length
        ? `The workspaces you sign in to with ${email}:\n\n${list}\n\nSign in at the workspace's address. Forgot the password? ${deps.publicUrl}/password-reset\n`
        : `Someone asked which workspaces at ${deps.publicUrl}/ this address belongs to: none does.\n\nYou may have signed up with another address, or create a workspace at ${deps.publicUrl}/signup\n`,
    },
  });
}

/** The mails the recovery pages send to an address no account uses. */
const VISITOR_TEMPLATES = ['password-reset-unknown', 'find-workspace-none'];

/** How long the record of a mail to an address without an account is kept (abuse questions). */
export const VISITOR_MAIL_DAYS = 30;

/**
 * Forget the mails sent to addresses no account uses, once `days` old: the
 * `emails` record and the delivered or failed outbox row, both of which hold
 * an address somebody typed into a public form. Mails to account holders stay
 * (they are the customers' own records, removed with a purged tenant).
 * Runs with the daily `purge` schedule. Returns how many rows went.
 */
export async function forgetVisitorMail(
  db: Database,
  days = VISITOR_MAIL_DAYS,
): Promise<{ emails: number; outbox: number }> {
  const before = sql<Date>`now() - make_interval(days => ${days})`;
  const emails = await db
    .deleteFrom('emails')
    .where('template', 'in', VISITOR_TEMPLATES)
    .where('sent_at', '<', before)
    .executeTakeFirst();
  const outbox = await db
    .deleteFrom('outbox')
    .where('kind', '=', 'email')
    .where('status', 'in', ['delivered', 'failed'])
    .where(sql<string>`payload ->> 'template'`, 'in', VISITOR_TEMPLATES)
    .where('created_at', '<', before)
    .executeTakeFirst();
  return { emails: Number(emails.numDeletedRows), outbox: Number(outbox.numDeletedRows) };
}
