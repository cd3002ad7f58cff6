import type { ScheduleHandler } from '../orchestrator/schedules.ts';
import { collectUsage, SAMPLE_MINUTES, type CollectDeps } from './collect.ts';
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
 * The `usage` schedule's work (every SAMPLE_MINUTES): one collection pass for
 * the hour the job runs in (the first of the hour takes its readings, each one
 * samples memory), the owners' warnings for included amounts reached (once an
 * hour: the pass that read the boundary, or the first slot of the hour) and
 * the Stripe meter events of the hour that became final (each pass: queueing
 * an hour twice queues it once). A
 * firing run late (backfilled after an outage) reads for the hour it runs in,
 * never for the one it was scheduled for: readings are what the counters say
 * now, so the hours without one stay gaps.
 */
export function usageScheduleHandler(
  deps: CollectDeps & { plans: readonly (PlanAllowance & PlanMeters)[] },
): ScheduleHandler {
  return async () => {
    const now = new Date();
    const result = await collectUsage(deps, now);
    // The hour just measured ended at the boundary: its month is the one to warn about.
    if (result.read > 0 || now.getTime() - result.boundary.getTime() < SAMPLE_MINUTES * 60_000)
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
