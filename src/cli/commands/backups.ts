import os from 'node:os';
import { backupEngine } from '../../platform/backups.ts';
import {
  backupTenants,
  listBackups,
  requestServiceRestore,
  requestTenantRestore,
  startBackupRuns,
  waitForResources,
} from '../../backup/requests.ts';
import { SERVICE_RESTORE_KIND } from '../../backup/restore.ts';
import { BACKUP_RUN_KIND } from '../../backup/run.ts';
import { verifiableTenants, verifyTenants } from '../../backup/verify.ts';
import { createComputeDriver } from '../../compute/index.ts';
import { EXPORT_TTL_DAYS, requestTenantExport, TENANT_EXPORT_KIND } from '../../backup/export.ts';
import { DomainError } from '../../core/errors.ts';
import { findTenant } from '../../db/tenants.ts';
import { appendAudit } from '../../identity/audit.ts';
import { withDatabase, type CommandContext } from '../context.ts';
import {
  databaseIsEmpty,
  findPlatformSnapshot,
  listPlatformSnapshots,
  platformRepository,
  restorePlatform,
  runPlatformBackup,
} from '../../backup/platform.ts';
import { resticFor } from '../../backup/restic.ts';
import { readMasterKey } from '../../identity/master-key.ts';
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

/** How a parsed `--at` reads, or a usage error naming what was wrong. */
function parseAt(at: string | undefined): Date | undefined {
  const time = at === undefined ? undefined : new Date(at);
  if (time && Number.isNaN(time.getTime()))
    throw new DomainError(
      'bad_request',
      `--at must be an ISO time such as 2026-01-31T02:00:00Z, got "${at}"`,
    );
  return time;
}

