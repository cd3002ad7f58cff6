import { EventEmitter } from 'node:events';
import {
  Logger as GraphileLogger,
  run,
  type Runner,
  type TaskList,
  type WorkerEvents,
} from 'graphile-worker';
import type { Kysely } from 'kysely';
import type { OrphanSource } from '../core/reconcile.ts';
import type { DB } from '../db/tables.ts';
import { openDatabase } from '../db/database.ts';
import type { Logger } from '../observability/logger.ts';
import { errorText } from './engine.ts';
import { registerProcess, sweepDeadWorkers } from './liveness.ts';
import { inboxTask, requeueUnprocessedInbox, type InboxHandlers } from './inbox.ts';
import { outboxTask, requeuePendingOutbox, type OutboxHandlers } from './outbox.ts';
import { removeSupersededJobs, scheduleResync, TASKS } from './queue.ts';
import { reconcileTask, DEFAULT_RETRY, type ReconcileHooks, type RetryPolicy } from './reconcile-task.ts';
import type { ReconcilerRegistry } from './registry.ts';
import { resyncTask, type ResyncDeps } from './resync.ts';
import { cronItems, scheduleTasks, SCHEDULES, type Schedule, type ScheduleHandlers } from './schedules.ts';

export interface WorkerOptions {
  /** Master database URL; the worker opens its own pool. */
  url: string;
  log: Logger;
  registry: ReconcilerRegistry;
  orphanSources?: OrphanSource[];
  outboxHandlers: OutboxHandlers;
  /** Who processes stored inbox events, by source (`stripe`). */
  inboxHandlers?: InboxHandlers;
  schedules?: readonly Schedule[];
  scheduleHandlers?: ScheduleHandlers;
  timeZone?: string;
  concurrency: number;
  /**
   * How often each runner looks for due jobs it was not told about (default
   * 1000 ms). Jobs queued due now, and reconciles that fall due later, wake the
   * runners themselves (queue.ts `wakeWorkersAt`); the poll is the fallback.
   */
  pollIntervalMs?: number;
  resyncSeconds: number;
  orphanGraceMs: number;
  retry?: RetryPolicy;
  /** How often this process releases the jobs of dead workers. */
  sweepIntervalMs?: number;
  hooks?: ReconcileHooks;
  onResync?: ResyncDeps['onResync'];
  /** Further tasks (the health monitor's), by identifier. */
  tasks?: TaskList;
  /**
   * Tasks that wait on the outside world (a webhook receiver), run with slots of
   * their own: however long they wait, the platform's jobs keep all of
   * `concurrency`. A pool's tasks must not also be in `tasks`.
   */
  pools?: WorkerPool[];
  /** Run once the runner is up (queue a self-rescheduling job's first run). */
  onStart?: ((db: Kysely<DB>) => Promise<void>)[];
  /** Run when the worker stops, once its jobs have finished (work a task handed off, such as probes). */
  onStop?: (() => Promise<void>)[];
}

export interface WorkerPool {
  name: string;
  concurrency: number;
  tasks: TaskList;
}

export interface OrchestratorWorker {
  processId: string;
  /** Queue a resync now (coalesces with the scheduled one). */
  resyncNow(): Promise<void>;
  /** Finish running jobs, then stop. */
  stop(): Promise<void>;
}

function graphileLogger(log: Logger): GraphileLogger {
  return new GraphileLogger((scope) => (level, message, meta) => {
    const fields = { worker: scope.label, job: scope.jobId, task: scope.taskIdentifier, ...(meta as object) };
    const name: string = level;
    if (name === 'error') log.error(fields, message);
    else if (name === 'warning') log.warn(fields, message);
    else log.debug(fields, message);
  });
}

/**
 * Run one worker process's share of the orchestrator: reconcile, resync,
 * outbox delivery, inbox processing and schedule jobs on graphile-worker, plus the liveness
 * lock and the sweep that frees a dead worker's jobs. Any number of these may
 * run against one database.
 */
