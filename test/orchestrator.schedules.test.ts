import type { TimestampDigest } from 'graphile-worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../src/observability/logger.ts';
import { instantOfDigest, wallClock, zonedMatcher } from '../src/orchestrator/cron-zone.ts';
import { startWorker, type OrchestratorWorker } from '../src/orchestrator/worker.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import { installTestTables, testWorkerOptions } from './support/orchestrator/reconcilers.ts';
import { waitFor } from './support/orchestrator/wait.ts';

const MINUTE = 60_000;

function digest(t: number): TimestampDigest {
  const d = new Date(t);
  return {
    min: d.getUTCMinutes(),
    hour: d.getUTCHours(),
    date: d.getUTCDate(),
    month: d.getUTCMonth() + 1,
    dow: d.getUTCDay(),
  };
}

/** Every UTC minute of [from, from + hours) at which the expression fires in the zone. */
function firings(expression: string, timeZone: string, from: string, hours = 24): string[] {
  const start = Date.parse(from);
  const match = zonedMatcher(expression, timeZone, () => start);
  const out: string[] = [];
  for (let t = start; t < start + hours * 60 * MINUTE; t += MINUTE)
    if (match(digest(t))) out.push(new Date(t).toISOString());
  return out;
}

describe('cron expressions in a time zone', () => {
  it('fires daily 02:00 at 02:00 local time', () => {
    expect(firings('0 2 * * *', 'Europe/Berlin', '2026-06-15T00:00:00Z', 48)).toEqual([
      '2026-06-15T00:00:00.000Z',
      '2026-06-16T00:00:00.000Z',
    ]);
    expect(firings('0 2 * * *', 'America/New_York', '2026-01-10T00:00:00Z')).toEqual([
      '2026-01-10T07:00:00.000Z',
    ]);
    expect(firings('0 2 * * *', 'UTC', '2026-01-10T00:00:00Z')).toEqual(['2026-01-10T02:00:00.000Z']);
  });

  it('follows half-hour zones for hourly work', () => {
    expect(firings('0 * * * *', 'Asia/Kolkata', '2026-01-10T00:00:00Z', 3)).toEqual([
      '2026-01-10T00:30:00.000Z',
      '2026-01-10T01:30:00.000Z',
      '2026-01-10T02:30:00.000Z',
    ]);
  });

  it('fires a wall time skipped by the spring change once, right after the gap', () => {
    // Europe/Berlin 2026-03-29: 02:00 CET jumps to 03:00 CEST at 01:00 UTC.
    expect(firings('0 2 * * *', 'Europe/Berlin', '2026-03-28T12:00:00Z')).toEqual([
      '2026-03-29T01:00:00.000Z',
    ]);
    expect(firings('30 2 * * *', 'Europe/Berlin', '2026-03-28T12:00:00Z')).toEqual([
      '2026-03-29T01:00:00.000Z',
    ]);
  });

  it('fires a fixed wall time repeated by the autumn change only the first time; wildcard hours follow the clock', () => {
    // Europe/Berlin 2026-10-25: 03:00 CEST falls back to 02:00 CET at 01:00 UTC.
    expect(firings('30 2 * * *', 'Europe/Berlin', '2026-10-24T12:00:00Z')).toEqual([
      '2026-10-25T00:30:00.000Z',
    ]);
    expect(firings('*/30 * * * *', 'Europe/Berlin', '2026-10-25T00:00:00Z', 2)).toEqual([
      '2026-10-25T00:00:00.000Z',
      '2026-10-25T00:30:00.000Z',
      '2026-10-25T01:00:00.000Z',
      '2026-10-25T01:30:00.000Z',
    ]);
    expect(firings('*/5 * * * *', 'Europe/Berlin', '2026-03-29T00:00:00Z', 2)).toHaveLength(24);
  });

  it('rebuilds the year graphile-worker leaves out, across new year', () => {
    const now = Date.parse('2027-01-01T00:00:30Z');
    expect(new Date(instantOfDigest(digest(Date.parse('2026-12-31T23:59:00Z')), now)).toISOString()).toBe(
      '2026-12-31T23:59:00.000Z',
    );
    expect(wallClock(Date.parse('2026-12-31T23:59:00Z'), 'Asia/Tokyo')).toMatchObject({
      year: 2027,
      month: 1,
      date: 1,
      hour: 8,
    });
  });

  it('rejects an unknown zone or a bad expression with a clear error', () => {
    expect(() => zonedMatcher('0 2 * * *', 'Mars/Olympus')).toThrow('unknown time zone "Mars/Olympus"');
    expect(() => zonedMatcher('0 25 * * *', 'UTC')).toThrow(/bad cron expression "0 25 \* \* \*"/);
  });
});

