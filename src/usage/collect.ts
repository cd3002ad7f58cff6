import { sql } from 'kysely';
import type pg from 'pg';
import { containerName, type ComputeDriver, type ContainerStats } from '../core/compute.ts';
import type { Database } from '../db/database.ts';
import type { Logger } from '../observability/logger.ts';
import { addHours, GAUGES, hourOf, PEAKS, type Metric } from './metrics.ts';

/**
 * One collection pass. It runs in the hour it measures the end of: a pass at
 * 14:00:05 (or at 14:37, or twice) reads every container's cumulative
 * counters once for the boundary 14:00 and keeps the first reading per
 * container and boundary (`usage_readings`). The hour 13:00–14:00 is then the
 * difference of the readings stored for 13:00 and 14:00, written once
 * (`usage_metrics`, unique per tenant, service, metric and hour). Every value
 * comes from stored readings, never from what this pass happened to see, so
 * two workers at once or a rerun after `kill -9` write the same rows and
 * count nothing twice. An hour without readings at both ends is a gap (value
 * NULL), never a guess; a counter that went down (the workload restarted)
 * counts from zero. Gauges (memory, disk, database size) are the sample at
 * the end of the hour.
 *
 * Memory is also sampled by every pass (the `usage` schedule runs one every
 * SAMPLE_MINUTES): each sample adds to the container's row for the hour it is
 * taken in (`usage_memory`: count, sum, highest, and the driver's own peak),
 * at most once per slot of the hour, so `memory_avg_bytes` and
 * `memory_peak_bytes` come from running aggregates, not a row per sample.
 *
 * Requests, response bytes (from the edges, `usage_edge_counts`) and mails
 * sent (`emails`) are sums over rows other parts write as things happen: the
 * pass recomputes the last two hours from them, so a late report still lands.
 */
export interface CollectDeps {
  db: Database;
  /** The server the service databases live on (the master database's pool). */
  admin: pg.Pool;
  compute: ComputeDriver;
  log: Logger;
  /** The platform's time zone: months are the months it reads. */
  timeZone: string;
  retention: { hourlyDays: number; monthlyMonths: number };
  /** Containers read at once. */
  concurrency?: number;
}

export interface CollectResult {
  /** The hour boundary this pass read for. */
  boundary: Date;
  /** Containers read by this pass (not already read for the boundary). */
  read: number;
  /** Memory samples this pass added (containers not sampled yet in this slot of the hour). */
  sampled: number;
  /** Rows this pass added to usage_metrics (counters, gauges and gaps). */
  written: number;
  gaps: number;
  failed: { container: string; error: string }[];
}

/** Readings older than this find no predecessor: an outage longer than this leaves no gap rows either. */
const LOOKBACK_HOURS = 7 * 24;

interface Subject {
  container: string;
  tenantId: string;
  tenantServiceId: string | null;
  dbName: string | null;
}

/** What is metered: each tenant's dashboard and each of its services (their containers and databases). */
async function subjects(db: Database): Promise<Subject[]> {
  const services = await db
    .selectFrom('tenant_services')
    .select(['id', 'tenant_id', 'container_name', 'db_name'])
    .where('removed_at', 'is', null)
    .where('container_name', 'is not', null)
    .execute();
  const tenants = await db
    .selectFrom('tenants')
    .select('id')
    .where('status', 'in', ['provisioning', 'active', 'suspended', 'cancelled'])
    .execute();
  return [
    ...tenants.map((t) => ({
      container: containerName(t.id, 'dashboard'),
      tenantId: t.id,
      tenantServiceId: null,
      dbName: null,
    })),
    ...services.map((s) => ({
      container: s.container_name!,
      tenantId: s.tenant_id,
      tenantServiceId: s.id,
      dbName: s.db_name,
    })),
  ];
}

async function mapLimit<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const lane = async () => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
}

async function databaseSizes(admin: pg.Pool, names: string[]): Promise<Map<string, number>> {
  if (names.length === 0) return new Map();
  const { rows } = await admin.query<{ datname: string; bytes: string }>(
    'SELECT datname, pg_database_size(oid)::text AS bytes FROM pg_database WHERE datname = ANY($1)',
    [names],
  );
  return new Map(rows.map((r) => [r.datname, Number(r.bytes)]));
}

type ReadingRow = {
  container: string;
  tenant_id: string;
  tenant_service_id: string | null;
  taken_for: Date;
} & Record<Exclude<Metric, (typeof MEMORY_HOUR_METRICS)[number]>, number | null>;

