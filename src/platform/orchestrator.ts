import type { Config } from '../config/load.ts';
import type { Mailer } from '../core/mail.ts';
import type { OrphanSource } from '../core/reconcile.ts';
import { createMailer } from '../mail/index.ts';
import type { Logger } from '../observability/logger.ts';
import { alertHandler, emailHandler } from '../orchestrator/mail-handlers.ts';
import type { InboxHandlers } from '../orchestrator/inbox.ts';
import type { OutboxHandlers } from '../orchestrator/outbox.ts';
import { ReconcilerRegistry } from '../orchestrator/registry.ts';
import type { ScheduleHandlers } from '../orchestrator/schedules.ts';
import type { TaskList } from 'graphile-worker';
import {
  startWorker,
  type OrchestratorWorker,
  type WorkerOptions,
  type WorkerPool,
} from '../orchestrator/worker.ts';

/**
 * What the platform's parts plug into the orchestrator: their reconcilers,
 * orphan sources, outbox handlers, inbox handlers (stripe events) and
 * schedule handlers (purge, pending signups, certificates). Filled in by
 * `worker.ts` before a worker starts.
 */
export interface OrchestratorParts {
  registry: ReconcilerRegistry;
  orphanSources: OrphanSource[];
  outboxHandlers: OutboxHandlers;
  inboxHandlers: InboxHandlers;
  scheduleHandlers: ScheduleHandlers;
  /** Further worker tasks and what queues their first run (the health monitor). */
  tasks: TaskList;
  /** Tasks that wait on the outside world, in slots of their own (webhook deliveries). */
  pools: WorkerPool[];
  onStart: NonNullable<WorkerOptions['onStart']>;
  /** Run when the worker stops, before its pool closes (the health monitor's probe loop). */
  onStop: NonNullable<WorkerOptions['onStop']>;
  mailer: Mailer;
}

/** The parts available from configuration alone: mail (SMTP, Listmonk or files) and alerts. */
export function orchestratorParts(config: Config): OrchestratorParts {
  const mailer = createMailer(config);
  const from = { name: 'AIQSO', address: `noreply@${config.baseDomain}` };
  return {
    registry: new ReconcilerRegistry(),
    orphanSources: [],
    outboxHandlers: {
      email: emailHandler(mailer, from),
      alert: alertHandler(mailer, from, config.admin.email, config.alertEmail),
    },
    inboxHandlers: {},
    scheduleHandlers: {},
    tasks: {},
    pools: [],
    onStart: [],
    onStop: [],
    mailer,
  };
}

/** Start one worker process's share of the orchestrator from configuration. */
export function startConfiguredWorker(
  config: Config,
  log: Logger,
  url: string,
  parts: OrchestratorParts = orchestratorParts(config),
): Promise<OrchestratorWorker> {
  return startWorker({
    url,
    log,
    registry: parts.registry,
    orphanSources: parts.orphanSources,
    outboxHandlers: parts.outboxHandlers,
    inboxHandlers: parts.inboxHandlers,
    scheduleHandlers: parts.scheduleHandlers,
    tasks: parts.tasks,
    pools: parts.pools,
    onStart: parts.onStart,
    onStop: parts.onStop,
    timeZone: config.timeZone,
    concurrency: config.workerConcurrency,
    resyncSeconds: config.resyncSeconds,
    orphanGraceMs: config.orphanGraceSeconds * 1000,
  });
}
