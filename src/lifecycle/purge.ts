import { emitTenantEvent } from '../events/emit.ts';
import { sql } from 'kysely';
import { DomainError } from '../core/errors.ts';
import type { ComputeDriver } from '../core/compute.ts';
import type { Database } from '../db/database.ts';
import { appendAuditIn } from '../identity/audit.ts';
import { deleteResource, findResource } from '../orchestrator/resources.ts';
import { TENANT_KIND } from '../core/kinds.ts';
import { purgeTargets, removePersonalData } from './purge-data.ts';
import { removeTenantFiles } from './purge-files.ts';
import { shredTenantBackups } from '../backup/repositories.ts';

/**
 * Purge: a cancelled tenant past its grace period loses its containers,
 * routes and stored data. The tenant reconciler's deletion removes what lives
 * outside the database; `finishPurge` (its last removal) deletes the tenant's
 * data and files and anonymises what must stay (mail records, the audit
 * chain), and records what was removed. The tenant row stays as a tombstone,
 * `purged`: nothing personal is left.
 */
export type PurgeStart = 'purged' | 'queued';

export async function startPurge(
  db: Database,
  tenantId: string,
  options: { ignoreGrace?: boolean; dataDir?: string } = {},
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
  await finishPurge(db, tenantId, [], { dataDir: options.dataDir });
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

/**
 * Delete the volumes the tenant's data snapshots name on the compute driver's
 * storage. A driver without such volumes (the platform moved off Proxmox)
 * cannot: they are listed as left, for the operator.
 */
async function removeDriverArchives(
  db: Database,
  tenantId: string,
  compute: Pick<ComputeDriver, 'exportVolumes'> | undefined,
): Promise<{ removed: string[]; left: string[] }> {
  const rows = await db
    .selectFrom('backups')
    .select('archive_volume')
    .distinct()
    .where('tenant_id', '=', tenantId)
    .where('archive_volume', 'is not', null)
    .orderBy('archive_volume')
    .execute();
  const out = { removed: [] as string[], left: [] as string[] };
  for (const r of rows) {
    const volume = r.archive_volume!;
    if (!compute?.exportVolumes) out.left.push(volume);
    else if (await compute.exportVolumes.remove(volume)) out.removed.push(volume);
  }
  return out;
}

/**
 * Delete the tenant's personal data and files, reduce its row to a tombstone
 * (id, slug, when, what was removed) and mark it purged. Files first: a crash
 * after them leaves the database to do again, never files nobody would look
 * for. With `dataDir`, this machine's files of the tenant go too (the
 * reconciler's removal passes it; a tenant never provisioned has none).
 * Idempotent.
 */
export async function finishPurge(
  db: Database,
  tenantId: string,
  removedOutside: string[],
  options: { dataDir?: string; compute?: Pick<ComputeDriver, 'exportVolumes'> } = {},
): Promise<void> {
  const targets = await purgeTargets(db, tenantId);
  if (!targets) return;
  const status = await db
    .selectFrom('tenants')
    .select('status')
    .where('id', '=', tenantId)
    .executeTakeFirst();
  if (status?.status === 'purged') return;
  // Crypto-shredding before anything else: the backups' key, then their repository.
  const backupRepository = await shredTenantBackups(db, tenantId);
  // Archives the compute driver keeps outside restic (Proxmox vzdump volumes) are not under the
  // repository's key: shredding it leaves them readable, so they are deleted (before the rows
  // naming them go).
  const driverArchives = await removeDriverArchives(db, tenantId, options.compute);
  const files = options.dataDir ? await removeTenantFiles(options.dataDir, targets) : 0;
  await db.transaction().execute(async (trx) => {
    const t = await trx
      .selectFrom('tenants')
      .select('status')
      .where('id', '=', tenantId)
      .forUpdate()
      .executeTakeFirst();
    if (!t || t.status === 'purged') return;
    const removed = {
      ...(await removePersonalData(trx, targets)),
      files,
      outside: removedOutside,
      backupRepository,
      ...(driverArchives.removed.length || driverArchives.left.length ? { driverArchives } : {}),
    };
    await trx
      .updateTable('tenants')
      .set({
        status: 'purged',
        status_reason: 'purged after cancellation',
        company: null,
        stripe_customer_id: null,
        host_id: null,
        purge_record: JSON.stringify({ removed }),
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
      details: { removed },
    });
    await emitTenantEvent(trx, 'tenant.purged', tenantId);
  });
}