describe('schedules across several workers', () => {
  let testDb: TestDatabase;
  const workers: OrchestratorWorker[] = [];
  const closers: (() => Promise<void>)[] = [];

  beforeAll(async () => {
    testDb = await createTestDatabase({ max: 3 });
    await installTestTables(testDb.pool);
  });

  afterAll(async () => {
    await Promise.all(workers.map((w) => w.stop()));
    await Promise.all(closers.map((c) => c()));
    await testDb?.drop();
  });

  it('queues one job per period, in the configured time zone, however many workers run', async () => {
    const timeZone = 'Asia/Kolkata';
    const now = Date.now();
    // A daily schedule whose local time fell between two and one hours ago.
    const hour = wallClock(now - 60 * MINUTE, timeZone).hour;
    const schedules = [
      { name: 'health' as const, cron: '*/5 * * * *', description: 'health', backfillMinutes: 120 },
      { name: 'backups' as const, cron: `0 ${hour} * * *`, description: 'backups', backfillMinutes: 120 },
    ];
    // Both schedules have been known for three hours, and no worker ran in the last two.
    await testDb.pool.query(
      `INSERT INTO graphile_worker._private_known_crontabs (identifier, known_since)
       VALUES ('aiqso:health', now() - interval '3 hours'), ('aiqso:backups', now() - interval '3 hours')`,
    );
    const fired: { name: string; at: string; backfilled: boolean }[] = [];
    const record = (f: { name: string; firedAt: Date; backfilled: boolean }) => {
      fired.push({ name: f.name, at: f.firedAt.toISOString(), backfilled: f.backfilled });
      return Promise.resolve();
    };
    const started = await Promise.all(
      [1, 2, 3].map(() => {
        const built = testWorkerOptions(testDb.url, '/nonexistent', createLogger('silent'), {
          schedules,
          timeZone,
          scheduleHandlers: { health: record, backups: record },
        });
        closers.push(built.close);
        return startWorker(built.options);
      }),
    );
    workers.push(...started);

    // Every five-minute mark of the last two hours (the window's edges move with the clock, so leave them out).
    const expected: string[] = [];
    for (
      let t = Math.ceil((now - 115 * MINUTE) / (5 * MINUTE)) * 5 * MINUTE;
      t <= now - 5 * MINUTE;
      t += 5 * MINUTE
    )
      expected.push(new Date(t).toISOString());
    await waitFor('the backfilled health checks', () =>
      Promise.resolve(expected.every((e) => fired.some((f) => f.name === 'health' && f.at === e))),
    );
    await waitFor('the backup', () => Promise.resolve(fired.some((f) => f.name === 'backups')));
    await waitFor('the schedule jobs to finish', async () => {
      const { rowCount } = await testDb.pool.query(
        "SELECT 1 FROM graphile_worker.jobs WHERE task_identifier LIKE 'schedule:%'",
      );
      return rowCount === 0;
    });

    const health = fired.filter((f) => f.name === 'health').map((f) => f.at);
    expect(new Set(health).size).toBe(health.length);
    const backups = fired.filter((f) => f.name === 'backups');
    expect(backups).toHaveLength(1);
    expect(wallClock(Date.parse(backups[0]!.at), timeZone)).toMatchObject({ hour, min: 0 });
    expect(backups[0]!.backfilled).toBe(true);
  });
});
