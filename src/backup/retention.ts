import { selectKept, type KeepPolicy } from '../core/retention.ts';
import type { Database } from '../db/database.ts';
import type { RepositoryKeys } from './repositories.ts';
import type { Restic, Snapshot } from './restic.ts';

/**
 * Apply the retention policy to one tenant's repository: per service and
 * kind (a service's database snapshots are kept apart from its data's), the
 * GFS selection of `core/retention.ts`; everything else is forgotten by id
 * and pruned, and its `backups` rows removed. Returns how many snapshots went.
 */
export async function applyRetention(
  deps: { db: Database; restic: Restic; keys: RepositoryKeys },
  tenantId: string,
  policy: KeepPolicy,
): Promise<number> {
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
export async function applyRetentionAll(
  deps: { db: Database; restic: Restic; keys: RepositoryKeys },
  policy: KeepPolicy,
): Promise<number> {
  const rows = await deps.db
    .selectFrom('backup_repositories')
    .select('tenant_id')
    .where('password_enc', 'is not', null)
    .execute();
  let removed = 0;
  for (const r of rows) removed += await applyRetention(deps, r.tenant_id, policy);
  return removed;
}
