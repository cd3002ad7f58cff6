import type { Kysely } from 'kysely';
import type { ConsentSource, DB } from '../db/tables.ts';

/**
 * A user's opt-in to product e-mails (marketing): off unless they ticked the
 * unticked box at signup or turned it on later. Every grant and withdrawal is
 * a consent record (when, where, and the words shown), so the platform can
 * show what the user agreed to; the route that changes it names the change in
 * the tenant's audit log.
 */
export const MARKETING_WORDING =
  'Send me occasional e-mails about new features and offers. I can turn this off at any time.';

export interface Preferences {
  marketingEmails: boolean;
  /** When the current choice was recorded; null when never given (the default: no e-mails). */
  marketingEmailsSince: string | null;
  marketingEmailsWording: string;
}

export async function readPreferences(db: Kysely<DB>, userId: string): Promise<Preferences> {
  const user = await db
    .selectFrom('users')
    .select('marketing_emails')
    .where('id', '=', userId)
    .executeTakeFirstOrThrow();
  const last = await db
    .selectFrom('consent_records')
    .select('recorded_at')
    .where('user_id', '=', userId)
    .where('purpose', '=', 'marketing_emails')
    .orderBy('id', 'desc')
    .limit(1)
    .executeTakeFirst();
  return {
    marketingEmails: user.marketing_emails,
    marketingEmailsSince: last ? last.recorded_at.toISOString() : null,
    marketingEmailsWording: MARKETING_WORDING,
  };
}

/**
 * Record the user's choice (in the caller's transaction, when given one). A
 * choice equal to the current one records nothing. Returns whether it changed.
 */
export async function recordMarketingChoice(
  db: Kysely<DB>,
  userId: string,
  granted: boolean,
  source: ConsentSource,
): Promise<boolean> {
  const changed = await db
    .updateTable('users')
    .set({ marketing_emails: granted })
    .where('id', '=', userId)
    .where('marketing_emails', '=', !granted)
    .executeTakeFirst();
  if (changed.numUpdatedRows === 0n) return false;
  await db
    .insertInto('consent_records')
    .values({ user_id: userId, purpose: 'marketing_emails', granted, source, wording: MARKETING_WORDING })
    .execute();
  return true;
}
