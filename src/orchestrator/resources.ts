import { sql, type Kysely, type Selectable } from 'kysely';
import type { ResourceRef } from '../core/reconcile.ts';
import type { DB, ResourcesTable, StepStatus } from '../db/tables.ts';
import { requestReconcile } from './queue.ts';

export type ResourceRow = Selectable<ResourcesTable>;

/**
 * Write a resource's spec and queue its reconcile, in one transaction. A spec
 * that differs from the stored one (or revives a deleted or failed resource)
 * moves the generation and clears the failure count. Returns the generation.
 */
export async function applyResource(
  db: Kysely<DB>,
  resource: ResourceRef & { tenantId?: string | null; spec: Record<string, unknown> },
): Promise<number> {
  return db.transaction().execute((trx) => applyResourceIn(trx, resource));
}

/** `applyResource` inside the caller's transaction, so the spec commits with the change that caused it. */
export async function applyResourceIn(
  trx: Kysely<DB>,
  resource: ResourceRef & { tenantId?: string | null; spec: Record<string, unknown> },
): Promise<number> {
  const spec = JSON.stringify(resource.spec);
  const row = await trx
    .insertInto('resources')
    .values({
      kind: resource.kind,
      id: resource.id,
      tenant_id: resource.tenantId ?? null,
      spec,
      steps: '[]',
    })
    .onConflict((oc) =>
      oc.columns(['kind', 'id']).doUpdateSet({
        spec: (eb) => eb.ref('excluded.spec'),
        tenant_id: (eb) => eb.ref('excluded.tenant_id'),
        deleted: false,
        generation: sql`resources.generation + 1`,
        phase: sql`CASE WHEN resources.phase IN ('deleted', 'failed') THEN 'pending' ELSE resources.phase END`,
        failures: 0,
        last_error: null,
        updated_at: sql`now()`,
      }),
    )
    .returning('generation')
    .executeTakeFirstOrThrow();
  await requestReconcile(trx, resource, { reason: 'spec' });
  return row.generation;
}

/** Mark a resource for deletion (its steps' inverses run in reverse order) and queue the reconcile. */
export async function deleteResource(db: Kysely<DB>, ref: ResourceRef): Promise<boolean> {
  return db.transaction().execute(async (trx) => {
    const row = await trx
      .updateTable('resources')
      .set({
        deleted: true,
        generation: sql`generation + 1`,
        phase: sql`CASE WHEN phase = 'failed' THEN 'reconciling' ELSE phase END`,
        failures: 0,
        updated_at: sql`now()`,
      })
      .where('kind', '=', ref.kind)
      .where('id', '=', ref.id)
      .where('deleted', '=', false)
      .returning('generation')
      .executeTakeFirst();
    if (row) await requestReconcile(trx, ref, { reason: 'delete' });
    return row !== undefined;
  });
}

/** Reconcile a `failed` resource again from a clean failure count (an operator's retry). */
export async function retryResource(db: Kysely<DB>, ref: ResourceRef): Promise<boolean> {
  return db.transaction().execute((trx) => retryResourceIn(trx, ref));
}

/** `retryResource` in the caller's transaction, with the change that makes the retry worth it. */
export async function retryResourceIn(trx: Kysely<DB>, ref: ResourceRef): Promise<boolean> {
  const row = await trx
    .updateTable('resources')
    .set({ failures: 0, phase: 'reconciling', updated_at: sql`now()` })
    .where('kind', '=', ref.kind)
    .where('id', '=', ref.id)
    .where('phase', '=', 'failed')
    .returning('id')
    .executeTakeFirst();
  if (row) await requestReconcile(trx, ref, { reason: 'retry', retry: true });
  return row !== undefined;
}

export async function findResource(db: Kysely<DB>, ref: ResourceRef): Promise<ResourceRow | undefined> {
  return db
    .selectFrom('resources')
    .selectAll()
    .where('kind', '=', ref.kind)
    .where('id', '=', ref.id)
    .executeTakeFirst();
}

/** Record progress while a reconcile acts, so `aiqso tenants show` sees the running step. */
export async function saveProgress(db: Kysely<DB>, ref: ResourceRef, steps: StepStatus[]): Promise<void> {
  await db
    .updateTable('resources')
    .set({
      steps: JSON.stringify(steps),
      phase: sql`CASE WHEN phase = 'failed' THEN phase ELSE 'reconciling' END`,
      updated_at: sql`now()`,
    })
    .where('kind', '=', ref.kind)
    .where('id', '=', ref.id)
    .execute();
}
