import { z } from 'zod';
import { DomainError } from '../core/errors.ts';
import type { Observation, Reconciler, ReconcileStep, StepContext } from '../core/reconcile.ts';
import { selectKept, type KeepPolicy } from '../core/retention.ts';
import type { Database } from '../db/database.ts';
import { applyResource, findResource } from '../orchestrator/resources.ts';
import { repositorySteps } from './locks.ts';
import { platformRepository, takePlatformSnapshot } from './platform.ts';
import type { Restic, ResticRepository } from './restic.ts';

/**
 * The master database backed up on the `backups` schedule: each firing
 * queues one resource of kind `platform-backup` (its id derived from the
 * firing, so two workers or a retried job queue it once) next to the
 * tenants' runs. Its steps: the platform repository (made if missing), stale
 * locks, and the snapshot, recorded in `platform_backups` under the run's id;
 * a run killed anywhere resumes, and a snapshot restic stored but the run
 * never recorded is forgotten and taken again. It shows in `aiqso jobs`, and
 * one that keeps failing becomes a failed resource that alerts the admins.
 */
export const PLATFORM_BACKUP_KIND = 'platform-backup';

const specSchema = z.object({ purpose: z.enum(['scheduled', 'manual']) });
type Spec = z.infer<typeof specSchema>;

/** `bkp_master_<yyyymmddhhmm>` of the firing (a `platform_backups` id). */
export const platformRunId = (firedAt: Date) =>
  `bkp_master_${firedAt.toISOString().slice(0, 16).replace(/[-:T]/g, '')}`;

export interface PlatformBackupDeps {
  db: Database;
  restic: Restic;
  /** AIQSO_BACKUP_REPOSITORY. */
  base: string;
  /** The master key (the platform repository's password is derived from it); undefined when there is none. */
  masterKey(): Promise<Buffer | undefined>;
  /** The master database pg_dump reads. */
  masterUrl: string;
}

async function openRepository(deps: PlatformBackupDeps): Promise<ResticRepository & { keyId: string }> {
  const key = await deps.masterKey();
  if (!key)
    throw new DomainError(
      'conflict',
      'no master key (AIQSO_MASTER_KEY or <data>/master.key) to derive the platform repository key from',
    );
  return platformRepository(deps.base, key);
}

export function platformBackupReconciler(deps: PlatformBackupDeps): Reconciler<Spec> {
  const repo = () => openRepository(deps);
  const recorded = async (id: string) =>
    (await deps.db.selectFrom('platform_backups').select('id').where('id', '=', id).executeTakeFirst()) !==
    undefined;
  // A run whose snapshot is recorded is over: later looks (resyncs) do not ask restic again.
  const unlessRecorded =
    (observe: (ctx: StepContext<Spec>) => Promise<Observation>) =>
    async (ctx: StepContext<Spec>): Promise<Observation> =>
      (await recorded(ctx.resource.id)) ? 'ok' : observe(ctx);
  const steps: ReconcileStep<Spec>[] = [
    ...repositorySteps<Spec>(deps.restic, repo, unlessRecorded),
    {
      name: 'master database',
      async observe(ctx) {
        return (await recorded(ctx.resource.id)) ? 'ok' : 'missing';
      },
      async apply(ctx) {
        await takePlatformSnapshot({ ...deps, repo: await repo(), id: ctx.resource.id });
      },
    },
  ];
  return { kind: PLATFORM_BACKUP_KIND, parseSpec: (raw) => specSchema.parse(raw), steps };
}

/** Queue the platform's run of this firing, once however often the firing is seen; returns its id. */
export async function startPlatformBackupRun(db: Database, firedAt: Date): Promise<string> {
  const id = platformRunId(firedAt);
  if (!(await findResource(db, { kind: PLATFORM_BACKUP_KIND, id })))
    await applyResource(db, { kind: PLATFORM_BACKUP_KIND, id, spec: { purpose: 'scheduled' } });
  return id;
}

/**
 * AIQSO_BACKUP_KEEP applied to the platform repository of the current master
 * key, as to a tenant's: the GFS selection of `core/retention.ts` over its
 * `kind=master` snapshots; the rest forgotten by id and pruned, and their
 * `platform_backups` rows removed. A repository of an older master key is
 * left alone (this key does not open it). Returns how many snapshots went.
 */
export async function applyPlatformRetention(
  deps: { db: Database; restic: Restic; repo: ResticRepository },
  policy: KeepPolicy,
): Promise<number> {
  if (!(await deps.restic.exists(deps.repo))) return 0;
  const snapshots = await deps.restic.snapshots(deps.repo, ['kind=master']);
  const kept = selectKept(snapshots, policy);
  const forget = snapshots.filter((s) => !kept.has(s.id)).map((s) => s.id);
  // Rows first: a crash in between leaves snapshots no row names (forgotten next time), never a
  // row naming a snapshot that is gone.
  for (let i = 0; i < forget.length; i += 500)
    await deps.db
      .deleteFrom('platform_backups')
      .where('snapshot_id', 'in', forget.slice(i, i + 500))
      .execute();
  await deps.restic.forget(deps.repo, forget);
  return forget.length;
}

/** The `retention` schedule's part for the platform repository (nothing when there is no master key). */
export async function applyPlatformRetentionFor(
  deps: PlatformBackupDeps,
  policy: KeepPolicy,
): Promise<number> {
  const key = await deps.masterKey();
  if (!key) return 0;
  return applyPlatformRetention({ ...deps, repo: platformRepository(deps.base, key) }, policy);
}