/** The memory a pass saw for a container: now, and the driver's peak since the workload started. */
type MemoryReading = Pick<ContainerStats, 'memoryBytes' | 'memoryPeakBytes'>;

/**
 * Read and store the boundary's readings of every subject not read for it yet. Returns the
 * containers that exist and the memory seen by the reads (each is also a memory sample).
 */
async function takeReadings(
  deps: CollectDeps,
  boundary: Date,
  result: CollectResult,
): Promise<{ present: Subject[]; memory: Map<string, MemoryReading> }> {
  const { db, compute } = deps;
  const all = await subjects(db);
  const done = new Set(
    (
      await db.selectFrom('usage_readings').select('container').where('taken_for', '=', boundary).execute()
    ).map((r) => r.container),
  );
  const existing = new Set((await compute.list()).filter((c) => c.state !== 'missing').map((c) => c.name));
  const present = all.filter((s) => existing.has(s.container));
  const memory = new Map<string, MemoryReading>();
  const todo = present.filter((s) => !done.has(s.container));
  const sizes = await databaseSizes(
    deps.admin,
    todo.flatMap((s) => (s.dbName ? [s.dbName] : [])),
  );
  // Processes share the host's network: the process driver has no per-container counter, and a zero would be invented.
  const netMeasured = compute.kind !== 'process';
  const rows: ReadingRow[] = [];
  await mapLimit(todo, deps.concurrency ?? 8, async (s) => {
    let stats: ContainerStats;
    try {
      stats = await compute.stats(s.container);
    } catch (err) {
      result.failed.push({ container: s.container, error: (err as Error).message });
      return;
    }
    memory.set(s.container, { memoryBytes: stats.memoryBytes, memoryPeakBytes: stats.memoryPeakBytes });
    rows.push({
      container: s.container,
      tenant_id: s.tenantId,
      tenant_service_id: s.tenantServiceId,
      taken_for: boundary,
      cpu_seconds: stats.cpuSeconds,
      memory_bytes: stats.memoryBytes,
      disk_bytes: stats.diskBytes,
      db_bytes: s.dbName ? (sizes.get(s.dbName) ?? null) : null,
      net_rx_bytes: netMeasured ? stats.netRxBytes : null,
      net_tx_bytes: netMeasured ? stats.netTxBytes : null,
      requests: null,
      response_bytes: null,
      mails_sent: null,
    });
  });
  for (let i = 0; i < rows.length; i += 500) {
    const batch = rows.slice(i, i + 500).map((r) => ({
      container: r.container,
      tenant_id: r.tenant_id,
      tenant_service_id: r.tenant_service_id,
      taken_for: r.taken_for,
      cpu_seconds: r.cpu_seconds,
      memory_bytes: r.memory_bytes,
      disk_bytes: r.disk_bytes,
      db_bytes: r.db_bytes,
      net_rx_bytes: r.net_rx_bytes,
      net_tx_bytes: r.net_tx_bytes,
    }));
    // The first reading of a boundary stays: another worker's later one is dropped.
    await db
      .insertInto('usage_readings')
      .values(batch)
      .onConflict((oc) => oc.columns(['container', 'taken_for']).doNothing())
      .execute();
  }
  result.read = rows.length;
  return { present, memory };
}

/** Minutes between memory samples: the `usage` schedule's period, and the width of a sample slot. */
export const SAMPLE_MINUTES = 5;

/**
 * Add one memory sample per present container to its row for the hour `now` falls in, unless
 * that container was already sampled in this slot of the hour (the bit test and the addition are
 * one statement). Containers the readings just read are not read again.
 */
