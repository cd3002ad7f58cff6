import { sql, type Kysely } from 'kysely';
import type { DB } from '../db/tables.ts';
import { failingInboxEvents } from './inbox.ts';

export interface JobView {
  id: string;
  task: string;
  key: string | null;
  /** queued (waiting for its time or a worker), running (a live worker holds it), retrying, failed (gave up). */
  state: 'queued' | 'running' | 'retrying' | 'failed';
  runAt: Date;
  attempts: number;
  maxAttempts: number;
  lastError: string | null;
  lockedBy: string | null;
}

export interface WorkView {
  jobs: JobView[];
  /** Resources the orchestrator stopped retrying; they need an operator. */
  failedResources: {
    kind: string;
    id: string;
    lastError: string | null;
    failures: number;
    updatedAt: Date;
  }[];
  /** Side effects that could not be delivered. */
  failedOutbox: { key: string; kind: string; attempts: number; lastError: string | null }[];
  /** Received events (Stripe's) whose processing failed: still retrying, or given up. */
  failingInbox: Awaited<ReturnType<typeof failingInboxEvents>>;
  workers: { id: string; hostname: string; pid: number; startedAt: Date }[];
}

/** Queued, running and failed work, for `aiqso jobs`. */
export async function listWork(db: Kysely<DB>): Promise<WorkView> {
  const jobs = await sql<{
    id: string;
    task_identifier: string;
    key: string | null;
    run_at: Date;
    attempts: number;
    max_attempts: number;
    last_error: string | null;
    locked_at: Date | null;
    locked_by: string | null;
  }>`SELECT id, task_identifier, key, run_at, attempts, max_attempts, last_error, locked_at, locked_by
       FROM graphile_worker.jobs ORDER BY run_at, id LIMIT 1000`.execute(db);
  const [failedResources, failedOutbox, failingInbox, workers] = await Promise.all([
    db
      .selectFrom('resources')
      .select(['kind', 'id', 'last_error', 'failures', 'updated_at'])
      .where('phase', '=', 'failed')
      .orderBy('updated_at')
      .execute(),
    db
      .selectFrom('outbox')
      .select(['key', 'kind', 'attempts', 'last_error'])
      .where('status', '=', 'failed')
      .execute(),
    failingInboxEvents(db),
    db
      .selectFrom('worker_processes')
      .select(['id', 'hostname', 'pid', 'started_at'])
      .orderBy('started_at')
      .execute(),
  ]);
  return {
    jobs: jobs.rows.map((j) => ({
      id: String(j.id),
      task: j.task_identifier,
      key: j.key,
      state:
        j.locked_at !== null
          ? 'running'
          : j.attempts >= j.max_attempts
            ? 'failed'
            : j.attempts > 0
              ? 'retrying'
              : 'queued',
      runAt: j.run_at,
      attempts: j.attempts,
      maxAttempts: j.max_attempts,
      lastError: j.last_error,
      lockedBy: j.locked_by,
    })),
    failedResources: failedResources.map((r) => ({
      kind: r.kind,
      id: r.id,
      lastError: r.last_error,
      failures: r.failures,
      updatedAt: r.updated_at,
    })),
    failedOutbox: failedOutbox.map((o) => ({
      key: o.key,
      kind: o.kind,
      attempts: o.attempts,
      lastError: o.last_error,
    })),
    failingInbox,
    workers: workers.map((w) => ({ id: w.id, hostname: w.hostname, pid: w.pid, startedAt: w.started_at })),
  };
}
