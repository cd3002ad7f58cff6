import { sql, type Kysely, type Transaction } from 'kysely';
import type { Task } from 'graphile-worker';
import { DomainError } from '../core/errors.ts';
import type { DB, OutboxTable } from '../db/tables.ts';
import type { Logger } from '../observability/logger.ts';
import { errorText } from './engine.ts';
import { TASKS } from './queue.ts';

export type OutboxKind = OutboxTable['kind'];

export interface OutboxItem {
  key: string;
  kind: OutboxKind;
  payload: Record<string, unknown>;
}

/**
 * Delivers one outbox item. Runs inside the transaction that marks the item
 * delivered (and holds its row lock), so database writes it makes commit
 * together with "delivered". It must pass `item.key` on as the idempotency key
 * (Stripe's Idempotency-Key, a webhook's event id, the mail Message-ID): after
 * a crash between the call and the commit it runs again with the same key.
 */
export type OutboxHandler = (item: OutboxItem, trx: Transaction<DB>) => Promise<void>;

export type OutboxHandlers = Partial<Record<OutboxKind, OutboxHandler>>;

const OUTBOX_MAX_ATTEMPTS = 10;

/**
 * Write a side effect into the outbox inside the caller's transaction, with
 * the state change that causes it. The key makes it happen once: writing the
 * same key again is a no-op. Returns whether this call created it.
 */
export async function writeOutbox(trx: Kysely<DB>, item: OutboxItem): Promise<boolean> {
  const id = await insertItem(trx, item, false);
  if (id === undefined) return false;
  await queueDelivery(trx, id);
  return true;
}

/** Insert an item unless its key is there; its id, or undefined for a key already written. */
async function insertItem(
  trx: Kysely<DB>,
  item: OutboxItem,
  delivered: boolean,
): Promise<string | undefined> {
  const row = await trx
    .insertInto('outbox')
    .values({
      key: item.key,
      kind: item.kind,
      payload: JSON.stringify(item.payload),
      ...(delivered ? { status: 'delivered' as const, delivered_at: new Date() } : {}),
    })
    .onConflict((oc) => oc.column('key').doNothing())
    .returning('id')
    .executeTakeFirst();
  return row?.id;
}

/**
 * Record under an outbox key a side effect the caller makes itself, in the
 * same transaction (an event's fan-out): the item is written delivered, and
 * no job is queued. The key makes it happen once, as with `writeOutbox`.
 * Returns whether this call recorded it.
 */
export async function recordDone(trx: Kysely<DB>, item: OutboxItem): Promise<boolean> {
  return (await insertItem(trx, item, true)) !== undefined;
}

/** Whether a side effect with this key has been written (a step's observe: written once, whatever became of it). */
export async function outboxHas(db: Kysely<DB>, key: string): Promise<boolean> {
  const row = await db.selectFrom('outbox').select('id').where('key', '=', key).executeTakeFirst();
  return row !== undefined;
}

async function queueDelivery(db: Kysely<DB>, id: string, runAt?: Date): Promise<void> {
  await sql`SELECT graphile_worker.add_job(${TASKS.outbox}, json_build_object('id', ${id}::bigint),
      run_at => ${runAt ?? null}::timestamptz, max_attempts => ${OUTBOX_MAX_ATTEMPTS},
      job_key => ${`outbox:${id}`}, job_key_mode => 'preserve_run_at')`.execute(db);
}

/**
 * Re-queue pending items that no delivery job will run: the job is gone (e.g.
 * deleted by an operator), or it used up its attempts without the item being
 * settled, as happens to a job whose workers were killed while it ran
 * (graphile-worker counts each pick-up; a handler that fails on the last
 * attempt marks the item `failed`, so that one is not pending). Re-queueing
 * resets the job's attempts; the item's row lock and status still let it be
 * delivered once. Run at worker start and by every resync.
 */
export async function requeuePendingOutbox(db: Kysely<DB>): Promise<number> {
  const { rows } = await sql<{ id: string }>`
    SELECT id FROM outbox WHERE status = 'pending'
      AND NOT EXISTS (SELECT 1 FROM graphile_worker.jobs j
                       WHERE j.key = 'outbox:' || outbox.id AND j.attempts < j.max_attempts)`.execute(db);
  for (const row of rows) await queueDelivery(db, row.id);
  return rows.length;
}

/**
 * The delivery worker: locks the item's row (a second worker skips it), runs
 * the kind's handler, marks it delivered in the same transaction; an item
 * locked by another transaction is retried, never dropped. A failure is
 * recorded and rethrown so graphile-worker retries with exponential backoff;
 * after the last attempt the item is `failed` and logged as an error.
 */
export function outboxTask(db: Kysely<DB>, handlers: OutboxHandlers, log: Logger): Task {
  return async (payload, helpers) => {
    const id = String((payload as { id?: unknown }).id);
    const lastAttempt = helpers.job.attempts >= helpers.job.max_attempts;
    let failure: unknown;
    let locked = false;
    await db.transaction().execute(async (trx) => {
      const row = await trx
        .selectFrom('outbox')
        .selectAll()
        .where('id', '=', id)
        .where('status', '=', 'pending')
        .forUpdate()
        .skipLocked()
        .executeTakeFirst();
      if (!row) {
        // Delivered already, or another transaction holds the row (the not yet aborted
        // transaction of a killed worker): look again shortly rather than drop it.
        const pending = await trx
          .selectFrom('outbox')
          .select('id')
          .where('id', '=', id)
          .where('status', '=', 'pending')
          .executeTakeFirst();
        locked = pending !== undefined;
        return;
      }
      const item: OutboxItem = { key: row.key, kind: row.kind, payload: row.payload };
      try {
        const handler = handlers[row.kind];
        if (!handler)
          throw new DomainError('unavailable', `no handler delivers outbox items of kind ${row.kind}`);
        await handler(item, trx);
      } catch (err) {
        failure = err;
      }
      await trx
        .updateTable('outbox')
        .set({
          attempts: row.attempts + 1,
          status: failure === undefined ? 'delivered' : lastAttempt ? 'failed' : 'pending',
          last_error: failure === undefined ? null : errorText(failure),
          delivered_at: failure === undefined ? new Date() : null,
        })
        .where('id', '=', id)
        .execute();
      if (failure !== undefined) {
        const fields = {
          outboxKey: row.key,
          kind: row.kind,
          attempt: row.attempts + 1,
          err: errorText(failure),
        };
        if (lastAttempt) log.error(fields, 'outbox item failed for good');
        else log.warn(fields, 'outbox delivery failed; will retry');
      }
    });
    if (locked) await queueDelivery(db, id, new Date(Date.now() + 200 + Math.floor(Math.random() * 800)));
    if (failure !== undefined && !lastAttempt)
      throw failure instanceof Error ? failure : new Error(errorText(failure));
  };
}
