import { createReadStream } from 'node:fs';
import { mkdir, open, rm } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import type { ComputeDriver } from '../core/compute.ts';
import { newId } from '../core/ids.ts';
import type { Observation, Reconciler, ReconcileStep, StepContext } from '../core/reconcile.ts';
import type { Database } from '../db/database.ts';
import type { Kysely } from 'kysely';
import type { DB } from '../db/tables.ts';
import { emitTenantEvent, eventOutboxKey } from '../events/emit.ts';
import { outboxHas } from '../orchestrator/outbox.ts';
import { listArchiveFile } from './archive.ts';
import { snapshotDatabase } from './database.ts';
import { repositorySteps } from './locks.ts';
import type { RepositoryKeys } from './repositories.ts';
import type { Restic, ResticRepository } from './restic.ts';

/**
 * A backup run: one tenant's services, each as one restic snapshot of its
 * database (with row counts) and one of its container's persistent data,
 * tagged `tenant=…`, `service=…`, `kind=…`, `run=…`. A resource of kind
 * `backup-run` with named steps; each step looks in the `backups` table for
 * what this run already recorded, so a run killed anywhere resumes where it
 * stopped. A snapshot restic stored but the run never recorded (killed in
 * between) is forgotten and taken again: only recorded snapshots count.
 */
export const BACKUP_RUN_KIND = 'backup-run';

export const backupRunSpecSchema = z.object({
  tenantId: z.string().regex(/^ten_[0-9a-z]{26}$/),
  purpose: z.enum(['scheduled', 'manual', 'safety']),
  /** Only these services (catalog keys); all of the tenant's when absent. */
  services: z.array(z.string()).optional(),
  /** Only these kinds of snapshot; both when absent (a restore's safety run skips a database that is gone). */
  kinds: z.array(z.enum(['database', 'data'])).optional(),
  /** The time snapshots are dated (restic --time); now when absent. */
  time: z.iso.datetime().optional(),
});
export type BackupRunSpec = z.infer<typeof backupRunSpecSchema>;

/** A run id: deterministic for a schedule firing (one run per tenant and firing), random otherwise. */
export function backupRunId(tenantId: string, firedAt?: Date): string {
  const body = tenantId.replace(/^ten_/, '');
  if (!firedAt) return `run_${body}_${newId('backup').slice(4)}`;
  return `run_${body}_${firedAt.toISOString().slice(0, 16).replace(/[-:T]/g, '')}`;
}

export interface BackupDeps {
  db: Database;
  restic: Restic;
  keys: RepositoryKeys;
  compute: ComputeDriver;
  /** Where the control plane reaches the master database server (pg_dump runs here). */
  dbLocal: { host: string; port: number };
  rootSecret(tenantServiceId: string): Promise<string>;
  /** 0700 directory for a container's data archive on its way into restic. */
  stagingDir: string;
  /** restic's --host for every snapshot. */
  host: string;
}

export interface BackupTargetService {
  id: string;
  service: string;
  containerName: string | null;
  database: { name: string; role: string } | null;
}

/** The tenant's services a backup covers: every one that is deployed or deploying, not being removed. */
export async function backupTargets(db: Database, tenantId: string, only?: string[]) {
  const rows = await db
    .selectFrom('tenant_services as ts')
    .innerJoin('services as s', 's.id', 'ts.service_id')
    .select(['ts.id', 's.key', 'ts.container_name', 'ts.db_name', 'ts.db_role'])
    .where('ts.tenant_id', '=', tenantId)
    .where('ts.status', 'in', ['deploying', 'active', 'stopped', 'failed'])
    .orderBy('s.key')
    .execute();
  return rows
    .filter((r) => !only || only.includes(r.key))
    .map((r): BackupTargetService => ({
      id: r.id,
      service: r.key,
      containerName: r.container_name,
      database: r.db_name && r.db_role ? { name: r.db_name, role: r.db_role } : null,
    }));
}

type Ctx = StepContext<BackupRunSpec>;
type Kind = 'database' | 'data';

