import type { ScheduleHandler } from '../orchestrator/schedules.ts';
import { collectUsage, type CollectDeps } from './collect.ts';
import { addHours } from './metrics.ts';
import { finalHour, queueMeterEvents, type PlanMeters } from './meters.ts';
import {
  previousMonth,
  queueMonthlyReports,
  warnPlanAllowances,
  type MonthlyReportDeps,
  type PlanAllowance,
} from './monthly.ts';

/**
 * The hourly `usage` schedule's work: one collection pass for the hour the
 * job runs in, then the owners' warnings for included amounts reached and the
 * Stripe meter events of the hour that became final. A
 * firing run late (backfilled after an outage) reads for the hour it runs in,
 * never for the one it was scheduled for: readings are what the counters say
 * now, so the hours without one stay gaps.
 */
export function usageScheduleHandler(
  deps: CollectDeps & { plans: readonly (PlanAllowance & PlanMeters)[] },
): ScheduleHandler {
  return async () => {
    const result = await collectUsage(deps);
    // The hour just measured ended at the boundary: its month is the one to warn about.
    await warnPlanAllowances(deps, addHours(result.boundary, -1));
    await queueMeterEvents(deps, finalHour(result.boundary));
  };
}

/** The monthly `usage-reports` schedule's work: the reports of the month before the firing's. */
export function usageReportsScheduleHandler(deps: MonthlyReportDeps): ScheduleHandler {
  return async (firing) => {
    await queueMonthlyReports(deps, previousMonth(firing.firedAt, deps.timeZone));
  };
}
