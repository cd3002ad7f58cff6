import { sql, type Kysely } from 'kysely';
import type { Task } from 'graphile-worker';
import type { OrphanSource, OwnedThing } from '../core/reconcile.ts';
import type { DB } from '../db/tables.ts';
import type { Logger } from '../observability/logger.ts';
import { errorText } from './engine.ts';
import { requeueUnprocessedInbox } from './inbox.ts';
import { requeuePendingOutbox } from './outbox.ts';
import { removeSupersededJobs, requestReconcileAll, scheduleResync } from './queue.ts';
import type { ReconcilerRegistry } from './registry.ts';

export interface OrphanReport {
  /** Everything currently orphaned, with when it was first seen. */
  found: (OwnedThing & { firstSeenAt: Date })[];
  /** Removed in this pass, having stayed orphaned past the grace period. */
  removed: OwnedThing[];
}

/**
 * What live specs own. Resources that are deleting still own their things
 * until the inverse steps ran. `unknown` counts live resources whose things
 * cannot be told (a spec that does not parse, a kind no reconciler here knows):
 * while there are any, nothing may be removed, since their things would look
 * orphaned.
 */
async function ownedThings(
  db: Kysely<DB>,
  registry: ReconcilerRegistry,
): Promise<{ owned: Set<string>; unknown: string[] }> {
  const owned = new Set<string>();
  const unknown: string[] = [];
  const rows = await db
    .selectFrom('resources')
    .select(['kind', 'id', 'tenant_id', 'spec', 'generation'])
    .where('phase', '<>', 'deleted')
    .execute();
  for (const row of rows) {
    const reconciler = registry.get(row.kind);
    if (!reconciler) {
      unknown.push(`${row.kind}:${row.id}`);
      continue;
    }
    if (!reconciler.owns) continue;
    let spec: unknown;
    try {
      spec = reconciler.parseSpec(row.spec);
    } catch {
      unknown.push(`${row.kind}:${row.id}`);
      continue;
    }
    const things = reconciler.owns({
      kind: row.kind,
      id: row.id,
      tenantId: row.tenant_id,
      spec,
      generation: row.generation,
    });
    for (const t of things) owned.add(`${t.source}\u0000${t.name}`);
  }
  return { owned, unknown };
}

/** Each source's inventory; a source that cannot be listed now is left out of this pass, with an error logged. */
async function inventories(sources: OrphanSource[], log: Logger) {
  const listed = await Promise.all(
    sources.map(async (source) => {
      try {
        return { source, names: await source.list() };
      } catch (err) {
        log.error({ source: source.name, err: errorText(err) }, 'could not list for orphan detection');
        return undefined;
      }
    }),
  );
  return listed.filter((l) => l !== undefined);
}

/**
 * Compare each source's inventory with what the specs own. Lists first and
 * reads specs second: a spec is always written before its thing is created,
 * so a thing being created right now is never mistaken for an orphan. A
 * source that cannot list now is skipped (the resync must go on); its orphan
 * rows wait for the next pass.
 */
export async function detectOrphans(
  db: Kysely<DB>,
  registry: ReconcilerRegistry,
  sources: OrphanSource[],
  graceMs: number,
  log: Logger,
): Promise<OrphanReport> {
  const listed = await inventories(sources, log);
  const { owned, unknown } = await ownedThings(db, registry);
  if (unknown.length > 0 && listed.length > 0)
    log.error(
      { resources: unknown.slice(0, 10), count: unknown.length },
      'orphans are not removed while a resource cannot say what it owns (a spec that does not parse, or a kind this worker does not know)',
    );
  const report: OrphanReport = { found: [], removed: [] };
  for (const { source, names } of listed) {
    const orphans = names.filter((n) => !owned.has(`${source.name}\u0000${n}`));
    await db
      .deleteFrom('orphans')
      .where('source', '=', source.name)
      .$if(orphans.length > 0, (q) => q.where('name', 'not in', orphans))
      .execute();
    if (orphans.length === 0) continue;
    const rows = await db
      .insertInto('orphans')
      .values(orphans.map((name) => ({ source: source.name, name })))
      .onConflict((oc) => oc.columns(['source', 'name']).doUpdateSet({ last_seen_at: sql`now()` }))
      .returning([
        'name',
        'first_seen_at', // Never on first sight (xmax = 0 marks a fresh insert), whatever the grace period.
        sql<boolean>`xmax <> 0 AND first_seen_at <= now() - make_interval(secs => ${graceMs / 1000})`.as(
          'expired',
        ),
      ])
      .execute();
    // Read the specs again just before removing: one written since (a new subscription taking the same
    // name) owns its thing again.
    const now =
      rows.some((r) => r.expired) && unknown.length === 0 ? await ownedThings(db, registry) : undefined;
    for (const row of rows) {
      const ownedNow = now?.owned.has(`${source.name}\u0000${row.name}`);
      if (!row.expired || !now || now.unknown.length > 0 || ownedNow) {
        if (!ownedNow)
          report.found.push({ source: source.name, name: row.name, firstSeenAt: row.first_seen_at });
        continue;
      }
      try {
        await source.remove(row.name);
        await db
          .deleteFrom('orphans')
          .where('source', '=', source.name)
          .where('name', '=', row.name)
          .execute();
        report.removed.push({ source: source.name, name: row.name });
        log.warn(
          { source: source.name, name: row.name, firstSeenAt: row.first_seen_at },
          'orphan removed after its grace period',
        );
      } catch (err) {
        report.found.push({ source: source.name, name: row.name, firstSeenAt: row.first_seen_at });
        log.error({ source: source.name, name: row.name, err: errorText(err) }, 'could not remove orphan');
      }
    }
  }
  if (report.found.length > 0)
    log.warn(
      { orphans: report.found.map((o) => `${o.source}:${o.name}`) },
      'orphans found; no spec owns them',
    );
  return report;
}

export interface ResyncDeps {
  db: Kysely<DB>;
  registry: ReconcilerRegistry;
  sources: OrphanSource[];
  orphanGraceMs: number;
  resyncSeconds: number;
  log: Logger;
  onResync?(report: { queued: number; orphans: OrphanReport }): void;
}

/**
 * The periodic resync: queue a reconcile of every live resource (each repairs
 * and reports its own drift; with none, it performs no action), report
 * orphans, queue again outbox items no job would deliver and inbox events no
 * job would process, remove superseded
 * jobs that killed workers left, and queue the next resync. One chain runs
 * across all workers: the job is keyed, and every worker only (re)creates it
 * at start if missing.
 */
export function resyncTask(deps: ResyncDeps): Task {
  return async () => {
    const queued = await requestReconcileAll(deps.db, 'resync');
    const orphans = await detectOrphans(deps.db, deps.registry, deps.sources, deps.orphanGraceMs, deps.log);
    const outbox = await requeuePendingOutbox(deps.db);
    if (outbox > 0) deps.log.warn({ outbox }, 'outbox items no job would deliver were queued again');
    const inbox = await requeueUnprocessedInbox(deps.db);
    if (inbox > 0) deps.log.warn({ inbox }, 'inbox events no job would process were queued again');
    await removeSupersededJobs(deps.db, deps.log);
    await scheduleResync(deps.db, new Date(Date.now() + deps.resyncSeconds * 1000));
    deps.log.info({ queued, orphans: orphans.found.length, removed: orphans.removed.length }, 'resync');
    deps.onResync?.({ queued, orphans });
  };
}
