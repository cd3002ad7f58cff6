import type { Config } from '../config/load.ts';
import type { Database } from '../db/database.ts';
import { laneTask } from '../events/deliver.ts';
import { fanOutHandler } from '../events/fan-out.ts';
import { LANE_TASK, requeueLanes } from '../events/lanes.ts';
import type { TargetPolicy } from '../events/targets.ts';
import type { SecretBox } from '../identity/secrets.ts';
import type { Logger } from '../observability/logger.ts';
import type { OrchestratorParts } from './orchestrator.ts';

/** The webhook target policy from configuration. */
export function webhookPolicy(config: Config): TargetPolicy {
  return { allowPrivate: config.webhooks.allowPrivate, allow: config.webhooks.allow };
}

/** Event webhooks on a worker: the lane task that delivers them, and the outbox handler for events recorded before they fanned out with their change. */
export function registerWebhooks(
  parts: OrchestratorParts,
  deps: { config: Config; db: Database; box: () => Promise<SecretBox>; log: Logger },
): void {
  const { config } = deps;
  parts.outboxHandlers.webhook = fanOutHandler();
  // Deliveries wait on receivers the platform does not control: in slots of their own, so that
  // slow receivers (a tenant may register 20) never hold the jobs that provision and repair.
  parts.pools.push({
    name: 'webhooks',
    concurrency: config.webhooks.concurrency,
    tasks: {
      [LANE_TASK]: laneTask({
        db: deps.db,
        box: deps.box,
        policy: webhookPolicy(config),
        timeoutMs: config.webhooks.timeoutSeconds * 1000,
        backoffMs: config.webhooks.backoffSeconds * 1000,
        retryMs: config.webhooks.retryHours * 3_600_000,
        log: deps.log,
      }),
    },
  });
  parts.onStart.push(async (db) => {
    await requeueLanes(db);
  });
}
