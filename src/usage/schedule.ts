import type { ScheduleHandler } from '../orchestrator/schedules.ts';
import { collectUsage, type CollectDeps } from './collect.ts';

/**
 * The hourly `usage` schedule's work: one collection pass for the hour the
 * job runs in. A firing run late (backfilled after an outage) reads for the
 * hour it runs in, never for the one it was scheduled for: readings are
 * what the counters say now, so the hours without one stay gaps.
 */
export function usageScheduleHandler(deps: CollectDeps): ScheduleHandler {
  return async () => {
    await collectUsage(deps);
  };
}
