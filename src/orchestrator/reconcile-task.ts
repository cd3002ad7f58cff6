import { withLogContext } from '../observability/logger.ts';
import { randomUUID } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import type { Task } from 'graphile-worker';
import type pg from 'pg';
import { isDomainError } from '../core/errors.ts';
import { retryDelayMs, type ReconcileTarget, type ResourceRef } from '../core/reconcile.ts';
import type { DB } from '../db/tables.ts';
import type { Logger } from '../observability/logger.ts';
import { runSteps, StepFailed, errorText, type StepsOutcome } from './engine.ts';
import { writeOutbox } from './outbox.ts';
import { requestReconcile, UNDER_WAY_PRIORITY, wakeWorkersAt, type ReconcilePayload } from './queue.ts';
import type { ReconcilerRegistry } from './registry.ts';
import { saveProgress, type ResourceRow } from './resources.ts';

/** Advisory lock namespace (classid) of per-resource reconcile locks. */
export const RESOURCE_LOCK_NS = 7_344_213;

export interface RetryPolicy {
  /** First retry delay; doubles per failure. */
  baseMs: number;
  /** Longest delay between retries. */
  maxMs: number;
  /** Failures in a row after which the resource is `failed` and an alert is raised. */
  maxFailures: number;
}

export const DEFAULT_RETRY: RetryPolicy = { baseMs: 1_000, maxMs: 5 * 60_000, maxFailures: 8 };

export interface ReconcileHooks {
  /** Called after every reconcile that acted (for metrics and tests). */
  onReconciled?(ref: ResourceRef, outcome: StepsOutcome): void;
}

export interface ReconcileDeps {
  db: Kysely<DB>;
  pool: pg.Pool;
  registry: ReconcilerRegistry;
  log: Logger;
  retry: RetryPolicy;
  hooks?: ReconcileHooks;
}

function parsePayload(payload: unknown): ReconcilePayload {
  const p = payload as Partial<ReconcilePayload> | null;
  if (!p || typeof p.kind !== 'string' || typeof p.id !== 'string')
    throw new Error('reconcile job without kind and id');
  return p as ReconcilePayload;
}

/**
 * The reconcile job. Holds a per-resource advisory lock on its own connection
 * for the whole run: two workers never reconcile one resource at once, and a
 * killed worker's lock dies with its connection. A job that finds the lock
 * taken queues the resource again shortly (the holder may have read an older
 * spec) and ends.
 */
export function reconcileTask(deps: ReconcileDeps): Task {
  return async (payload, helpers) => {
    const ref = parsePayload(payload);
    const client = await deps.pool.connect();
    try {
      const lockKey = `${ref.kind}:${ref.id}`;
      const { rows } = await client.query<{ locked: boolean } & Partial<ResourceRow>>(
        `SELECT pg_try_advisory_lock($1, hashtext($2)) AS locked, r.*
           FROM (SELECT 1) AS one LEFT JOIN resources r ON r.kind = $3 AND r.id = $4`,
        [RESOURCE_LOCK_NS, lockKey, ref.kind, ref.id],
      );
      const row = rows[0]!;
      if (!row.locked) {
        const runAt = new Date(Date.now() + 100 + Math.floor(Math.random() * 200));
        await requestReconcile(deps.db, ref, { runAt, reason: 'busy', priority: UNDER_WAY_PRIORITY });
        wakeWorkersAt(deps.pool, runAt);
        return;
      }
      try {
        if (row.kind !== null && row.kind !== undefined)
          await reconcileResource(deps, row as ResourceRow, ref, helpers.abortSignal);
      } finally {
        await client.query('SELECT pg_advisory_unlock($1, hashtext($2))', [RESOURCE_LOCK_NS, lockKey]);
      }
    } finally {
      client.release();
    }
  };
}

async function reconcileResource(
  deps: ReconcileDeps,
  row: ResourceRow,
  payload: ReconcilePayload,
  signal: AbortSignal,
): Promise<void> {
  const ref = { kind: row.kind, id: row.id };
  if (row.phase === 'deleted') return;
  if (row.phase === 'failed' && !payload.retry) return;
  const reconciler = deps.registry.get(row.kind);
  if (!reconciler) {
    await recordFailure(deps, row, new Error(`no reconciler for kind ${row.kind}`), [], false);
    return;
  }
  let outcome: StepsOutcome;
  try {
    const target: ReconcileTarget<unknown> = {
      ...ref,
      tenantId: row.tenant_id,
      spec: reconciler.parseSpec(row.spec),
      generation: row.generation,
    };
    // Every log line a step writes carries the tenant it works for.
    outcome = await withLogContext({ tenantId: row.tenant_id ?? undefined }, () =>
      runSteps({
        reconciler,
        target,
        deleting: row.deleted,
        previous: row.steps,
        converged: row.phase === 'ready' && row.observed_generation === row.generation,
        signal,
        onProgress: (steps) => saveProgress(deps.db, ref, steps),
      }),
    );
  } catch (err) {
    const steps = err instanceof StepFailed ? err.steps : row.steps;
    const cause = err instanceof StepFailed ? err.cause : err;
    const retryable = !isDomainError(cause) || cause.retryable;
    await recordFailure(deps, row, err, steps, retryable);
    return;
  }
  if (outcome.requeueAfterMs !== undefined)
    await recordWait(deps, row, outcome, outcome.requeueAfterMs, payload.retry);
  else await recordSuccess(deps, row, outcome);
}

