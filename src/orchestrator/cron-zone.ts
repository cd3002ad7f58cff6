import { parseCronItem, type CronMatcher, type TimestampDigest } from 'graphile-worker';
import { DomainError } from '../core/errors.ts';

/**
 * Cron expressions evaluated in a time zone. graphile-worker evaluates cron in
 * UTC, one minute at a time; this turns each UTC minute into the zone's wall
 * clock and asks graphile-worker's own parser whether the expression matches.
 * Daylight-saving changes behave as in Vixie cron: for a job at fixed hours
 * (`0 2 * * *`) a wall time that happens twice (autumn) fires only the first
 * time and one skipped (spring) fires at the first minute after the gap; a job
 * with a wildcard hour (every five minutes, hourly) simply follows the wall clock. Pure, so it is tested by value.
 */

const MINUTE = 60_000;
const formatters = new Map<string, Intl.DateTimeFormat>();

export function assertTimeZone(timeZone: string): void {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone });
  } catch {
    throw new DomainError('validation_failed', `unknown time zone "${timeZone}"`);
  }
}

function formatter(timeZone: string): Intl.DateTimeFormat {
  let f = formatters.get(timeZone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      weekday: 'short',
    });
    formatters.set(timeZone, f);
  }
  return f;
}

const WEEKDAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];

interface Wall extends TimestampDigest {
  year: number;
}

/** The zone's wall clock at an instant, to the minute. */
export function wallClock(instant: number, timeZone: string): Wall {
  const parts: Record<string, string> = {};
  for (const p of formatter(timeZone).formatToParts(new Date(instant))) parts[p.type] = p.value;
  return {
    year: Number(parts.year),
    month: Number(parts.month),
    date: Number(parts.day),
    hour: Number(parts.hour),
    min: Number(parts.minute),
    dow: WEEKDAYS.indexOf(parts.weekday!),
  };
}

/** The zone's offset from UTC at an instant, in ms (whole minutes). */
export function zoneOffset(instant: number, timeZone: string): number {
  const w = wallClock(instant, timeZone);
  const floored = instant - (((instant % MINUTE) + MINUTE) % MINUTE);
  return Date.UTC(w.year, w.month - 1, w.date, w.hour, w.min) - floored;
}

function wallDigest(wallMs: number): TimestampDigest {
  const d = new Date(wallMs);
  return {
    min: d.getUTCMinutes(),
    hour: d.getUTCHours(),
    date: d.getUTCDate(),
    month: d.getUTCMonth() + 1,
    dow: d.getUTCDay(),
  };
}

/** Does `expression` fire at this UTC minute, read in `timeZone`? */
export function firesAt(match: CronMatcher, instant: number, timeZone: string, fixedHours = true): boolean {
  const offset = zoneOffset(instant, timeZone);
  if (!fixedHours) return match(wallDigest(instant + offset));
  if (match(wallDigest(instant + offset))) {
    // Autumn: the same wall time an hour (or so) earlier, under the old offset, already fired.
    const before = zoneOffset(instant - 3 * 60 * MINUTE, timeZone);
    if (before > offset) {
      const earlier = instant - (before - offset);
      if (zoneOffset(earlier, timeZone) === before) return false;
    }
    return true;
  }
  // Spring: wall times skipped just before this minute fire now.
  const previous = zoneOffset(instant - MINUTE, timeZone);
  for (let wall = instant - MINUTE + previous + MINUTE; wall < instant + offset; wall += MINUTE) {
    if (match(wallDigest(wall))) return true;
  }
  return false;
}

/** Rebuild the UTC instant graphile-worker is asking about (its digest carries no year). */
export function instantOfDigest(digest: TimestampDigest, now: number): number {
  const year = new Date(now).getUTCFullYear();
  let best = NaN;
  for (const y of [year - 1, year, year + 1]) {
    const t = Date.UTC(y, digest.month - 1, digest.date, digest.hour, digest.min);
    if (new Date(t).getUTCDate() !== digest.date) continue;
    if (Number.isNaN(best) || Math.abs(t - now) < Math.abs(best - now)) best = t;
  }
  return best;
}

/** A graphile-worker matcher for `expression` in `timeZone`. */
export function zonedMatcher(
  expression: string,
  timeZone: string,
  now: () => number = Date.now,
): CronMatcher {
  assertTimeZone(timeZone);
  let match: CronMatcher;
  try {
    match = parseCronItem({ task: 'parse', match: expression, identifier: 'parse' }).match;
  } catch (err) {
    throw new DomainError(
      'validation_failed',
      `bad cron expression "${expression}": ${(err as Error).message}`,
    );
  }
  if (timeZone === 'UTC') return match;
  const fixedHours = !(expression.trim().split(/\s+/)[1] ?? '*').startsWith('*');
  return (digest) => {
    const instant = instantOfDigest(digest, now());
    return !Number.isNaN(instant) && firesAt(match, instant, timeZone, fixedHours);
  };
}
