import { open as openFile, mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { createWriteStream } from 'node:fs';
import { finished } from 'node:stream/promises';
import { sql, type Transaction } from 'kysely';
import type pg from 'pg';
import { z } from 'zod';
import type { ComputeDriver, ContainerSpec } from '../core/compute.ts';
import { DomainError } from '../core/errors.ts';
import { TENANT_SERVICE_KIND } from '../core/kinds.ts';
import {
  requeueAfter,
  type Reconciler,
  type ReconcileStep,
  type StepContext,
  type StepResult,
} from '../core/reconcile.ts';
import type { Database } from '../db/database.ts';
import type { DB } from '../db/tables.ts';
import { appendAuditIn } from '../identity/audit.ts';
import { runSteps } from '../orchestrator/engine.ts';
import { requestReconcile } from '../orchestrator/queue.ts';
import { RESOURCE_LOCK_NS } from '../orchestrator/reconcile-task.ts';
import { serviceTemplateSchema } from '../catalog/schema.ts';
import { ensureServiceDatabase, serviceDatabaseExists } from '../services/databases.ts';
import { probe } from '../services/deploy-context.ts';
import { restoreDatabase } from './database.ts';
import type { RepositoryKeys } from './repositories.ts';
import type { Restic } from './restic.ts';
import { DATA_FILE, type BackupRunSpec } from './run.ts';

/**
 * A restore of one tenant service to a recorded snapshot, as a resource of
 * kind `service-restore` whose id is the `restores` row's. Steps: a safety
 * snapshot of what is about to be replaced, the service held (its own
 * reconciler and the health monitor leave it alone while the row is
 * `running`), stopped, its database re-created if it is gone and replaced in
 * one transaction (pg_restore --single-transaction), its container's data put
 * back from the same run's `data` snapshot (the container re-created from the
 * catalog if it is gone), the service started and health-checked, the result
 * audited. The row's `steps_done` is what each step observes, so a restore
 * killed anywhere resumes; until it is `done`, the row says it is under way,
 * or `failed` with the reason once the platform gave up on it.
 */
export const SERVICE_RESTORE_KIND = 'service-restore';

const specSchema = z.object({ restoreId: z.string().regex(/^rst_/) });
type Spec = z.infer<typeof specSchema>;
type Ctx = StepContext<Spec>;

export interface RestoreDeps {
  db: Database;
  restic: Restic;
  keys: RepositoryKeys;
  compute: ComputeDriver;
  dbLocal: { host: string; port: number };
  rootSecret(tenantServiceId: string): Promise<string>;
  /** The master database's pool: re-creates a service database that is gone. */
  admin: pg.Pool;
  /** The service's container as its catalog template makes it (to re-create one that is gone). */
  containerSpec(tenantServiceId: string): Promise<ContainerSpec>;
  /** 0700 directory a data archive passes through on its way out of restic. */
  stagingDir: string;
  /** The backup-run reconciler: the safety snapshot is a run of it. */
  backupRun: Reconciler<BackupRunSpec>;
  healthPollMs?: number;
}

async function loadRestore(db: Database, id: string) {
  const row = await db
    .selectFrom('restores as r')
    .innerJoin('tenant_services as ts', 'ts.id', 'r.tenant_service_id')
    .innerJoin('services as s', 's.id', 'ts.service_id')
    .select(['r.id', 'r.tenant_id', 'r.tenant_service_id', 'r.service', 'r.snapshot_id', 'r.steps_done'])
    .select(['r.data_snapshot_id'])
    .select(['r.status', 'ts.container_name', 'ts.db_name', 'ts.db_role', 's.template'])
    .where('r.id', '=', id)
    .executeTakeFirst();
  if (!row) throw new DomainError('validation_failed', `restore ${id} has no row`);
  return row;
}

type Row = Awaited<ReturnType<typeof loadRestore>>;

/**
 * A data snapshot whose archive stays on the compute driver's storage (a
 * Proxmox vzdump volume its manifest names): the volume must still be there,
 * else the restore is refused (not retried) before anything is stopped or
 * replaced.
 */
export async function requireDataArchive(
  deps: { db: Database; compute: Pick<ComputeDriver, 'exportVolumes'> },
  r: { tenant_id: string; service: string; data_snapshot_id: string | null },
): Promise<void> {
  if (!r.data_snapshot_id) return;
  const row = await deps.db
    .selectFrom('backups')
    .select('archive_volume')
    .where('tenant_id', '=', r.tenant_id)
    .where('snapshot_id', '=', r.data_snapshot_id)
    .where('archive_volume', 'is not', null)
    .executeTakeFirst();
  if (!row) return;
  const volume = row.archive_volume!;
  const volumes = deps.compute.exportVolumes;
  if (!volumes)
    throw new DomainError(
      'conflict',
      `the data snapshot ${r.data_snapshot_id.slice(0, 8)} of ${r.service} names the archive ${volume} on a compute driver this platform no longer runs; nothing was changed`,
    );
  if (!(await volumes.exists(volume)))
    throw new DomainError(
      'conflict',
      `the data snapshot ${r.data_snapshot_id.slice(0, 8)} of ${r.service} names the archive ${volume}, which is no longer on the storage; nothing was changed`,
    );
}

export const safetyRunId = (restoreId: string) => `run_safety_${restoreId.slice(4)}`;

export function serviceRestoreReconciler(deps: RestoreDeps): Reconciler<Spec> {
  const load = (ctx: Ctx) => loadRestore(deps.db, ctx.resource.spec.restoreId);
  const done = async (ctx: Ctx, name: string) =>
    (await load(ctx)).steps_done.includes(name) ? ('ok' as const) : ('missing' as const);
  const mark = async (ctx: Ctx, name: string) => {
    await deps.db
      .updateTable('restores')
      .set({ steps_done: sql`array_append(steps_done, ${name})` })
      .where('id', '=', ctx.resource.spec.restoreId)
      .where(sql<boolean>`NOT (${name} = ANY(steps_done))`)
      .execute();
  };
  const step = (name: string, act: (ctx: Ctx) => Promise<StepResult>): ReconcileStep<Spec> => ({
    name,
    observe: (ctx) => done(ctx, name),
    async apply(ctx) {
      // A failed restore the operator retries is under way again.
      await deps.db
        .updateTable('restores')
        .set({ status: 'running', error: null, finished_at: null })
        .where('id', '=', ctx.resource.spec.restoreId)
        .where('status', '=', 'failed')
        .execute();
      const result = await act(ctx);
      if (result) return result;
      await mark(ctx, name);
    },
  });
  const databaseExists = async (r: Row) =>
    r.db_name !== null && (await serviceDatabaseExists(deps.admin, r.db_name));
  const containerExists = async (r: Row) =>
    r.container_name !== null && (await deps.compute.status(r.container_name)).state !== 'missing';

  const steps = [
    step('safety snapshot', async (ctx) => {
      const r = await load(ctx);
      // Before anything changes: a data archive kept on the driver's storage must still be there.
      await requireDataArchive(deps, r);
      // Only what exists now can be kept: a database or container that is gone has nothing to save.
      const kinds: ('database' | 'data')[] = [];
      if (await databaseExists(r)) kinds.push('database');
      if (await containerExists(r)) kinds.push('data');
      if (kinds.length === 0) return;
      await runSteps({
        reconciler: deps.backupRun,
        target: {
          kind: deps.backupRun.kind,
          id: safetyRunId(r.id),
          tenantId: r.tenant_id,
          spec: { tenantId: r.tenant_id, purpose: 'safety', services: [r.service], kinds },
          generation: 1,
        },
        deleting: false,
        previous: [],
        converged: false,
        signal: ctx.signal,
        onProgress: () => Promise.resolve(),
      });
      await deps.db
        .updateTable('restores')
        .set({ safety_run_id: safetyRunId(r.id) })
        .where('id', '=', r.id)
        .execute();
    }),
    step('hold service', async (ctx) => {
      // The service's reconciler leaves it alone while this restore is running (it checks the row);
      // one that started before the row existed still holds the service's lock: wait for it to end.
      const r = await load(ctx);
      const key = `${TENANT_SERVICE_KIND}:${r.tenant_service_id}`;
      const free = await deps.db.transaction().execute(async (trx) => {
        const { rows } = await sql<{
          free: boolean;
        }>`SELECT pg_try_advisory_xact_lock(${RESOURCE_LOCK_NS}, hashtext(${key})) AS free`.execute(trx);
        return rows[0]!.free;
      });
      if (!free) return requeueAfter(500, `the reconcile of ${r.service} under way to end`);
    }),
    step('stop service', async (ctx) => {
      const r = await load(ctx);
      if (r.container_name) await deps.compute.stop(r.container_name);
    }),
    step('database', async (ctx) => {
      const r = await load(ctx);
      if (!r.db_name || !r.db_role) return;
      const password = await deps.rootSecret(r.tenant_service_id);
      // A database dropped by hand (or lost) is made again, empty, for the dump to fill.
      await ensureServiceDatabase(deps.admin, { name: r.db_name, role: r.db_role, password });
      const repo = await deps.keys.forTenant(r.tenant_id);
      await restoreDatabase(deps.restic, repo, r.snapshot_id, {
        ...deps.dbLocal,
        name: r.db_name,
        role: r.db_role,
        password,
      });
    }),
    step('data', async (ctx) => {
      const r = await load(ctx);
      if (!r.container_name) return;
      const spec = await deps.containerSpec(r.tenant_service_id);
      if (!r.data_snapshot_id) {
        // No data snapshot to put back: a container that is gone is made again from the catalog.
        await deps.compute.ensure(spec);
        return;
      }
      await mkdir(deps.stagingDir, { recursive: true, mode: 0o700 });
      const file = path.join(deps.stagingDir, `${r.id}-${r.service}.tar.gz`);
      // Created 0600 before restic writes into it: the archive holds the tenant's files.
      await (await openFile(file, 'w', 0o600)).close();
      try {
        const out = createWriteStream(file);
        const written = finished(out);
        try {
          await deps.restic.dump(
            await deps.keys.forTenant(r.tenant_id),
            r.data_snapshot_id,
            `/${DATA_FILE}`,
            out,
          );
          await written;
        } catch (err) {
          out.destroy();
          await written.catch(() => undefined);
          throw err;
        }
        // Replaces the container (made again from the catalog if it is gone) with the archive's files.
        await deps.compute.importFrom(spec, file);
      } finally {
        await rm(file, { force: true });
      }
    }),
    step('start service', async (ctx) => {
      const r = await load(ctx);
      if (r.container_name) await deps.compute.start(r.container_name);
    }),
    step('health check', async (ctx) => {
      const r = await load(ctx);
      if (!r.container_name) return;
      const { path, status, timeout_seconds } = serviceTemplateSchema.parse(r.template).health;
      const deadline = Date.now() + timeout_seconds * 1000;
      let last: number | string = 'no answer';
      while (Date.now() < deadline) {
        if (ctx.signal.aborted) throw new Error('worker shutting down');
        last = await probe(await deps.compute.status(r.container_name), path);
        if (last === status) return;
        await new Promise((resolve) => setTimeout(resolve, deps.healthPollMs ?? 250));
      }
      throw new DomainError(
        'deploy_failed',
        `after the restore, GET ${path} did not answer ${status} (${last})`,
      );
    }),
    step('record', async (ctx) => {
      const r = await load(ctx);
      if (r.status === 'done') return;
      // One commit: the row says done (and `record` among its steps) exactly when the audit entry and
      // the service's reconcile exist (a crash between them would leave a restore done with no record
      // of it, and nothing to make the service's route follow a re-created container).
      await deps.db.transaction().execute(async (trx) => {
        await trx
          .updateTable('restores')
          .set({
            status: 'done',
            finished_at: sql`now()`,
            error: null,
            steps_done: sql`array_append(steps_done, 'record')`,
          })
          .where('id', '=', r.id)
          .execute();
        await appendAuditIn(trx, {
          actorType: 'system',
          actorId: null,
          tenantId: r.tenant_id,
          action: 'tenant.service.restored',
          targetType: 'service',
          targetId: r.service,
          result: 'success',
          details: {
            restore: r.id,
            snapshot: r.snapshot_id,
            dataSnapshot: r.data_snapshot_id,
            safetyRun: safetyRunId(r.id),
          },
        });
        // The service's own reconciler looks again now (its route follows a re-created container).
        await requestReconcile(
          trx,
          { kind: TENANT_SERVICE_KIND, id: r.tenant_service_id },
          { reason: 'restored' },
        );
      });
    }),
  ];
  return {
    kind: SERVICE_RESTORE_KIND,
    parseSpec: (raw) => specSchema.parse(raw),
    steps,
    // In the transaction that marks the resource failed: a crash can never leave the resource given up
    // on while its restore row still says running (the service held for good, no restore possible).
    async onFailed(failure, trx) {
      const spec = specSchema.safeParse(failure.spec);
      if (!spec.success) return;
      const db = trx as Transaction<DB>;
      const r = await loadRestore(db, spec.data.restoreId);
      const updated = await db
        .updateTable('restores')
        .set({ status: 'failed', error: failure.error, finished_at: sql`now()` })
        .where('id', '=', r.id)
        .where('status', '=', 'running')
        .executeTakeFirst();
      if (Number(updated.numUpdatedRows) === 0) return;
      await appendAuditIn(db, {
        actorType: 'system',
        actorId: null,
        tenantId: r.tenant_id,
        action: 'tenant.service.restored',
        targetType: 'service',
        targetId: r.service,
        result: 'failure',
        details: { restore: r.id, snapshot: r.snapshot_id, stepsDone: r.steps_done, error: failure.error },
      });
      // The service is no longer held: its reconciler brings it back to its spec.
      await requestReconcile(
        db,
        { kind: TENANT_SERVICE_KIND, id: r.tenant_service_id },
        { reason: 'restore failed' },
      );
    },
  };
}
