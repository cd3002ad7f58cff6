import os from 'node:os';
import { backupEngine } from '../../platform/backups.ts';
import {
  backupTenants,
  listBackups,
  requestServiceRestore,
  startBackupRuns,
  waitForResources,
} from '../../backup/requests.ts';
import { SERVICE_RESTORE_KIND } from '../../backup/restore.ts';
import { BACKUP_RUN_KIND } from '../../backup/run.ts';
import { verifiableTenants, verifyTenants } from '../../backup/verify.ts';
import { EXPORT_TTL_DAYS, requestTenantExport, TENANT_EXPORT_KIND } from '../../backup/export.ts';
import { DomainError } from '../../core/errors.ts';
import { findTenant } from '../../db/tenants.ts';
import { appendAudit } from '../../identity/audit.ts';
import { withDatabase, type CommandContext } from '../context.ts';
import { EXIT } from '../exit.ts';
import { printJson, printTable } from '../output.ts';

/**
 * `aiqso backups run|list` and `aiqso restore service`. A run or restore is a
 * resource the orchestrator's workers carry out (`aiqso up` or `aiqso
 * worker`); these commands queue it, then wait for it and report, so the
 * exit code says whether it worked. Exit 1 when it failed or no worker took
 * it in time, 2 refused, 3 no such tenant, service or snapshot.
 */
const WAIT_MS = 30 * 60_000;

function operator(): string | null {
  try {
    return os.userInfo().username;
  } catch {
    return null;
  }
}

async function tenantOrThrow(db: Parameters<typeof findTenant>[0], ref: string) {
  const tenant = await findTenant(db, ref);
  if (!tenant) throw new DomainError('not_found', `no tenant with slug or id "${ref}"`);
  return tenant;
}

export async function backupsRun(
  ctx: CommandContext,
  options: { tenant?: string; json?: boolean; wait?: boolean },
): Promise<void> {
  const outcomes = await withDatabase(ctx, async ({ db }) => {
    if (options.tenant) await tenantOrThrow(db, options.tenant);
    const tenants = await backupTenants(db, options.tenant);
    if (options.tenant && tenants.length === 0)
      throw new DomainError('conflict', `${options.tenant} is not provisioned; it has nothing to back up`);
    const ids = await startBackupRuns(db, tenants, { purpose: 'manual' });
    if (options.wait === false) return ids.map((id) => ({ id, phase: 'pending' as const, error: null }));
    return waitForResources(db, BACKUP_RUN_KIND, ids, WAIT_MS);
  });
  if (options.json) printJson({ runs: outcomes });
  else printTable(outcomes, ['id', 'phase', 'error']);
  if (options.wait !== false && outcomes.some((o) => o.phase !== 'ready')) process.exitCode = EXIT.failure;
}

export async function backupsList(ctx: CommandContext, options: { tenant?: string; json?: boolean }) {
  const rows = await withDatabase(ctx, async ({ db }) => {
    const tenants = options.tenant
      ? [await tenantOrThrow(db, options.tenant)]
      : await db.selectFrom('tenants').select(['id', 'slug']).orderBy('slug').execute();
    const out = [];
    for (const t of tenants) for (const b of await listBackups(db, t.id)) out.push({ tenant: t.slug, ...b });
    return out;
  });
  if (options.json) return printJson({ backups: rows });
  printTable(
    rows.map((r) => ({ ...r, snapshot: r.snapshot?.slice(0, 8) ?? null })),
    [
      'tenant',
      'time',
      'service',
      'kind',
      'purpose',
      'snapshot',
      'sizeBytes',
      'addedBytes',
      'durationMs',
      'verified',
      'restoreMs',
    ],
  );
}

/**
 * `aiqso backups verify`: restore each tenant's latest database snapshots
 * into scratch databases, compare their row counts, `restic check` a sample
 * of the repository's data; record each verification (and RTO), alert the
 * admins of a failed one. Runs here, not on a worker. Exit 0 every tenant
 * passed, 1 one failed, 2 the tenant has no snapshot to verify, 3 no such tenant.
 */
export async function backupsVerify(ctx: CommandContext, options: { tenant?: string; json?: boolean }) {
  const results = await withDatabase(ctx, async (database) => {
    const { db } = database;
    if (options.tenant) await tenantOrThrow(db, options.tenant);
    const tenants = await verifiableTenants(db, options.tenant);
    if (options.tenant && tenants.length === 0)
      throw new DomainError('conflict', `${options.tenant} has no recorded database snapshot to verify`);
    const deps = {
      db,
      ...backupEngine(ctx.config, db),
      server: { pool: database.pool, url: database.url },
      readDataPercent: ctx.config.backup.verifyReadPercent,
    };
    const verified = await verifyTenants(deps, tenants);
    return verified.map((v) => ({
      tenant: tenants.find((t) => t.id === v.tenantId)!.slug,
      verification: v.id,
      status: v.status,
      rtoMs: v.rtoMs,
      snapshots: v.snapshots,
      error: v.error,
    }));
  });
  if (options.json) printJson({ verifications: results });
  else printTable(results, ['tenant', 'verification', 'status', 'rtoMs', 'error']);
  if (results.some((r) => r.status !== 'passed')) process.exitCode = EXIT.failure;
}

