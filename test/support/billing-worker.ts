import { Logger, run, type Runner } from 'graphile-worker';
import { createBillingPort } from '../../src/billing/index.ts';
import type { Config } from '../../src/config/load.ts';
import type { DatabaseHandle } from '../../src/db/database.ts';
import { registerBilling } from '../../src/platform/worker.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { inboxTask } from '../../src/orchestrator/inbox.ts';
import { TASKS } from '../../src/orchestrator/queue.ts';
import { orchestratorParts } from '../../src/platform/orchestrator.ts';

/**
 * graphile-worker running only the platform's inbox task with its Stripe
 * handler (what `aiqso worker` runs for stored billing events), for tests of
 * billing that need no reconciles: the jobs of other tasks stay queued.
 */
export async function startBillingWorker(config: Config, database: DatabaseHandle): Promise<Runner> {
  const log = createLogger('silent');
  const parts = orchestratorParts(config);
  const billing = await createBillingPort(config, database.db, []);
  registerBilling(parts, { config, db: database.db, billing, log });
  return run({
    pgPool: database.pool,
    concurrency: 2,
    noHandleSignals: true,
    pollInterval: 200,
    logger: new Logger(() => () => undefined),
    taskList: { [TASKS.inbox]: inboxTask(database.db, parts.inboxHandlers, log) },
  });
}