export async function startWorker(options: WorkerOptions): Promise<OrchestratorWorker> {
  const { log } = options;
  const pools = options.pools ?? [];
  const handle = openDatabase(options.url, {
    // graphile-worker takes a connection to fetch and to complete each job, not while it runs.
    max: options.concurrency * 2 + 4 + pools.length * 2,
    applicationName: 'aiqso-worker',
  });
  const liveness = await registerProcess(options.url, (err) => {
    log.error({ err: errorText(err) }, 'worker lost its liveness connection; stopping');
    void stop();
  }).catch(async (err: unknown) => {
    await handle.close();
    throw err;
  });
  const schedules = options.schedules ?? SCHEDULES;
  const taskList: TaskList = {
    [TASKS.reconcile]: reconcileTask({
      db: handle.db,
      pool: handle.pool,
      registry: options.registry,
      log,
      retry: options.retry ?? DEFAULT_RETRY,
      hooks: options.hooks,
    }),
    [TASKS.resync]: resyncTask({
      db: handle.db,
      registry: options.registry,
      sources: options.orphanSources ?? [],
      orphanGraceMs: options.orphanGraceMs,
      resyncSeconds: options.resyncSeconds,
      log,
      onResync: options.onResync,
    }),
    [TASKS.outbox]: outboxTask(handle.db, options.outboxHandlers, log),
    [TASKS.inbox]: inboxTask(handle.db, options.inboxHandlers ?? {}, log),
    ...scheduleTasks(schedules, options.scheduleHandlers ?? {}, log),
    ...options.tasks,
  };
  const events: WorkerEvents = new EventEmitter();
  events.on('pool:create', ({ workerPool }: { workerPool: { id: string } }) => {
    liveness
      .addPool(workerPool.id)
      .catch((err: unknown) => log.error({ err: errorText(err) }, 'could not record worker pool'));
  });
  // A runner fetches only jobs of the tasks it knows, so each pool's jobs wait for its own slots.
  const runners: Runner[] = [];
  try {
    runners.push(
      await run({
        pgPool: handle.pool,
        concurrency: options.concurrency,
        noHandleSignals: true,
        pollInterval: options.pollIntervalMs ?? 1000,
        logger: graphileLogger(log),
        events,
        taskList,
        parsedCronItems: cronItems(schedules, options.timeZone ?? 'UTC'),
      }),
    );
    for (const pool of pools) {
      runners.push(
        await run({
          pgPool: handle.pool,
          concurrency: pool.concurrency,
          noHandleSignals: true,
          pollInterval: options.pollIntervalMs ?? 1000,
          logger: graphileLogger(log.child({ pool: pool.name })),
          events,
          taskList: pool.tasks,
          parsedCronItems: [],
        }),
      );
    }
    await scheduleResync(handle.db, new Date(Date.now() + options.resyncSeconds * 1000), true);
    await requeuePendingOutbox(handle.db);
    await requeueUnprocessedInbox(handle.db);
    for (const start of options.onStart ?? []) await start(handle.db);
  } catch (err) {
    // A start that fails must not leave a runner polling or its connections open.
    await Promise.all(runners.map((r) => r.stop().catch(() => undefined)));
    await liveness.close();
    await handle.close();
    throw err;
  }
  const sweep = async () => {
    try {
      const released = await sweepDeadWorkers(handle.pool);
      if (released > 0) log.warn({ released }, 'released the jobs of dead workers');
    } catch (err) {
      log.warn({ err: errorText(err) }, 'sweep for dead workers failed');
    }
  };
  await sweep();
  // After the sweep released dead workers' jobs; the resync does this again every period.
  await removeSupersededJobs(handle.db, log).catch((err: unknown) =>
    log.warn({ err: errorText(err) }, 'removing superseded jobs failed'),
  );
  const timer = setInterval(() => void sweep(), options.sweepIntervalMs ?? 2000);
  timer.unref();
  log.info(
    {
      process: liveness.id,
      concurrency: options.concurrency,
      ...Object.fromEntries(pools.map((p) => [`${p.name}Concurrency`, p.concurrency])),
    },
    'worker started',
  );

  let stopping: Promise<void> | undefined;
  function stop(): Promise<void> {
    stopping ??= (async () => {
      clearInterval(timer);
      await Promise.all(
        runners.map((r) =>
          r.stop().catch((err: unknown) => log.warn({ err: errorText(err) }, 'worker stop')),
        ),
      );
      for (const hook of options.onStop ?? [])
        await hook().catch((err: unknown) => log.warn({ err: errorText(err) }, 'worker stop hook'));
      await liveness.close();
      await handle.close();
      log.info({ process: liveness.id }, 'worker stopped');
    })();
    return stopping;
  }
  return {
    processId: liveness.id,
    resyncNow: () => scheduleResync(handle.db, new Date()),
    stop,
  };
}