async function sampleMemory(
  deps: CollectDeps,
  now: Date,
  present: Subject[],
  seen: Map<string, MemoryReading>,
  result: CollectResult,
): Promise<void> {
  const { db, compute } = deps;
  const hour = hourOf(now);
  const slot = 1 << Math.floor((now.getTime() - hour.getTime()) / (SAMPLE_MINUTES * 60_000));
  const sampledAlready = new Set(
    (
      await sql<{ container: string }>`
        SELECT container FROM usage_memory WHERE period_start = ${hour}::timestamptz AND slots & ${slot} <> 0
      `.execute(db)
    ).rows.map((r) => r.container),
  );
  const todo = present.filter((s) => !sampledAlready.has(s.container));
  const samples: { s: Subject; m: MemoryReading }[] = [];
  await mapLimit(todo, deps.concurrency ?? 8, async (s) => {
    let m = seen.get(s.container);
    try {
      m ??= compute.memory ? await compute.memory(s.container) : await compute.stats(s.container);
    } catch (err) {
      deps.log.warn({ container: s.container, err }, 'usage: a memory sample failed');
      return;
    }
    samples.push({ s, m });
  });
  for (let i = 0; i < samples.length; i += 500) {
    const batch = samples.slice(i, i + 500).map(({ s, m }) => ({
      container: s.container,
      period_start: hour,
      tenant_id: s.tenantId,
      tenant_service_id: s.tenantServiceId,
      slots: slot,
      samples: 1,
      sum_bytes: m.memoryBytes,
      peak_bytes: m.memoryBytes,
      driver_peak_first: m.memoryPeakBytes ?? null,
      driver_peak_last: m.memoryPeakBytes ?? null,
    }));
    const added = await db
      .insertInto('usage_memory')
      .values(batch)
      .onConflict((oc) =>
        oc
          .columns(['container', 'period_start'])
          .doUpdateSet({
            slots: sql`usage_memory.slots | excluded.slots`,
            samples: sql`usage_memory.samples + 1`,
            sum_bytes: sql`usage_memory.sum_bytes + excluded.sum_bytes`,
            peak_bytes: sql`greatest(usage_memory.peak_bytes, excluded.peak_bytes)`,
            driver_peak_first: sql`coalesce(usage_memory.driver_peak_first, excluded.driver_peak_first)`,
            driver_peak_last: sql`greatest(usage_memory.driver_peak_last, excluded.driver_peak_last)`,
          })
          // The slot already counted (another worker, or this pass before a crash): nothing is added.
          .where(sql<boolean>`usage_memory.slots & excluded.slots = 0`),
      )
      .returning('container')
      .execute();
    result.sampled += added.length;
  }
}

/**
 * `memory_avg_bytes` and `memory_peak_bytes` of the hours starting at `hours`, from their samples:
 * the average of the samples, and the highest of them or the driver's peak when it grew during
 * the hour (it was reached then, between two samples or at one).
 */
async function memoryHours(deps: CollectDeps, hours: Date[], result: CollectResult): Promise<void> {
  const { rows } = await sql<{ value: number | null }>`
    INSERT INTO usage_metrics (tenant_id, tenant_service_id, metric, period_start, value)
    SELECT u.tenant_id, u.tenant_service_id, m.metric, u.period_start, m.value
    FROM (
      SELECT tenant_id, tenant_service_id, period_start,
        sum(sum_bytes) / sum(samples) AS avg_bytes,
        max(greatest(peak_bytes,
          CASE WHEN driver_peak_last > driver_peak_first THEN driver_peak_last END)) AS peak_bytes
      FROM usage_memory
      WHERE period_start = ANY(${hours}::timestamptz[])
      GROUP BY tenant_id, tenant_service_id, period_start
    ) AS u
    CROSS JOIN LATERAL (VALUES ('memory_avg_bytes', u.avg_bytes), ('memory_peak_bytes', u.peak_bytes))
      AS m (metric, value)
    ON CONFLICT ON CONSTRAINT usage_metrics_hour_key
    DO UPDATE SET value = excluded.value, collected_at = now()
    WHERE usage_metrics.value IS DISTINCT FROM excluded.value
    RETURNING value
  `.execute(deps.db);
  result.written += rows.length;
}

interface MetricRow {
  tenant_id: string;
  tenant_service_id: string | null;
  metric: Metric;
  period_start: Date;
  value: number | null;
}

const READING_METRICS = ['cpu_seconds', 'net_rx_bytes', 'net_tx_bytes'] as const;
const SAMPLE_METRICS = ['memory_bytes', 'disk_bytes', 'db_bytes'] as const;
/** Written from the hour's memory samples (`memoryHours`); gaps where an hour had no reading at its end. */
const MEMORY_HOUR_METRICS = ['memory_avg_bytes', 'memory_peak_bytes'] as const;