export function backupRunReconciler(deps: BackupDeps): Reconciler<BackupRunSpec> {
  const repo = (ctx: Ctx) => deps.keys.forTenant(ctx.resource.spec.tenantId);
  const tags = (ctx: Ctx, service: string, kind: Kind) => [
    `tenant=${ctx.resource.spec.tenantId}`,
    `service=${service}`,
    `kind=${kind}`,
    `run=${ctx.resource.id}`,
  ];
  const recorded = async (ctx: Ctx, kind: Kind) =>
    new Set(
      (
        await deps.db
          .selectFrom('backups')
          .select('service')
          .where('run_id', '=', ctx.resource.id)
          .where('kind', '=', kind)
          .where('status', '=', 'done')
          .execute()
      ).map((r) => r.service),
    );
  const hasData = async (s: BackupTargetService) =>
    s.containerName !== null && (await deps.compute.status(s.containerName)).state !== 'missing';
  const pending = async (ctx: Ctx, kind: Kind) => {
    if (ctx.resource.spec.kinds && !ctx.resource.spec.kinds.includes(kind)) return [];
    const done = await recorded(ctx, kind);
    const all = await backupTargets(deps.db, ctx.resource.spec.tenantId, ctx.resource.spec.services);
    const out: BackupTargetService[] = [];
    for (const s of all) {
      if (done.has(s.service)) continue;
      if (kind === 'database' ? s.database !== null : await hasData(s)) out.push(s);
    }
    return out;
  };

  /** Take one snapshot (after forgetting an unrecorded one of a killed attempt) and record it. */
  const snapshotOne = async (
    ctx: Ctx,
    r: ResticRepository,
    s: BackupTargetService,
    kind: Kind,
    take: (meta: { tags: string[]; host: string; time?: Date; signal: AbortSignal }) => Promise<{
      snapshotId: string;
      dataAdded: number;
      bytesProcessed: number;
      durationMs: number;
      rowCounts?: Record<string, number>;
      /** A data snapshot: its tar archive's listing, or the driver's volume its manifest names. */
      archive?: { files: number; bytes: number } | { volume: string };
    }>,
  ) => {
    const t = tags(ctx, s.service, kind);
    const leftovers = await deps.restic.snapshots(r, t);
    await deps.restic.forget(
      r,
      leftovers.map((x) => x.id),
    );
    const time = ctx.resource.spec.time ? new Date(ctx.resource.spec.time) : undefined;
    const started = Date.now();
    const summary = await take({ tags: t, host: deps.host, time, signal: ctx.signal });
    // The snapshot restic just reported, by its id (the summary may give the short one): not merely
    // the first carrying these tags. A restic orphaned by a killed platform finishes the partial
    // stream it was fed as a snapshot with the same tags; that one is forgotten, never recorded.
    const tagged = await deps.restic.snapshots(r, t);
    const snap = tagged.find((x) => x.id.startsWith(summary.snapshotId));
    if (!snap)
      throw new Error(`restic reported snapshot ${summary.snapshotId} for ${s.service} but does not list it`);
    await deps.restic.forget(
      r,
      tagged.filter((x) => x !== snap).map((x) => x.id),
    );
    await deps.db
      .insertInto('backups')
      .values({
        id: newId('backup'),
        tenant_id: ctx.resource.spec.tenantId,
        tenant_service_id: s.id,
        kind,
        status: 'done',
        location: r.location,
        size_bytes: String(summary.bytesProcessed),
        added_bytes: String(summary.dataAdded),
        duration_ms: Date.now() - started,
        row_counts: summary.rowCounts ? JSON.stringify(summary.rowCounts) : null,
        archive_files: summary.archive && 'files' in summary.archive ? summary.archive.files : null,
        archive_bytes: summary.archive && 'bytes' in summary.archive ? String(summary.archive.bytes) : null,
        archive_volume: summary.archive && 'volume' in summary.archive ? summary.archive.volume : null,
        run_id: ctx.resource.id,
        service: s.service,
        snapshot_id: snap.id,
        purpose: ctx.resource.spec.purpose,
        started_at: time ?? new Date(started),
        finished_at: new Date(),
      })
      .execute();
  };

  // A run whose completed event is written is over: every later look (the periodic resync, a
  // restart's) finds it done without asking restic, and never backs up a service subscribed since
  // under this old run's id.
  const completed = (ctx: Ctx) => outboxHas(deps.db, eventOutboxKey(`backup.completed:${ctx.resource.id}`));
  const unlessCompleted =
    (observe: (ctx: Ctx) => Promise<Observation>) =>
    async (ctx: Ctx): Promise<Observation> =>
      (await completed(ctx)) ? 'ok' : observe(ctx);
  const steps: ReconcileStep<BackupRunSpec>[] = [
    ...repositorySteps(deps.restic, repo, unlessCompleted),
    {
      name: 'databases',
      observe: unlessCompleted(async (ctx) =>
        (await pending(ctx, 'database')).length > 0 ? 'missing' : 'ok',
      ),
      async apply(ctx) {
        const r = await repo(ctx);
        for (const s of await pending(ctx, 'database')) {
          const target = { ...deps.dbLocal, ...s.database!, password: await deps.rootSecret(s.id) };
          await snapshotOne(ctx, r, s, 'database', (meta) => snapshotDatabase(deps.restic, r, target, meta));
        }
      },
    },
    {
      name: 'data',
      observe: unlessCompleted(async (ctx) => ((await pending(ctx, 'data')).length > 0 ? 'missing' : 'ok')),
      async apply(ctx) {
        const r = await repo(ctx);
        await mkdir(deps.stagingDir, { recursive: true, mode: 0o700 });
        for (const s of await pending(ctx, 'data')) {
          await snapshotOne(ctx, r, s, 'data', async (meta) => {
            const file = path.join(deps.stagingDir, `${ctx.resource.id}-${s.service}.tar.gz`);
            // Created 0600 before tar writes into it: the archive holds the tenant's files.
            await (await open(file, 'w', 0o600)).close();
            try {
              await deps.compute.exportTo(s.containerName!, file);
              // What a verification checks later: the tar's listing, or (an archive that stays on the
              // driver's storage, the file being its manifest) the volume, which retention and purge
              // delete with the snapshot.
              const volumes = deps.compute.exportVolumes;
              const archive = volumes ? { volume: await volumes.named(file) } : await listArchiveFile(file);
              const summary = await deps.restic.backupStdin(r, {
                ...meta,
                stdin: createReadStream(file),
                filename: DATA_FILE,
              });
              return { ...summary, archive };
            } finally {
              await rm(file, { force: true });
            }
          });
        }
      },
    },
  ];
  steps.push({
    // Last: the run is complete once this event is written (keyed by the run, so once).
    name: 'completed event',
    async observe(ctx) {
      return (await completed(ctx)) ? 'ok' : 'missing';
    },
    async apply(ctx) {
      const backups = await deps.db
        .selectFrom('backups')
        .select(['service', 'kind', 'snapshot_id', 'size_bytes', 'added_bytes', 'duration_ms'])
        .where('run_id', '=', ctx.resource.id)
        .where('status', '=', 'done')
        .orderBy('service')
        .orderBy('kind')
        .execute();
      await deps.db.transaction().execute(async (trx) => {
        await emitTenantEvent(
          trx,
          'backup.completed',
          ctx.resource.spec.tenantId,
          {
            run: { id: ctx.resource.id, purpose: ctx.resource.spec.purpose },
            backups: backups.map((b) => ({
              service: b.service,
              kind: b.kind,
              snapshot: b.snapshot_id,
              sizeBytes: b.size_bytes === null ? null : Number(b.size_bytes),
              addedBytes: b.added_bytes === null ? null : Number(b.added_bytes),
              durationMs: b.duration_ms,
            })),
          },
          { key: `backup.completed:${ctx.resource.id}` },
        );
      });
    },
  });
  return {
    kind: BACKUP_RUN_KIND,
    parseSpec: (raw) => backupRunSpecSchema.parse(raw),
    steps,
    async onFailed(failure, trx) {
      const spec = backupRunSpecSchema.safeParse(failure.spec);
      if (!spec.success) return;
      await emitTenantEvent(
        trx as Kysely<DB>,
        'backup.failed',
        spec.data.tenantId,
        { run: { id: failure.id, purpose: spec.data.purpose }, error: failure.error },
        { key: `backup.failed:${failure.id}` },
      );
    },
  };
}

/** The file name a data snapshot holds the container's archive under. */
export const DATA_FILE = 'data.tar.gz';