/** What a restore row says once its resource settled. */
async function restoreRows(db: Parameters<typeof findTenant>[0], ids: string[]) {
  return db
    .selectFrom('restores')
    .select(['id', 'service', 'status', 'steps_done', 'error'])
    .where('id', 'in', ids)
    .execute();
}

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
  options: { tenant?: string; platform?: boolean; json?: boolean; wait?: boolean },
): Promise<void> {
  if (options.platform) {
    if (options.tenant) throw new DomainError('bad_request', 'give --platform or --tenant, not both');
    const done = await withDatabase(ctx, async ({ db, url }) => {
      const masterKey = await readMasterKey({
        configured: ctx.config.masterKey,
        dataDir: ctx.config.dataDir,
      });
      if (!masterKey)
        throw new DomainError(
          'conflict',
          'no master key (AIQSO_MASTER_KEY or <data>/master.key) to derive the platform repository key from',
        );
      const { restic } = backupEngine(ctx.config, db);
      return runPlatformBackup({ db, restic, base: ctx.config.backup.repository, masterKey, masterUrl: url });
    });
    if (options.json) printJson({ platform: done });
    else
      process.stdout.write(
        `master database backed up: snapshot ${done.snapshot.slice(0, 8)} in ${done.location} (${done.sizeBytes} bytes, ${done.addedBytes} added).\n`,
      );
    return;
  }
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

/**
 * `aiqso backups list --platform`: the platform repository's snapshots, read
 * from the repository with the master key alone (no database is opened), so
 * it answers on a new machine before `aiqso restore platform`.
 */
async function platformList(ctx: CommandContext, options: { json?: boolean }) {
  const { config } = ctx;
  const masterKey = await readMasterKey({ configured: config.masterKey, dataDir: config.dataDir });
  if (!masterKey)
    throw new DomainError(
      'bad_request',
      `no master key: set AIQSO_MASTER_KEY (or put the platform's master.key in ${config.dataDir}); the platform repository opens with it`,
    );
  const restic = resticFor(config);
  const repo = platformRepository(config.backup.repository, masterKey);
  const snapshots = await listPlatformSnapshots(restic, repo);
  if (options.json) return printJson({ repository: repo.location, snapshots });
  printTable(
    snapshots.map((s) => ({ ...s, snapshot: s.snapshot.slice(0, 8) })),
    ['time', 'snapshot', 'run', 'key'],
  );
}

export async function backupsList(
  ctx: CommandContext,
  options: { tenant?: string; platform?: boolean; json?: boolean },
) {
  if (options.platform) {
    if (options.tenant) throw new DomainError('bad_request', 'give --platform or --tenant, not both');
    return platformList(ctx, options);
  }
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
      throw new DomainError('conflict', `${options.tenant} has no recorded snapshot to verify`);
    // On Proxmox, data snapshots name vzdump archives on its storage: the verification looks for them.
    const compute =
      ctx.config.driver === 'proxmox' ? await createComputeDriver(ctx.config, db, ctx.log) : undefined;
    const deps = {
      db,
      ...backupEngine(ctx.config, db),
      server: { pool: database.pool, url: database.url },
      readDataPercent: ctx.config.backup.verifyReadPercent,
      compute,
    };
    const verified = await verifyTenants(deps, tenants).finally(() => compute?.close());
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
  const at = parseAt(options.at);
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
    const [row] = await restoreRows(db, [started.restoreId]);
    return {
      ...started,
      ...outcome!,
      status: row!.status,
      stepsDone: row!.steps_done,
      error: outcome!.error ?? row!.error,
    };
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

export async function restoreTenant(
  ctx: CommandContext,
  tenantRef: string,
  options: { at?: string; json?: boolean },
): Promise<void> {
  const at = parseAt(options.at);
  const result = await withDatabase(ctx, async ({ db }) => {
    const tenant = await tenantOrThrow(db, tenantRef);
    const audit = (result: 'success' | 'failure', details: Record<string, unknown>) =>
      appendAudit(db, {
        actorType: 'operator',
        actorId: operator(),
        tenantId: tenant.id,
        action: 'tenant.restore',
        targetType: 'tenant',
        targetId: tenant.id,
        result,
        details: { via: 'cli', ...details },
      });
    let started;
    try {
      started = await requestTenantRestore(db, backupEngine(ctx.config, db), {
        tenantId: tenant.id,
        at,
        requestedBy: `operator:${operator() ?? 'unknown'}`,
      });
    } catch (err) {
      if (err instanceof DomainError) await audit('failure', { error: err.message });
      throw err;
    }
    const ids = started.restores.map((r) => r.restoreId);
    await audit('success', {
      restores: started.restores.map((r) => ({
        service: r.service,
        restore: r.restoreId,
        snapshot: r.snapshot,
      })),
      at: at?.toISOString() ?? null,
    });
    const outcomes = await waitForResources(db, SERVICE_RESTORE_KIND, ids, WAIT_MS);
    const rows = await restoreRows(db, ids);
    return started.restores.map((p) => {
      const o = outcomes.find((x) => x.id === p.restoreId)!;
      const row = rows.find((x) => x.id === p.restoreId)!;
      return {
        restore: p.restoreId,
        service: p.service,
        snapshot: p.snapshot,
        dataSnapshot: p.dataSnapshot,
        time: p.time,
        phase: o.phase,
        status: row.status,
        stepsDone: row.steps_done,
        error: o.error ?? row.error,
      };
    });
  });
  if (options.json) printJson({ tenant: tenantRef, restores: result });
  else
    printTable(
      result.map((r) => ({ ...r, snapshot: r.snapshot.slice(0, 8), stepsDone: r.stepsDone.join(', ') })),
      ['service', 'restore', 'snapshot', 'time', 'status', 'stepsDone', 'error'],
    );
  if (result.some((r) => r.phase !== 'ready')) process.exitCode = EXIT.failure;
}

/**
 * `aiqso restore platform --snapshot ID`: the master database back from the
 * platform repository into an empty database. Checked before anything is
 * written: the master key (AIQSO_MASTER_KEY or <data>/master.key; exit 2
 * without), the snapshot (exit 3 unknown), the repository (exit 1
 * unreachable), the target database empty (exit 2 otherwise).
 */
export async function restorePlatformCommand(
  ctx: CommandContext,
  options: { snapshot: string; json?: boolean },
): Promise<void> {
  const { config } = ctx;
  const masterKey = await readMasterKey({ configured: config.masterKey, dataDir: config.dataDir });
  if (!masterKey)
    throw new DomainError(
      'bad_request',
      `no master key: set AIQSO_MASTER_KEY (or put the platform's master.key in ${config.dataDir}); the platform repository opens with it`,
    );
  const restic = resticFor(config);
  const repo = platformRepository(config.backup.repository, masterKey);
  const snapshot = await findPlatformSnapshot(restic, repo, options.snapshot);
  const { connectMasterDatabase } = await import('../../db/connect.ts');
  let tenants = 0;
  // Not migrated: the dump brings the schema, and the target must be empty.
  const target = await connectMasterDatabase(config, ctx.log, {
    migrate: false,
    poolSize: 1,
    applicationName: 'aiqso-restore',
  });
  try {
    const { empty, tables } = await databaseIsEmpty(target.url);
    if (!empty)
      throw new DomainError(
        'conflict',
        `the target database already holds ${tables} tables; restore platform fills an empty database only (create one and point DATABASE_URL at it, or use an empty data dir)`,
      );
    await restorePlatform({ restic, repo, snapshot: snapshot.id, targetUrl: target.url });
    const counted = await target.db
      .selectFrom('tenants')
      .select((eb) => eb.fn.countAll<string>().as('n'))
      .executeTakeFirstOrThrow();
    tenants = Number(counted.n);
    await appendAudit(target.db, {
      actorType: 'operator',
      actorId: operator(),
      tenantId: null,
      action: 'platform.restored',
      targetType: 'platform',
      targetId: snapshot.id,
      result: 'success',
      details: {
        via: 'cli',
        snapshot: snapshot.id,
        time: snapshot.time.toISOString(),
        repository: repo.location,
      },
    });
  } finally {
    await target.close();
  }
  const result = { snapshot: snapshot.id, time: snapshot.time, repository: repo.location, tenants };
  if (options.json) printJson(result);
  else
    process.stdout.write(
      `master database restored from snapshot ${snapshot.id.slice(0, 8)} of ${snapshot.time.toISOString()} (${tenants} tenants). Start the platform (aiqso up), then bring each tenant's services back with aiqso restore tenant.\n`,
    );
}