/** The hours ending at `boundary` from the stored readings: differences, samples and gaps. */
async function deriveHours(deps: CollectDeps, boundary: Date, result: CollectResult): Promise<void> {
  const { db } = deps;
  const current = await db
    .selectFrom('usage_readings')
    .selectAll()
    .where('taken_for', '=', boundary)
    .execute();
  if (current.length === 0) return;
  const previous = await db
    .selectFrom('usage_readings')
    .selectAll()
    .distinctOn('container')
    .where('taken_for', '<', boundary)
    .where('taken_for', '>=', addHours(boundary, -LOOKBACK_HOURS))
    .where(
      'container',
      'in',
      current.map((c) => c.container),
    )
    .orderBy('container')
    .orderBy('taken_for', 'desc')
    .execute();
  const before = new Map(previous.map((p) => [p.container, p]));
  const last = addHours(boundary, -1);
  // Containers with memory samples in the hour that just ended (the others' average and peak are gaps).
  const sampled = new Set(
    (await db.selectFrom('usage_memory').select('container').where('period_start', '=', last).execute()).map(
      (r) => r.container,
    ),
  );
  const rows: MetricRow[] = [];
  for (const now of current) {
    const key = { tenant_id: now.tenant_id, tenant_service_id: now.tenant_service_id };
    const prev = before.get(now.container);
    for (const metric of SAMPLE_METRICS) {
      if (now[metric] !== null) rows.push({ ...key, metric, period_start: last, value: now[metric] });
    }
    if (!prev) continue; // The first reading: nothing was measured before it.
    if (prev.memory_bytes !== null && !sampled.has(now.container))
      for (const metric of MEMORY_HOUR_METRICS)
        rows.push({ ...key, metric, period_start: last, value: null });
    const prevAt = new Date(prev.taken_for);
    const contiguous = prevAt.getTime() === last.getTime();
    for (const metric of READING_METRICS) {
      const a = prev[metric];
      const b = now[metric];
      if (a === null || b === null) continue;
      // A counter that went down restarted from zero: what it counts now is the hour's (a lower bound).
      const value = contiguous ? (b >= a ? b - a : b) : null;
      rows.push({ ...key, metric, period_start: last, value });
    }
    // Hours with no reading at their end: every metric the container had is a gap.
    for (let h = prevAt; h < last; h = addHours(h, 1)) {
      for (const metric of [...READING_METRICS, ...SAMPLE_METRICS]) {
        if (prev[metric] !== null) rows.push({ ...key, metric, period_start: h, value: null });
      }
      if (prev.memory_bytes !== null)
        for (const metric of MEMORY_HOUR_METRICS) rows.push({ ...key, metric, period_start: h, value: null });
    }
  }
  for (let i = 0; i < rows.length; i += 1000) {
    const inserted = await db
      .insertInto('usage_metrics')
      .values(rows.slice(i, i + 1000))
      .onConflict((oc) => oc.constraint('usage_metrics_hour_key').doNothing())
      .returning('value')
      .execute();
    result.written += inserted.length;
    result.gaps += inserted.filter((r) => r.value === null).length;
  }
}

/** Requests, response bytes and mails of the hours starting at `hours`, recomputed from their sources. */
async function recountEvents(deps: CollectDeps, hours: Date[]): Promise<void> {
  for (const hour of hours) {
    const end = addHours(hour, 1);
    await sql`
      INSERT INTO usage_metrics (tenant_id, tenant_service_id, metric, period_start, value)
      SELECT tenant_id, NULL::text, m.metric, ${hour}::timestamptz, m.value
      FROM (
        SELECT tenant_id, sum(requests)::float8 AS requests, sum(response_bytes)::float8 AS response_bytes
        FROM usage_edge_counts WHERE period_start = ${hour}::timestamptz GROUP BY tenant_id
      ) AS e
      CROSS JOIN LATERAL (VALUES ('requests', e.requests), ('response_bytes', e.response_bytes)) AS m (metric, value)
      UNION ALL
      SELECT e.tenant_id, NULL::text, 'mails_sent', ${hour}::timestamptz, count(*)::float8
      FROM emails e JOIN tenants t ON t.id = e.tenant_id
      WHERE e.sent_at >= ${hour}::timestamptz AND e.sent_at < ${end}::timestamptz
      GROUP BY e.tenant_id
      ON CONFLICT ON CONSTRAINT usage_metrics_hour_key
      DO UPDATE SET value = excluded.value, collected_at = now()
      WHERE usage_metrics.value IS DISTINCT FROM excluded.value
    `.execute(deps.db);
  }
}

const gaugeList = sql.join(GAUGES.map((g) => sql.lit(g)));
const peakList = sql.join(PEAKS.map((g) => sql.lit(g)));

