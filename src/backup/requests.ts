import { DomainError } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import type { Database } from '../db/database.ts';
import { applyResource, applyResourceIn, findResource } from '../orchestrator/resources.ts';
import type { RepositoryKeys } from './repositories.ts';
import type { Restic } from './restic.ts';
import { BACKUP_RUN_KIND, backupRunId, backupTargets, type BackupRunSpec } from './run.ts';
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

/** A checked restore of one service, ready to be queued. */
export interface RestorePlan {
  tenantId: string;
  tenantServiceId: string;
  service: string;
  snapshot: string;
  /** The `data` snapshot of the same run, when the run took one. */
  dataSnapshot: string | null;
  time: Date;
}

/**
 * Check a restore of one service can be done, changing nothing. Refused: a
 * service the tenant does not have or that was removed (not_found /
 * conflict), one a restore is already running for (conflict), a snapshot that
 * is not one of this tenant's service's (not_found: another tenant's snapshot
 * is not told apart from an unknown one), a repository that cannot be
 * reached (unavailable).
 */
export async function planServiceRestore(
  db: Database,
  deps: { restic: Restic; keys: RepositoryKeys },
  req: Omit<RestoreRequest, 'requestedBy'>,
): Promise<RestorePlan> {
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
  const running = await db
    .selectFrom('restores')
    .select('id')
    .where('tenant_service_id', '=', ts.id)
    .where('status', '=', 'running')
    .executeTakeFirst();
  if (running)
    throw new DomainError(
      'conflict',
      `restore ${running.id} of ${req.service} is still running; wait for it (aiqso jobs) before another`,
      { details: { restore: running.id } },
    );
  if (req.snapshot !== undefined && !/^[0-9a-f]{8,64}$/.test(req.snapshot))
    throw new DomainError('validation_failed', `snapshot must be a restic snapshot id (8 to 64 hex digits)`);
  let q = db
    .selectFrom('backups')
    .select(['snapshot_id', 'started_at', 'tenant_service_id', 'run_id'])
    .where('tenant_id', '=', req.tenantId)
    .where('service', '=', req.service)
    .where('kind', '=', 'database')
    .where('status', '=', 'done')
    .where('snapshot_id', 'is not', null);
  if (req.snapshot) q = q.where('snapshot_id', 'like', `${req.snapshot}%`);
  // A restore's safety snapshot is what it undid: chosen only by its id, never as "the latest".
  else q = q.where('purpose', '!=', 'safety');
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
  // The same run's data snapshot goes back with the database, so files and rows match.
  const data = found[0]!.run_id
    ? await db
        .selectFrom('backups')
        .select('snapshot_id')
        .where('tenant_id', '=', req.tenantId)
        .where('run_id', '=', found[0]!.run_id)
        .where('service', '=', req.service)
        .where('kind', '=', 'data')
        .where('status', '=', 'done')
        .executeTakeFirst()
    : undefined;
  // The repository must answer, and hold those snapshots, before anything is stopped or replaced.
  const repo = await deps.keys.forTenant(req.tenantId);
  const inRepo = await deps.restic.snapshots(repo, [`tenant=${req.tenantId}`, `service=${req.service}`]);
  for (const id of [snapshot, data?.snapshot_id].filter((x): x is string => !!x))
    if (!inRepo.some((s) => s.id === id))
      throw new DomainError(
        'not_found',
        `snapshot ${id.slice(0, 8)} of ${req.service} is recorded but no longer in the repository`,
      );
  return {
    tenantId: req.tenantId,
    tenantServiceId: ts.id,
    service: req.service,
    snapshot,
    dataSnapshot: data?.snapshot_id ?? null,
    time: found[0]!.started_at,
  };
}

/** Record and queue checked restores, all or none, each a `service-restore` resource; returns their ids. */
export async function queueRestores(
  db: Database,
  plans: RestorePlan[],
  requestedBy: string | null,
): Promise<string[]> {
  const ids = plans.map(() => newId('restore'));
  await db.transaction().execute(async (trx) => {
    for (const [i, p] of plans.entries()) {
      const restoreId = ids[i]!;
      await trx
        .insertInto('restores')
        .values({
          id: restoreId,
          tenant_id: p.tenantId,
          tenant_service_id: p.tenantServiceId,
          service: p.service,
          snapshot_id: p.snapshot,
          data_snapshot_id: p.dataSnapshot,
          requested_by: requestedBy,
        })
        .execute();
      await applyResourceIn(trx, {
        kind: SERVICE_RESTORE_KIND,
        id: restoreId,
        tenantId: p.tenantId,
        spec: { restoreId },
      });
    }
  });
  return ids;
}

/** Check a restore of one service, then record and queue it (see `planServiceRestore`). */
export async function requestServiceRestore(
  db: Database,
  deps: { restic: Restic; keys: RepositoryKeys },
  req: RestoreRequest,
): Promise<{ restoreId: string; snapshot: string; dataSnapshot: string | null; time: Date }> {
  const plan = await planServiceRestore(db, deps, req);
  const [restoreId] = await queueRestores(db, [plan], req.requestedBy);
  return { restoreId: restoreId!, snapshot: plan.snapshot, dataSnapshot: plan.dataSnapshot, time: plan.time };
}

/**
 * A whole tenant back to its backups: every deployed service, each to its
 * newest snapshot at or before `at` (the newest without), database and data,
 * including a service whose container and database are gone (re-created from
 * the catalog, then filled). Every service is checked first and the restores
 * are queued together or not at all: a tenant that is not provisioned
 * (conflict), a service without a snapshot then (not_found, naming it), an
 * unreachable repository (unavailable) change nothing.
 */
export async function requestTenantRestore(
  db: Database,
  deps: { restic: Restic; keys: RepositoryKeys },
  req: { tenantId: string; at?: Date; requestedBy: string | null },
): Promise<{ restores: (RestorePlan & { restoreId: string })[] }> {
  const tenant = await db
    .selectFrom('tenants')
    .select(['status'])
    .where('id', '=', req.tenantId)
    .executeTakeFirst();
  if (!tenant) throw new DomainError('not_found', `no tenant ${req.tenantId}`);
  if (!['provisioning', 'active', 'suspended', 'failed'].includes(tenant.status))
    throw new DomainError(
      'conflict',
      `the tenant is ${tenant.status}; only a provisioned tenant can be restored`,
      {
        details: { status: tenant.status },
      },
    );
  const services = await backupTargets(db, req.tenantId);
  if (services.length === 0)
    throw new DomainError('conflict', 'the tenant has no deployed service to restore');
  const plans: RestorePlan[] = [];
  for (const s of services)
    plans.push(
      await planServiceRestore(db, deps, { tenantId: req.tenantId, service: s.service, at: req.at }),
    );
  const ids = await queueRestores(db, plans, req.requestedBy);
  return { restores: plans.map((p, i) => ({ ...p, restoreId: ids[i]! })) };
}
