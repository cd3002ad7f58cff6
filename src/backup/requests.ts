import { DomainError } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import type { Database } from '../db/database.ts';
import { applyResource, applyResourceIn, findResource } from '../orchestrator/resources.ts';
import type { RepositoryKeys } from './repositories.ts';
import type { Restic } from './restic.ts';
import { BACKUP_RUN_KIND, backupRunId, type BackupRunSpec } from './run.ts';
import { SERVICE_RESTORE_KIND } from './restore.ts';

/**
 * What the CLI, the API and the schedules ask of backups: start runs, list
 * snapshots, start restores. Tenant scoping happens here: every query names
 * the tenant, and a snapshot is found only among its tenant's and service's
 * recorded ones.
 */

/** Tenants whose services are backed up: every provisioned one not yet cancelled. */
export async function backupTenants(db: Database, only?: string): Promise<{ id: string; slug: string }[]> {
  let q = db
    .selectFrom('tenants')
    .select(['id', 'slug'])
    .where('status', 'in', ['provisioning', 'active', 'suspended', 'failed']);
  if (only) q = q.where(only.startsWith('ten_') ? 'id' : 'slug', '=', only);
  return q.orderBy('slug').execute();
}

/** Queue one backup run per tenant; returns the runs' ids. */
export async function startBackupRuns(
  db: Database,
  tenants: { id: string }[],
  options: { purpose: BackupRunSpec['purpose']; firedAt?: Date; time?: Date },
): Promise<string[]> {
  const ids: string[] = [];
  for (const t of tenants) {
    const id = backupRunId(t.id, options.firedAt);
    const spec: BackupRunSpec = { tenantId: t.id, purpose: options.purpose };
    if (options.time) spec.time = options.time.toISOString();
    // A schedule firing seen twice (two workers, a retried job) queues its run once.
    if (options.firedAt && (await findResource(db, { kind: BACKUP_RUN_KIND, id }))) {
      ids.push(id);
      continue;
    }
    const resource = { kind: BACKUP_RUN_KIND, id, tenantId: t.id, spec };
    // Inside the caller's transaction when given one (the API's rate limit holds its lock there).
    if (db.isTransaction) await applyResourceIn(db, resource);
    else await applyResource(db, resource);
    ids.push(id);
  }
  return ids;
}

export type WaitOutcome = { id: string; phase: 'ready' | 'failed' | 'pending'; error: string | null };

