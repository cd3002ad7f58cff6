import { sql } from 'kysely';
import { z } from 'zod';
import type { ComputeDriver } from '../core/compute.ts';
import { DomainError } from '../core/errors.ts';
import type { Reconciler, ReconcileStep, StepContext } from '../core/reconcile.ts';
import type { Database } from '../db/database.ts';
import { appendAudit } from '../identity/audit.ts';
import { runSteps } from '../orchestrator/engine.ts';
import { serviceTemplateSchema } from '../catalog/schema.ts';
import { probe } from '../services/deploy-context.ts';
import { restoreDatabase } from './database.ts';
import type { RepositoryKeys } from './repositories.ts';
import type { Restic } from './restic.ts';
import type { BackupRunSpec } from './run.ts';

/**
 * A restore of one tenant service to a recorded database snapshot, as a
 * resource of kind `service-restore` whose id is the `restores` row's. Steps:
 * a safety snapshot of what is about to be replaced, the service stopped,
 * its database replaced in one transaction (pg_restore --single-transaction),
 * the service started and health-checked, the result audited. The row's
 * `steps_done` is what each step observes, so a restore killed anywhere
 * resumes; until it is `done`, the row says it is under way (or `failed`,
 * with the reason).
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
    .select(['r.status', 'ts.container_name', 'ts.db_name', 'ts.db_role', 's.template'])
    .where('r.id', '=', id)
    .executeTakeFirst();
  if (!row) throw new DomainError('validation_failed', `restore ${id} has no row`);
  return row;
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
  const step = (name: string, act: (ctx: Ctx) => Promise<void>): ReconcileStep<Spec> => ({
    name,
    observe: (ctx) => done(ctx, name),
    async apply(ctx) {
      await act(ctx);
      await mark(ctx, name);
    },
  });

  const steps = [
    step('safety snapshot', async (ctx) => {
      const r = await load(ctx);
      await runSteps({
        reconciler: deps.backupRun,
        target: {
          kind: deps.backupRun.kind,
          id: safetyRunId(r.id),
          tenantId: r.tenant_id,
          spec: { tenantId: r.tenant_id, purpose: 'safety', services: [r.service] },
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
    step('stop service', async (ctx) => {
      const r = await load(ctx);
      if (r.container_name) await deps.compute.stop(r.container_name);
    }),
    step('database', async (ctx) => {
      const r = await load(ctx);
      if (!r.db_name || !r.db_role) return;
      const repo = await deps.keys.forTenant(r.tenant_id);
      await restoreDatabase(deps.restic, repo, r.snapshot_id, {
        ...deps.dbLocal,
        name: r.db_name,
        role: r.db_role,
        password: await deps.rootSecret(r.tenant_service_id),
      });
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
      await deps.db
        .updateTable('restores')
        .set({ status: 'done', finished_at: sql`now()`, error: null })
        .where('id', '=', r.id)
        .execute();
      await appendAudit(deps.db, {
        actorType: 'system',
        actorId: null,
        tenantId: r.tenant_id,
        action: 'tenant.service.restored',
        targetType: 'service',
        targetId: r.service,
        result: 'success',
        details: { restore: r.id, snapshot: r.snapshot_id, safetyRun: safetyRunId(r.id) },
      });
    }),
  ];
  return { kind: SERVICE_RESTORE_KIND, parseSpec: (raw) => specSchema.parse(raw), steps };
}
