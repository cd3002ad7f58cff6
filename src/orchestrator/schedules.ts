import { parseCronItems, type ParsedCronItem, type Task } from 'graphile-worker';
import type { Logger } from '../observability/logger.ts';
import { zonedMatcher } from './cron-zone.ts';
import { SCHEDULE_TASK_PREFIX } from './queue.ts';

/**
 * The platform's recurring work. graphile-worker's cron records each firing in
 * `known_crontabs` under the schedule's identifier, so however many workers
 * run, one job is queued per period; a period missed while every worker was
 * down is caught up within `backfillMinutes`. The work itself is plugged in by
 * later issues through `ScheduleHandlers` under these names.
 */
export interface Schedule {
  name: ScheduleName;
  /** Five-field cron expression, read in the schedule's time zone. */
  cron: string;
  description: string;
  backfillMinutes: number;
}

export type ScheduleName =
  | 'health'
  | 'usage'
  | 'usage-reports'
  | 'backups'
  | 'retention'
  | 'verify'
  | 'purge'
  | 'certificates'
  | 'pending-signups';

export const SCHEDULES: readonly Schedule[] = [
  { name: 'health', cron: '*/5 * * * *', description: 'health checks with auto-restart', backfillMinutes: 0 },
  {
    name: 'usage',
    // Every SAMPLE_MINUTES (src/usage/collect.ts): the first pass of an hour reads its boundary, each
    // one samples memory.
    cron: '*/5 * * * *',
    description: 'usage collection: hourly readings, and a memory sample every 5 minutes',
    backfillMinutes: 10,
  },
  {
    name: 'usage-reports',
    cron: '0 6 1 * *',
    description: "monthly usage reports: last month's to each tenant owner and a summary to the operator",
    backfillMinutes: 24 * 60,
  },
  { name: 'backups', cron: '0 2 * * *', description: 'daily backups', backfillMinutes: 12 * 60 },
  {
    name: 'retention',
    cron: '30 3 * * *',
    description: 'backup retention pruning',
    backfillMinutes: 12 * 60,
  },
  {
    name: 'verify',
    cron: '0 5 * * 0',
    description:
      'weekly restore verification of backups (scratch database, row counts, restic check), RTO recorded',
    backfillMinutes: 24 * 60,
  },
  {
    name: 'purge',
    cron: '0 4 * * *',
    description:
      'purge of cancelled tenants past their grace period, and of mails to addresses without an account after 30 days',
    backfillMinutes: 12 * 60,
  },
  {
    name: 'pending-signups',
    cron: '20 * * * *',
    description: 'removal of signups unpaid for AIQSO_PENDING_SIGNUP_HOURS, freeing their slug and email',
    backfillMinutes: 60,
  },
  {
    name: 'certificates',
    cron: '15 3 * * *',
    description: 'renewal of ACME certificates that expire soon or whose files are missing',
    backfillMinutes: 12 * 60,
  },
];

/** The job a firing runs; `firedAt` is the scheduled minute (UTC), not when the job started. */
export type ScheduleHandler = (firing: { name: string; firedAt: Date; backfilled: boolean }) => Promise<void>;

export type ScheduleHandlers = Partial<Record<string, ScheduleHandler>>;

export const scheduleTask = (name: string): string => `${SCHEDULE_TASK_PREFIX}${name}`;

export function cronItems(
  schedules: readonly Pick<Schedule, 'name' | 'cron' | 'backfillMinutes'>[],
  timeZone: string,
): ParsedCronItem[] {
  return parseCronItems(
    schedules.map((s) => ({
      task: scheduleTask(s.name),
      match: zonedMatcher(s.cron, timeZone),
      identifier: `aiqso:${s.name}`,
      options: {
        backfillPeriod: s.backfillMinutes * 60_000,
        maxAttempts: 3,
        // One queue per schedule: a slow run delays the next instead of overlapping it.
        queueName: scheduleTask(s.name),
      },
    })),
  );
}

/** Tasks for the schedules: the registered handler, or one that logs that nothing is plugged in yet. */
export function scheduleTasks(
  schedules: readonly Pick<Schedule, 'name'>[],
  handlers: ScheduleHandlers,
  log: Logger,
): Record<string, Task> {
  const tasks: Record<string, Task> = {};
  for (const s of schedules) {
    const handler = handlers[s.name];
    tasks[scheduleTask(s.name)] = async (payload) => {
      const cron = (payload as { _cron?: { ts?: string; backfilled?: boolean } })._cron ?? {};
      const firing = {
        name: s.name,
        firedAt: new Date(cron.ts ?? Date.now()),
        backfilled: cron.backfilled === true,
      };
      if (!handler) {
        log.info(
          { schedule: s.name, firedAt: firing.firedAt },
          'scheduled job fired; no work registered for it yet',
        );
        return;
      }
      await handler(firing);
    };
  }
  return tasks;
}
