import { sql, type Transaction } from 'kysely';
import { DomainError } from '../core/errors.ts';
import type { Database } from '../db/database.ts';
import type { DB } from '../db/tables.ts';
import { appendAuditIn } from '../identity/audit.ts';
import { deleteResource, findResource } from '../orchestrator/resources.ts';
import { TENANT_KIND } from './kinds.ts';

/**
 * Purge: a cancelled tenant past its grace period loses its containers,
 * routes and stored data. The tenant reconciler's deletion removes what lives
 * outside the database; `finishPurge` (its last removal) deletes the tenant's
 * data and records what was removed. The tenant row stays, `purged`.
 */
export type PurgeStart = 'purged' | 'queued';

export async function startPurge(
  db: Database,
  tenantId: string,
  options: { ignoreGrace?: boolean } = {},
): Promise<PurgeStart> {
  const tenant = await db
    .selectFrom('tenants')
    .select(['slug', 'status', 'purge_after'])
    .where('id', '=', tenantId)
    .executeTakeFirst();
  if (!tenant) throw new DomainError('not_found', `no tenant ${tenantId}`);
  if (tenant.status === 'purged') return 'purged';
  if (tenant.status !== 'cancelled') {
    throw new DomainError(
      'conflict',
      `${tenant.slug} is ${tenant.status}; only a cancelled tenant can be purged`,
      { details: { status: tenant.status } },
    );
  }
  if (!options.ignoreGrace && tenant.purge_after && tenant.purge_after.getTime() > Date.now()) {
    throw new DomainError(
      'conflict',
      `${tenant.slug}'s grace period ends ${tenant.purge_after.toISOString()}; purge now explicitly (CLI --now, API ?now=true) to end it earlier`,
      { details: { status: tenant.status, purgeAfter: tenant.purge_after.toISOString() } },
    );
  }
  const ref = { kind: TENANT_KIND, id: tenantId };
  if (await deleteResource(db, ref)) return 'queued';
  // Already being deleted, or never provisioned (cancelled before payment): with no resource,
  // nothing exists outside the database and the purge finishes here.
  if (await findResource(db, ref)) return 'queued';
  await finishPurge(db, tenantId, []);
  return 'purged';
}

/** The daily purge: every cancelled tenant whose grace period is over. Returns how many were started. */
export async function purgeDue(db: Database): Promise<number> {
  const due = await db
    .selectFrom('tenants')
    .select('id')
    .where('status', '=', 'cancelled')
    .where('purge_after', '<=', sql<Date>`now()`)
    .execute();
  for (const t of due) await startPurge(db, t.id);
  return due.length;
}

async function removeTenantData(trx: Transaction<DB>, tenantId: string): Promise<Record<string, number>> {
  const count = (r: { numDeletedRows: bigint }[]) => Number(r[0]?.numDeletedRows ?? 0);
  return {
    users: count(await trx.deleteFrom('users').where('tenant_id', '=', tenantId).execute()),
    apiKeys: count(await trx.deleteFrom('api_keys').where('tenant_id', '=', tenantId).execute()),
    secrets: count(await trx.deleteFrom('tenant_secrets').where('tenant_id', '=', tenantId).execute()),
    routes: count(await trx.deleteFrom('routes').where('tenant_id', '=', tenantId).execute()),
    billingObjects: count(
      await trx.deleteFrom('local_billing_objects').where('tenant_id', '=', tenantId).execute(),
    ),
  };
}

/** Delete the tenant's stored data, mark it purged, and record what was removed. Idempotent. */
export async function finishPurge(db: Database, tenantId: string, removedOutside: string[]): Promise<void> {
  await db.transaction().execute(async (trx) => {
    const t = await trx
      .selectFrom('tenants')
      .select('status')
      .where('id', '=', tenantId)
      .forUpdate()
      .executeTakeFirst();
    if (!t || t.status === 'purged') return;
    const rows = await removeTenantData(trx, tenantId);
    await trx
      .updateTable('tenants')
      .set({
        status: 'purged',
        status_reason: 'purged after cancellation',
        purged_at: sql`now()`,
        updated_at: sql`now()`,
      })
      .where('id', '=', tenantId)
      .execute();
    await appendAuditIn(trx, {
      actorType: 'system',
      actorId: null,
      tenantId,
      action: 'tenant.purged',
      targetType: 'tenant',
      targetId: tenantId,
      result: 'success',
      details: { removed: { ...rows, outside: removedOutside } },
    });
  });
}
