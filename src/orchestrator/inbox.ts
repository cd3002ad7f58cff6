import { sql, type Kysely } from 'kysely';
import type { Task } from 'graphile-worker';
import { DomainError } from '../core/errors.ts';
import type { DB } from '../db/tables.ts';
import type { Logger } from '../observability/logger.ts';
import { errorText } from './engine.ts';
import { TASKS } from './queue.ts';

/**
 * The inbox: events other systems send us (Stripe's), stored keyed by their
 * own id, each with a job that processes it, written in one transaction. So
 * once the sender has its 200, the event is processed even if every process
 * dies a moment later; a redelivery of the id stores and queues nothing.
 */
export interface InboxEvent {
  id: string;
  source: string;
  type: string;
  payload: Record<string, unknown>;
}

/**
 * Processes one stored event, and marks it processed in the same transaction
 * as its effects (`processed_at`), so that running it again after a crash, or
 * on two workers at once, acts once. A throw is recorded and retried.
 */
export type InboxHandler = (eventId: string) => Promise<void>;

export type InboxHandlers = Partial<Record<string, InboxHandler>>;

/**
 * graphile-worker backs off e^attempt seconds, capped at e^10 (about 6 h):
 * 20 attempts span about three days, as long as Stripe itself retries.
 */
export const INBOX_MAX_ATTEMPTS = 20;

const jobKey = (id: string) => `inbox:${id}`;

async function queueProcessing(db: Kysely<DB>, id: string): Promise<void> {
  await sql`SELECT graphile_worker.add_job(${TASKS.inbox}, json_build_object('id', ${id}::text),
      max_attempts => ${INBOX_MAX_ATTEMPTS}, job_key => ${jobKey(id)},
      job_key_mode => 'preserve_run_at')`.execute(db);
}

/**
 * Store an event and queue its processing, in the caller's transaction (a
 * local checkout writes its state change with the events it causes). Returns
 * false for an id already stored, which changes nothing.
 */
export async function writeInbox(trx: Kysely<DB>, event: InboxEvent): Promise<boolean> {
  const row = await trx
    .insertInto('inbox')
    .values({ id: event.id, source: event.source, type: event.type, payload: JSON.stringify(event.payload) })
    .onConflict((oc) => oc.column('id').doNothing())
    .returning('id')
    .executeTakeFirst();
  if (!row) return false;
  await queueProcessing(trx, event.id);
  return true;
}

/** `writeInbox` in a transaction of its own. */
export function storeInbox(db: Kysely<DB>, event: InboxEvent): Promise<boolean> {
  return db.transaction().execute((trx) => writeInbox(trx, event));
}

/**
 * Queue again every unprocessed event that no job would process: its job was
 * deleted, or used up its attempts without a recorded failure, as happens to
 * a job whose workers were killed while it ran. An event that failed
 * INBOX_MAX_ATTEMPTS times is left for an operator (`aiqso jobs` lists it).
 * Run at worker start and by every resync.
 */
export async function requeueUnprocessedInbox(db: Kysely<DB>): Promise<number> {
  const { rows } = await sql<{ id: string }>`
    SELECT id FROM inbox WHERE processed_at IS NULL AND attempts < ${INBOX_MAX_ATTEMPTS}
      AND NOT EXISTS (SELECT 1 FROM graphile_worker.jobs j
                       WHERE j.key = 'inbox:' || inbox.id AND j.attempts < j.max_attempts)`.execute(db);
  for (const row of rows) await queueProcessing(db, row.id);
  return rows.length;
}

/**
 * An operator's retry of a stored event whose processing failed (still
 * retrying, or given up after INBOX_MAX_ATTEMPTS): its failure count starts
 * again and it is processed now. `404` for no such event, `409` for one
 * already processed or that has not failed.
 */
export async function retryInboxEvent(db: Kysely<DB>, id: string): Promise<void> {
  await db.transaction().execute(async (trx) => {
    const row = await trx
      .selectFrom('inbox')
      .select(['id', 'attempts', 'processed_at'])
      .where('id', '=', id)
      .forUpdate()
      .executeTakeFirst();
    if (!row) throw new DomainError('not_found', `received event ${id} not found`);
    if (row.processed_at !== null)
      throw new DomainError('conflict', `received event ${id} is processed already`);
    if (row.attempts === 0) throw new DomainError('conflict', `received event ${id} has not failed`);
    await trx.updateTable('inbox').set({ attempts: 0, last_error: null }).where('id', '=', id).execute();
    // The event's job, spent or waiting out its backoff, is reset to run now (same key).
    await queueProcessing(trx, id);
  });
}

/** Stored events that failed and are not processed yet: retrying, or given up after INBOX_MAX_ATTEMPTS. */
export async function failingInboxEvents(db: Kysely<DB>) {
  const rows = await db
    .selectFrom('inbox')
    .select(['id', 'source', 'type', 'attempts', 'last_error', 'received_at'])
    .where('processed_at', 'is', null)
    .where('attempts', '>', 0)
    .orderBy('received_at')
    .limit(1000)
    .execute();
  return rows.map((r) => ({
    id: r.id,
    source: r.source,
    type: r.type,
    state: r.attempts >= INBOX_MAX_ATTEMPTS ? ('failed' as const) : ('retrying' as const),
    attempts: r.attempts,
    lastError: r.last_error,
    receivedAt: r.received_at,
  }));
}

/**
 * The processing job: runs the source's handler on an unprocessed event. A
 * failure is counted and recorded on the event, then rethrown so that
 * graphile-worker retries with its backoff.
 */
export function inboxTask(db: Kysely<DB>, handlers: InboxHandlers, log: Logger): Task {
  return async (payload) => {
    const id = String((payload as { id?: unknown }).id);
    const row = await db
      .selectFrom('inbox')
      .select(['source', 'type', 'processed_at'])
      .where('id', '=', id)
      .executeTakeFirst();
    if (!row || row.processed_at) return;
    try {
      const handler = handlers[row.source];
      if (!handler) throw new DomainError('unavailable', `no handler processes ${row.source} events`);
      await handler(id);
    } catch (err) {
      const failed = await db
        .updateTable('inbox')
        .set({ attempts: sql`attempts + 1`, last_error: errorText(err) })
        .where('id', '=', id)
        .where('processed_at', 'is', null)
        .returning('attempts')
        .executeTakeFirst();
      const fields = { eventId: id, type: row.type, attempt: failed?.attempts, err: errorText(err) };
      if ((failed?.attempts ?? 0) >= INBOX_MAX_ATTEMPTS) log.error(fields, 'inbox event failed for good');
      else log.warn(fields, 'inbox event failed; will retry');
      throw err;
    }
  };
}