/**
 * `aiqso tenants export <slug>`: the tenant's data export (GDPR Art. 20),
 * built by a worker from a fresh snapshot; waits and prints where the
 * archive is, its size, sha256 and expiry. Exit 1 when it failed or no
 * worker built it in time, 3 no such tenant.
 */
export async function tenantsExport(ctx: CommandContext, slug: string, options: { json?: boolean }) {
  const result = await withDatabase(ctx, async ({ db }) => {
    const tenant = await tenantOrThrow(db, slug);
    const { exportId, expiresAt } = await requestTenantExport(db, {
      tenantId: tenant.id,
      requestedBy: `operator:${operator() ?? 'unknown'}`,
      ttlMs: EXPORT_TTL_DAYS * 86_400_000,
    });
    await appendAudit(db, {
      actorType: 'operator',
      actorId: operator(),
      tenantId: tenant.id,
      action: 'tenant.export',
      targetType: 'tenant',
      targetId: tenant.id,
      result: 'success',
      details: { via: 'cli', export: exportId },
    });
    const [outcome] = await waitForResources(db, TENANT_EXPORT_KIND, [exportId], WAIT_MS);
    const row = await db
      .selectFrom('tenant_exports')
      .select(['file', 'size_bytes', 'sha256', 'status'])
      .where('id', '=', exportId)
      .executeTakeFirstOrThrow();
    return {
      export: exportId,
      phase: outcome!.phase,
      status: row.status,
      file: row.file,
      sizeBytes: row.size_bytes === null ? null : Number(row.size_bytes),
      sha256: row.sha256,
      expiresAt,
      error: outcome!.error,
    };
  });
  if (options.json) printJson(result);
  else if (result.phase === 'ready')
    process.stdout.write(
      `${slug}: export ${result.export} is ${result.file} (${result.sizeBytes} bytes, sha256 ${result.sha256}); kept until ${result.expiresAt.toISOString()}.\n`,
    );
  else
    process.stderr.write(
      `aiqso: export ${result.export} of ${slug} is ${result.phase === 'failed' ? 'failed' : 'not finished'}: ${result.error ?? 'no worker built it in time'}\n`,
    );
  if (result.phase !== 'ready') process.exitCode = EXIT.failure;
}

export async function restoreService(
  ctx: CommandContext,
  tenantRef: string,
  service: string,
  options: { snapshot?: string; at?: string; json?: boolean },
): Promise<void> {
  if (options.snapshot && options.at)
    throw new DomainError('bad_request', 'give --snapshot or --at, not both');
  const at = options.at === undefined ? undefined : new Date(options.at);
  if (at && Number.isNaN(at.getTime()))
    throw new DomainError(
      'bad_request',
      `--at must be an ISO time such as 2026-01-31T02:00:00Z, got "${options.at}"`,
    );
  const result = await withDatabase(ctx, async ({ db }) => {
    const tenant = await tenantOrThrow(db, tenantRef);
    const audit = (result: 'success' | 'failure', details: Record<string, unknown>) =>
      appendAudit(db, {
        actorType: 'operator',
        actorId: operator(),
        tenantId: tenant.id,
        action: 'tenant.service.restore',
        targetType: 'service',
        targetId: service,
        result,
        details: { via: 'cli', ...details },
      });
    let started;
    try {
      started = await requestServiceRestore(db, backupEngine(ctx.config, db), {
        tenantId: tenant.id,
        service,
        snapshot: options.snapshot,
        at,
        requestedBy: `operator:${operator() ?? 'unknown'}`,
      });
    } catch (err) {
      if (err instanceof DomainError) await audit('failure', { error: err.message });
      throw err;
    }
    await audit('success', { restore: started.restoreId, snapshot: started.snapshot });
    const [outcome] = await waitForResources(db, SERVICE_RESTORE_KIND, [started.restoreId], WAIT_MS);
    const row = await db
      .selectFrom('restores')
      .select(['status', 'steps_done'])
      .where('id', '=', started.restoreId)
      .executeTakeFirstOrThrow();
    return { ...started, ...outcome!, status: row.status, stepsDone: row.steps_done };
  });
  if (options.json) printJson(result);
  else if (result.phase === 'ready')
    process.stdout.write(
      `${tenantRef} ${service}: restored to snapshot ${result.snapshot.slice(0, 8)} of ${result.time.toISOString()} (restore ${result.restoreId}).\n`,
    );
  else
    process.stderr.write(
      `aiqso: restore ${result.restoreId} of ${service} is ${result.phase === 'failed' ? 'failed' : 'not finished'} after steps [${result.stepsDone.join(', ')}]: ${result.error ?? 'no worker finished it in time'}\n`,
    );
  if (result.phase !== 'ready') process.exitCode = EXIT.failure;
}