/** Roll the hours of one month (`YYYY-MM-01` in the platform's time zone) up into usage_monthly. */
export async function rollUpMonth(db: Database, timeZone: string, month: string): Promise<void> {
  await sql`
    INSERT INTO usage_monthly (tenant_id, tenant_service_id, metric, month, value, hours, gap_hours)
    SELECT tenant_id, tenant_service_id, metric, ${month}::date,
      CASE WHEN metric IN (${gaugeList}) THEN coalesce(avg(value), 0)
        WHEN metric IN (${peakList}) THEN coalesce(max(value), 0) ELSE coalesce(sum(value), 0) END,
      count(*)::int, (count(*) FILTER (WHERE value IS NULL))::int
    FROM usage_metrics
    WHERE period_start >= (${month}::date::timestamp AT TIME ZONE ${timeZone})
      AND period_start < ((${month}::date + interval '1 month')::timestamp AT TIME ZONE ${timeZone})
    GROUP BY tenant_id, tenant_service_id, metric
    ON CONFLICT ON CONSTRAINT usage_monthly_key
    DO UPDATE SET value = excluded.value, hours = excluded.hours, gap_hours = excluded.gap_hours,
      updated_at = now()
  `.execute(db);
}

/** `YYYY-MM-01` of the month `t` falls in, in `timeZone`. */
export function monthOf(t: Date, timeZone: string): string {
  const parts = new Intl.DateTimeFormat('en-CA', {
    timeZone,
    year: 'numeric',
    month: '2-digit',
  }).formatToParts(t);
  const get = (type: string) => parts.find((p) => p.type === type)!.value;
  return `${get('year')}-${get('month')}-01`;
}

/**
 * A closed month is rolled up in the first hours of the next one (so late
 * edge counts still land), and later while it has no roll-up yet (the
 * platform was down when it closed).
 */
async function rollUps(deps: CollectDeps, boundary: Date): Promise<void> {
  const { db, timeZone } = deps;
  const open = monthOf(boundary, timeZone);
  const months = new Set([1, 2, 3].map((h) => monthOf(addHours(boundary, -h), timeZone)));
  months.delete(open);
  const closed = monthOf(addHours(new Date(`${open}T12:00:00Z`), -24 * 15), timeZone);
  const { rows } = await sql<{ missing: boolean }>`
    SELECT NOT EXISTS (SELECT 1 FROM usage_monthly WHERE month = ${closed}::date)
      AND EXISTS (
        SELECT 1 FROM usage_metrics
        WHERE period_start >= (${closed}::date::timestamp AT TIME ZONE ${timeZone})
          AND period_start < (${open}::date::timestamp AT TIME ZONE ${timeZone})
      ) AS missing
  `.execute(db);
  if (rows[0]?.missing) months.add(closed);
  for (const month of [...months].sort()) await rollUpMonth(db, timeZone, month);
}

async function prune(deps: CollectDeps, boundary: Date): Promise<void> {
  const { db, retention, timeZone } = deps;
  const readingsBefore = addHours(boundary, -LOOKBACK_HOURS - 24);
  await db.deleteFrom('usage_readings').where('taken_for', '<', readingsBefore).execute();
  await db.deleteFrom('usage_edge_counts').where('period_start', '<', readingsBefore).execute();
  await db.deleteFrom('usage_memory').where('period_start', '<', readingsBefore).execute();
  await db
    .deleteFrom('usage_metrics')
    .where('period_start', '<', addHours(boundary, -retention.hourlyDays * 24))
    .execute();
  await sql`
    DELETE FROM usage_monthly
    WHERE month < (${monthOf(boundary, timeZone)}::date - make_interval(months => ${retention.monthlyMonths}))
  `.execute(db);
}

/** One pass for the hour `now` falls in; see the comment at the top. */
export async function collectUsage(deps: CollectDeps, now: Date = new Date()): Promise<CollectResult> {
  const boundary = hourOf(now);
  const result: CollectResult = { boundary, read: 0, sampled: 0, written: 0, gaps: 0, failed: [] };
  const { present, memory } = await takeReadings(deps, boundary, result);
  await sampleMemory(deps, now, present, memory, result);
  await deriveHours(deps, boundary, result);
  // The hours that ended: a sample never lands in an hour after it ended, so these are final.
  await memoryHours(deps, [addHours(boundary, -1), addHours(boundary, -2)], result);
  await recountEvents(deps, [addHours(boundary, -1), addHours(boundary, -2)]);
  await rollUps(deps, boundary);
  await prune(deps, boundary);
  for (const f of result.failed) deps.log.warn(f, 'usage: reading a container failed; its hour stays a gap');
  deps.log.info(
    {
      boundary,
      read: result.read,
      sampled: result.sampled,
      written: result.written,
      gaps: result.gaps,
      failed: result.failed.length,
    },
    'usage collected',
  );
  return result;
}