/**
 * A step said "not yet": record it `waiting` and queue the next look. Not a
 * failure — the failure count and last error stay as they were — and the job
 * ends, so its worker slot is free while the resource waits.
 */
async function recordWait(
  deps: ReconcileDeps,
  row: ResourceRow,
  outcome: StepsOutcome,
  afterMs: number,
  retry: boolean | undefined,
): Promise<void> {
  const ref = { kind: row.kind, id: row.id };
  const runAt = new Date(Date.now() + afterMs);
  await deps.db.transaction().execute(async (trx) => {
    await trx
      .updateTable('resources')
      .set({
        steps: JSON.stringify(outcome.steps),
        phase: sql`CASE WHEN phase = 'failed' THEN phase ELSE 'reconciling' END`,
        updated_at: sql`now()`,
      })
      .where('kind', '=', row.kind)
      .where('id', '=', row.id)
      .execute();
    await requestReconcile(trx, ref, { runAt, reason: 'requeue', retry, priority: UNDER_WAY_PRIORITY });
  });
  wakeWorkersAt(deps.pool, runAt);
  if (outcome.wake) lookWhenWoken(deps, ref, retry, afterMs, outcome.wake);
  if (outcome.actions > 0) deps.hooks?.onReconciled?.(ref, outcome);
}

/**
 * Watch for what a waiting step waits for until its look falls due, and
 * bring the look forward to now when it comes (the queued look's job is
 * replaced under its key). Nothing depends on it: should this process die,
 * or the watch fail, the look runs when it was queued to.
 */
function lookWhenWoken(
  deps: ReconcileDeps,
  ref: ResourceRef,
  retry: boolean | undefined,
  afterMs: number,
  wake: NonNullable<StepsOutcome['wake']>,
): void {
  const signal = AbortSignal.timeout(afterMs);
  wake(signal)
    .then(async (ready) => {
      if (!ready || signal.aborted) return;
      await requestReconcile(deps.db, ref, { reason: 'requeue', retry, priority: UNDER_WAY_PRIORITY });
    })
    .catch((err: unknown) => deps.log.debug({ ...ref, err: errorText(err) }, 'watch for a look failed'));
}

async function recordSuccess(deps: ReconcileDeps, row: ResourceRow, outcome: StepsOutcome): Promise<void> {
  const ref = { kind: row.kind, id: row.id };
  const unchanged =
    outcome.actions === 0 &&
    row.phase === 'ready' &&
    row.observed_generation === row.generation &&
    JSON.stringify(outcome.steps) === JSON.stringify(row.steps);
  if (!unchanged) {
    await deps.db
      .updateTable('resources')
      .set({
        steps: JSON.stringify(outcome.steps),
        observed_generation: row.generation,
        // A spec written during the run moved the generation and queued another run.
        phase: sql`CASE WHEN generation = ${row.generation} THEN ${row.deleted ? 'deleted' : 'ready'} ELSE 'reconciling' END`,
        last_error: null,
        failures: 0,
        updated_at: sql`now()`,
      })
      .where('kind', '=', row.kind)
      .where('id', '=', row.id)
      .execute();
  }
  if (outcome.actions > 0) {
    deps.log.info({ ...ref, actions: outcome.actions, deleted: row.deleted }, 'reconciled');
    deps.hooks?.onReconciled?.(ref, outcome);
  }
  if (outcome.repaired.length > 0) deps.log.warn({ ...ref, steps: outcome.repaired }, 'drift repaired');
}

/**
 * A failed run: count it; retry later with exponential backoff, or, after too
 * many failures in a row (or at once for an error a retry cannot fix), mark
 * the resource `failed` and alert the operators through the outbox.
 */
async function recordFailure(
  deps: ReconcileDeps,
  row: ResourceRow,
  err: unknown,
  steps: ResourceRow['steps'],
  retryable: boolean,
): Promise<void> {
  const ref = { kind: row.kind, id: row.id };
  const failures = row.failures + 1;
  const giveUp = !retryable || failures >= deps.retry.maxFailures;
  const message = errorText(err);
  const runAt = giveUp ? undefined : new Date(Date.now() + retryDelayMs(failures, deps.retry));
  await deps.db.transaction().execute(async (trx) => {
    await trx
      .updateTable('resources')
      .set({
        steps: JSON.stringify(steps),
        phase: giveUp ? 'failed' : 'reconciling',
        last_error: message,
        failures,
        updated_at: sql`now()`,
      })
      .where('kind', '=', row.kind)
      .where('id', '=', row.id)
      .execute();
    if (runAt) {
      await requestReconcile(trx, ref, { runAt, reason: 'retry' });
      return;
    }
    await deps.registry
      .get(row.kind)
      ?.onFailed?.({ id: row.id, tenantId: row.tenant_id, spec: row.spec, error: message }, trx);
    await writeOutbox(trx, {
      key: `alert:resource-failed:${row.kind}:${row.id}:${randomUUID()}`,
      kind: 'alert',
      payload: {
        subject: `${row.kind} ${row.id} failed`,
        text: `Reconciling ${row.kind} ${row.id} failed ${failures} time(s) and stopped.\n\nLast error: ${message}\n\nFix the cause, then retry the resource or change its spec.`,
        resource: ref,
        error: message,
        failures,
      },
    });
  });
  if (runAt) wakeWorkersAt(deps.pool, runAt);
  if (giveUp) {
    deps.log.error({ ...ref, failures, err: message, alert: true }, 'resource failed; operators alerted');
  } else deps.log.warn({ ...ref, failures, err: message }, 'reconcile failed; will retry');
}