/** Wait until the resources are ready or failed, or the timeout passes (then `pending`). */
export async function waitForResources(
  db: Database,
  kind: string,
  ids: string[],
  timeoutMs: number,
): Promise<WaitOutcome[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const rows = ids.length
      ? await db
          .selectFrom('resources')
          .select(['id', 'phase', 'last_error', 'generation', 'observed_generation'])
          .where('kind', '=', kind)
          .where('id', 'in', ids)
          .execute()
      : [];
    const settled = rows.filter(
      (r) => r.phase === 'failed' || (r.phase === 'ready' && r.observed_generation === r.generation),
    );
    if (settled.length === ids.length || Date.now() > deadline)
      return ids.map((id) => {
        const r = rows.find((x) => x.id === id);
        const phase = r?.phase === 'failed' ? 'failed' : settled.includes(r!) ? 'ready' : 'pending';
        return { id, phase, error: r?.last_error ?? null };
      });
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

export interface BackupView {
  id: string;
  time: Date;
  service: string | null;
  kind: string;
  purpose: string;
  run: string | null;
  snapshot: string | null;
  sizeBytes: number | null;
  addedBytes: number | null;
  durationMs: number | null;
  rowCounts: Record<string, number> | null;
  verified: boolean;
  /** How long restoring it took when it was last verified (the RTO of this snapshot). */
  restoreMs: number | null;
}

/** The tenant's recorded snapshots, newest first. */
export async function listBackups(db: Database, tenantId: string, limit = 500): Promise<BackupView[]> {
  const rows = await db
    .selectFrom('backups')
    .selectAll()
    .where('tenant_id', '=', tenantId)
    .where('status', '=', 'done')
    .orderBy('started_at', 'desc')
    .orderBy('id', 'desc')
    .limit(limit)
    .execute();
  return rows.map((r) => ({
    id: r.id,
    time: r.started_at,
    service: r.service,
    kind: r.kind,
    purpose: r.purpose,
    run: r.run_id,
    snapshot: r.snapshot_id,
    sizeBytes: r.size_bytes === null ? null : Number(r.size_bytes),
    addedBytes: r.added_bytes === null ? null : Number(r.added_bytes),
    durationMs: r.duration_ms,
    rowCounts: r.row_counts,
    verified: r.verified_at !== null,
    restoreMs: r.restore_ms,
  }));
}

export interface RestoreRequest {
  tenantId: string;
  service: string;
  snapshot?: string;
  at?: Date;
  requestedBy: string | null;
}

/**
 * Check a restore can be done, then record and queue it. Refused, with
 * nothing changed: a service the tenant does not have or that was removed
 * (not_found / conflict), a snapshot that is not one of this tenant's
 * service's (not_found: another tenant's snapshot is not told apart from an
 * unknown one), a repository that cannot be reached (unavailable).
 */
export async function requestServiceRestore(
  db: Database,
  deps: { restic: Restic; keys: RepositoryKeys },
  req: RestoreRequest,
): Promise<{ restoreId: string; snapshot: string; time: Date }> {
  const ts = await db
    .selectFrom('tenant_services as ts')
    .innerJoin('services as s', 's.id', 'ts.service_id')
    .select(['ts.id', 'ts.status'])
    .where('ts.tenant_id', '=', req.tenantId)
    .where('s.key', '=', req.service)
    .orderBy('ts.created_at', 'desc')
    .executeTakeFirst();
  if (!ts) throw new DomainError('not_found', `the tenant has no service "${req.service}"`);
  if (ts.status === 'removed' || ts.status === 'removing' || ts.status === 'pending')
    throw new DomainError(
      'conflict',
      `${req.service} is ${ts.status}; only a deployed service can be restored`,
      {
        details: { status: ts.status },
      },
    );
  if (req.snapshot !== undefined && !/^[0-9a-f]{8,64}$/.test(req.snapshot))
    throw new DomainError('validation_failed', `snapshot must be a restic snapshot id (8 to 64 hex digits)`);
  let q = db
    .selectFrom('backups')
    .select(['snapshot_id', 'started_at', 'tenant_service_id'])
    .where('tenant_id', '=', req.tenantId)
    .where('service', '=', req.service)
    .where('kind', '=', 'database')
    .where('status', '=', 'done')
    .where('snapshot_id', 'is not', null);
  if (req.snapshot) q = q.where('snapshot_id', 'like', `${req.snapshot}%`);
  if (req.at) q = q.where('started_at', '<=', req.at);
  const found = await q.orderBy('started_at', 'desc').limit(2).execute();
  if (found.length === 0) {
    const what = req.snapshot
      ? `snapshot ${req.snapshot}`
      : req.at
        ? `snapshot at or before ${req.at.toISOString()}`
        : 'snapshot';
    throw new DomainError('not_found', `no ${what} of ${req.service} for this tenant`);
  }
  if (req.snapshot && found.length > 1 && found[0]!.snapshot_id !== found[1]!.snapshot_id)
    throw new DomainError('validation_failed', `snapshot ${req.snapshot} is ambiguous; give more of its id`);
  const snapshot = found[0]!.snapshot_id!;
  // The repository must answer, and hold that snapshot, before anything is stopped or replaced.
  const repo = await deps.keys.forTenant(req.tenantId);
  const inRepo = await deps.restic.snapshots(repo, [
    `tenant=${req.tenantId}`,
    `service=${req.service}`,
    'kind=database',
  ]);
  if (!inRepo.some((s) => s.id === snapshot))
    throw new DomainError(
      'not_found',
      `snapshot ${snapshot.slice(0, 8)} is recorded but no longer in the repository`,
    );
  const restoreId = newId('restore');
  await db.transaction().execute(async (trx) => {
    await trx
      .insertInto('restores')
      .values({
        id: restoreId,
        tenant_id: req.tenantId,
        tenant_service_id: ts.id,
        service: req.service,
        snapshot_id: snapshot,
        requested_by: req.requestedBy,
      })
      .execute();
    await applyResourceIn(trx, {
      kind: SERVICE_RESTORE_KIND,
      id: restoreId,
      tenantId: req.tenantId,
      spec: { restoreId },
    });
  });
  return { restoreId, snapshot, time: found[0]!.started_at };
}
