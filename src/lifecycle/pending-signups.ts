import { sql } from 'kysely';
import type { Database } from '../db/database.ts';
import { appendAuditIn } from '../identity/audit.ts';

/**
 * Remove signups that were never paid for: a `pending_payment` tenant older
 * than `hours` goes with its owner (and everything that cascades from the
 * tenant row: its local checkout, keys, sessions), so its slug and e-mail
 * address are free again. Each removal is audited (the slug, never the
 * e-mail). The row lock makes a concurrent payment win or lose cleanly: a
 * tenant that moved to `provisioning` is no longer pending and stays.
 * Returns the slugs removed.
 */
export async function expirePendingSignups(db: Database, hours: number): Promise<string[]> {
  return db.transaction().execute(async (trx) => {
    const expired = await trx
      .selectFrom('tenants')
      .select(['id', 'slug', 'created_at'])
      .where('status', '=', 'pending_payment')
      .where('created_at', '<', sql<Date>`now() - make_interval(secs => ${hours * 3600})`)
      .orderBy('created_at')
      .limit(1000)
      .forUpdate()
      .skipLocked()
      .execute();
    if (expired.length === 0) return [];
    await trx
      .deleteFrom('tenants')
      .where(
        'id',
        'in',
        expired.map((t) => t.id),
      )
      .execute();
    for (const t of expired) {
      await appendAuditIn(trx, {
        actorType: 'system',
        actorId: null,
        tenantId: t.id,
        action: 'tenant.signup.expired',
        targetType: 'tenant',
        targetId: t.id,
        result: 'success',
        details: { slug: t.slug, signedUpAt: t.created_at.toISOString(), unpaidHours: hours },
      });
    }
    return expired.map((t) => t.slug);
  });
}
