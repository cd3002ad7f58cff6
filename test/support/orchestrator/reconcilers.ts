import type pg from 'pg';
import { DomainError } from '../../../src/core/errors.ts';
import type { Reconciler } from '../../../src/core/reconcile.ts';
import { openDatabase } from '../../../src/db/database.ts';
import { filesMailer } from '../../../src/mail/files.ts';
import { alertHandler, emailHandler } from '../../../src/orchestrator/mail-handlers.ts';
import { ReconcilerRegistry } from '../../../src/orchestrator/registry.ts';
import type { WorkerOptions } from '../../../src/orchestrator/worker.ts';
import type { Logger } from '../../../src/observability/logger.ts';
import { RECORDING_COMPUTE_SQL, recordingCompute } from './recording-compute.ts';
import { siteOrphanSources, siteReconciler } from './site-reconciler.ts';

export const PROBE_SQL = `CREATE TABLE IF NOT EXISTS test_runs (
  id bigserial PRIMARY KEY, resource text NOT NULL, pid integer NOT NULL,
  started_at timestamptz NOT NULL, finished_at timestamptz NOT NULL);`;

/**
 * `probe`: one step that always acts and records the interval it ran in, to
 * show two runs of one resource never overlap. `broken`: a step that always
 * fails, to show retries end in `failed` with an alert.
 */
export function probeReconciler(pool: pg.Pool): Reconciler<Record<string, never>> {
  return {
    kind: 'probe',
    parseSpec: () => ({}),
    steps: [
      {
        name: 'touch',
        observe: () => Promise.resolve('drifted' as const),
        async apply({ resource }) {
          const { rows } = await pool.query<{ t: Date }>('SELECT clock_timestamp() AS t');
          await new Promise((r) => setTimeout(r, 5 + Math.random() * 10));
          await pool.query(
            'INSERT INTO test_runs (resource, pid, started_at, finished_at) VALUES ($1, $2, $3, clock_timestamp())',
            [resource.id, process.pid, rows[0]!.t],
          );
        },
      },
    ],
  };
}

/** Every call of the broken reconciler's `onFailed` hook: the resource's id and the error it was given up on. */
export const brokenFailedCalls: { id: string; error: string }[] = [];

export const brokenReconciler: Reconciler<Record<string, never>> = {
  kind: 'broken',
  parseSpec: () => ({}),
  onFailed(failure) {
    brokenFailedCalls.push({ id: failure.id, error: failure.error });
    return Promise.resolve();
  },
  steps: [
    { name: 'ok-step', observe: () => Promise.resolve('ok' as const), apply: () => Promise.resolve() },
    {
      name: 'doomed',
      observe: () => Promise.resolve('missing' as const),
      apply: () => Promise.reject(new DomainError('dependency_failed', 'the upstream said no')),
    },
  ],
};

export async function installTestTables(pool: pg.Pool): Promise<void> {
  await pool.query(RECORDING_COMPUTE_SQL + PROBE_SQL);
}

/** Everything a test worker needs, over its own pool (closed with `close`). */
export function testWorkerOptions(
  url: string,
  mailDir: string,
  log: Logger,
  overrides: Partial<WorkerOptions> = {},
): { options: WorkerOptions; close: () => Promise<void> } {
  const handle = openDatabase(url, { max: 6 });
  const compute = recordingCompute(handle.pool);
  const registry = new ReconcilerRegistry()
    .register(siteReconciler(handle.db, compute))
    .register(probeReconciler(handle.pool))
    .register(brokenReconciler);
  const mailer = filesMailer(mailDir);
  const from = { name: 'AIQSO', address: 'noreply@sites.test' };
  return {
    options: {
      url,
      log,
      registry,
      orphanSources: siteOrphanSources(handle.db, compute),
      outboxHandlers: { email: emailHandler(mailer, from), alert: alertHandler(mailer, from) },
      concurrency: 4,
      resyncSeconds: 3600,
      orphanGraceMs: 3_600_000,
      retry: { baseMs: 20, maxMs: 200, maxFailures: 3 },
      sweepIntervalMs: 300,
      ...overrides,
    },
    close: () => handle.close(),
  };
}
