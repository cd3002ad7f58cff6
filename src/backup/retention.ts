import { sql } from 'kysely';
import type { ComputeDriver } from '../core/compute.ts';
import { selectKept, type KeepPolicy } from '../core/retention.ts';
import type { Database } from '../db/database.ts';
import type { RepositoryKeys } from './repositories.ts';
import type { Restic, Snapshot } from './restic.ts';

export interface RetentionDeps {
  db: Database;
  restic: Restic;
  keys: RepositoryKeys;
  /** The compute driver whose exports leave volumes on its storage (deleted with their snapshots). */
  compute?: Pick<ComputeDriver, 'exportVolumes'>;
}

/**
 * Apply the retention policy to one tenant's repository: per service and
 * kind (a service's database snapshots are kept apart from its data's), the
 * GFS selection of `core/retention.ts`; everything else is forgotten by id
 * and pruned, and its `backups` rows removed, and the archives forgotten data
 * snapshots keep on the compute driver's storage (Proxmox vzdump) deleted.
 * Returns how many snapshots went.
 */
export async function applyRetention(
  deps: RetentionDeps,
  tenantId: string,
  policy: KeepPolicy,
): Promise<number> {
  // Held while the repository is pruned: a verification finding it locked knows it is our own work.
  return deps.db.connection().execute(async (conn) => {
    await sql`SELECT pg_advisory_lock(${RETENTION_LOCK_NS}, hashtext(${tenantId}))`.execute(conn);
    try {
      return await retainTenant(deps, tenantId, policy);
    } finally {
      await sql`SELECT pg_advisory_unlock(${RETENTION_LOCK_NS}, hashtext(${tenantId}))`.execute(conn);
    }
  });
}

/** The advisory lock namespace retention holds per tenant (keyed by the hash of the tenant id). */
export const RETENTION_LOCK_NS = 7_344_230;

async function retainTenant(deps: RetentionDeps, tenantId: string, policy: KeepPolicy): Promise<number> {
  const repo = await deps.keys.existing(tenantId);
  if (!repo || !(await deps.restic.exists(repo))) return 0;
  const groups = new Map<string, Snapshot[]>();
  for (const s of await deps.restic.snapshots(repo)) {
    const key = s.tags
      .filter((t) => t.startsWith('service=') || t.startsWith('kind='))
      .sort()
      .join(',');
    groups.set(key, [...(groups.get(key) ?? []), s]);
  }
  const forget: string[] = [];
  for (const group of groups.values()) {
    const kept = selectKept(group, policy);
    forget.push(...group.filter((s) => !kept.has(s.id)).map((s) => s.id));
  }
  // The archives forgotten data snapshots name on the compute driver's storage (Proxmox vzdump
  // volumes) go before their rows: a crash in between leaves rows of snapshots that are forgotten on
  // the next pass anyway (and that a restore refuses, naming the archive), never a volume no row names.
  const volumes = deps.compute?.exportVolumes;
  for (let i = 0; volumes && i < forget.length; i += 500) {
    const rows = await deps.db
      .selectFrom('backups')
      .select('archive_volume')
      .where('tenant_id', '=', tenantId)
      .where('snapshot_id', 'in', forget.slice(i, i + 500))
      .where('archive_volume', 'is not', null)
      .execute();
    for (const r of rows) await volumes.remove(r.archive_volume!);
  }
  // Rows first, in slices (a repository that never saw retention may shed hundreds at once): a crash
  // in between leaves snapshots no row names (forgotten next time), never a recorded snapshot that
  // is gone (which a restore or a verification would be pointed at).
  for (let i = 0; i < forget.length; i += 500) {
    await deps.db
      .deleteFrom('backups')
      .where('tenant_id', '=', tenantId)
      .where('snapshot_id', 'in', forget.slice(i, i + 500))
      .execute();
  }
  await deps.restic.forget(repo, forget);
  return forget.length;
}

/** The `retention` schedule: every tenant with a repository whose key still exists. */
export async function applyRetentionAll(deps: RetentionDeps, policy: KeepPolicy): Promise<number> {
  const rows = await deps.db
    .selectFrom('backup_repositories')
    .select('tenant_id')
    .where('password_enc', 'is not', null)
    .execute();
  let removed = 0;
  for (const r of rows) removed += await applyRetention(deps, r.tenant_id, policy);
  return removed;
}
