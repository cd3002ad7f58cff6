import { sql } from 'kysely';
import { badRequest } from '../core/errors.ts';
import type { Database } from '../db/database.ts';
import { GAUGES, METRICS, PEAKS } from './metrics.ts';

export type Granularity = 'hour' | 'day' | 'month';
export const GRANULARITIES: readonly Granularity[] = ['hour', 'day', 'month'];

export interface UsageQuery {
  /** One tenant, or every tenant (operators). */
  tenantId?: string;
  from: Date;
  to: Date;
  granularity: Granularity;
  /** Days and months are the platform time zone's. */
  timeZone: string;
}

/** One metric of one tenant (and service, or the tenant as a whole) over one period. */
export interface UsageRow {
  tenantId: string;
  tenant: string;
  /** The catalog key of the service, or null for the tenant as a whole (its dashboard, edge, mail). */
  service: string | null;
  metric: string;
  /** Start of the period (an instant; for days and months, midnight in the platform's time zone). */
  period: Date;
  /** Counters: the sum; gauges: the average of the hours measured. Null when every hour was a gap. */
  value: number | null;
  /** Hours with a value and hours that were gaps. */
  hours: number;
  gapHours: number;
}

/** The longest range one query may span, so a request cannot make the database sum years of hours. */
const MAX_RANGE_DAYS = { hour: 31, day: 400, month: 800 } as const;

/** Parse `from`, `to` and `granularity` as given to the API or CLI; a bad one is a 400 naming it. */
export function parseUsageRange(
  input: { from?: string; to?: string; granularity?: string },
  now: Date = new Date(),
): { from: Date; to: Date; granularity: Granularity } {
  const granularity = (input.granularity ?? 'day') as Granularity;
  if (!GRANULARITIES.includes(granularity))
    throw badRequest(`granularity must be one of ${GRANULARITIES.join(', ')}`, { param: 'granularity' });
  const parse = (name: 'from' | 'to', value: string | undefined, fallback: Date): Date => {
    if (value === undefined || value === '') return fallback;
    const d = /^\d{4}-\d{2}-\d{2}(T[\d:.]+(Z|[+-]\d{2}:\d{2}))?$/.test(value) ? new Date(value) : undefined;
    if (!d || Number.isNaN(d.getTime()))
      throw badRequest(`${name} must be a date (YYYY-MM-DD) or an ISO 8601 time with a zone`, {
        param: name,
      });
    return d;
  };
  const to = parse('to', input.to, now);
  const from = parse('from', input.from, new Date(to.getTime() - 30 * 86_400_000));
  if (from >= to) throw badRequest('from must be before to', { param: 'from' });
  if (to.getTime() - from.getTime() > MAX_RANGE_DAYS[granularity] * 86_400_000)
    throw badRequest(`from and to span more than ${MAX_RANGE_DAYS[granularity]} days at ${granularity}`, {
      param: 'from',
    });
  return { from, to, granularity };
}

const gaugeList = sql.join(GAUGES.map((g) => sql.lit(g)));
const peakList = sql.join(PEAKS.map((g) => sql.lit(g)));

/**
 * Usage per tenant, service, metric and period. Hours come from the hourly
 * rows; days and months add those up (`hours` and `gapHours` say how many
 * went in). Months older than the hourly rows come from the monthly roll-ups.
 */
export async function usageReport(db: Database, q: UsageQuery): Promise<UsageRow[]> {
  const tenantFilter = q.tenantId ? sql`AND m.tenant_id = ${q.tenantId}` : sql``;
  const bucket =
    q.granularity === 'hour'
      ? sql`m.period_start`
      : sql`(date_trunc(${q.granularity}, m.period_start AT TIME ZONE ${q.timeZone}) AT TIME ZONE ${q.timeZone})`;
  const hourly = await sql<{
    tenant_id: string;
    slug: string;
    service: string | null;
    metric: string;
    period: Date;
    value: number | null;
    hours: number;
    gap_hours: number;
  }>`
    SELECT m.tenant_id, t.slug, s.key AS service, m.metric, ${bucket} AS period,
      CASE WHEN m.metric IN (${gaugeList}) THEN avg(m.value)
        WHEN m.metric IN (${peakList}) THEN max(m.value) ELSE sum(m.value) END AS value,
      (count(*) FILTER (WHERE m.value IS NOT NULL))::int AS hours,
      (count(*) FILTER (WHERE m.value IS NULL))::int AS gap_hours
    FROM usage_metrics m
    JOIN tenants t ON t.id = m.tenant_id
    LEFT JOIN tenant_services ts ON ts.id = m.tenant_service_id
    LEFT JOIN services s ON s.id = ts.service_id
    WHERE m.period_start >= ${q.from} AND m.period_start < ${q.to} ${tenantFilter}
    GROUP BY m.tenant_id, t.slug, s.key, m.metric, period
  `.execute(db);
  const rows: UsageRow[] = hourly.rows.map((r) => ({
    tenantId: r.tenant_id,
    tenant: r.slug,
    service: r.service,
    metric: r.metric,
    period: new Date(r.period),
    value: r.value,
    hours: r.hours,
    gapHours: r.gap_hours,
  }));
  if (q.granularity === 'month') {
    // Months whose hours were pruned: their roll-ups.
    const seen = new Set(rows.map((r) => `${r.tenantId}|${r.period.getTime()}`));
    const monthly = await sql<{
      tenant_id: string;
      slug: string;
      service: string | null;
      metric: string;
      period: Date;
      value: number;
      hours: number;
      gap_hours: number;
    }>`
      SELECT u.tenant_id, t.slug, s.key AS service, u.metric,
        (u.month::timestamp AT TIME ZONE ${q.timeZone}) AS period, u.value,
        (u.hours - u.gap_hours) AS hours, u.gap_hours
      FROM usage_monthly u
      JOIN tenants t ON t.id = u.tenant_id
      LEFT JOIN tenant_services ts ON ts.id = u.tenant_service_id
      LEFT JOIN services s ON s.id = ts.service_id
      WHERE (u.month::timestamp AT TIME ZONE ${q.timeZone}) >= ${q.from}
        AND (u.month::timestamp AT TIME ZONE ${q.timeZone}) < ${q.to}
        ${q.tenantId ? sql`AND u.tenant_id = ${q.tenantId}` : sql``}
    `.execute(db);
    for (const r of monthly.rows) {
      const period = new Date(r.period);
      if (seen.has(`${r.tenant_id}|${period.getTime()}`)) continue;
      rows.push({
        tenantId: r.tenant_id,
        tenant: r.slug,
        service: r.service,
        metric: r.metric,
        period,
        value: r.value,
        hours: r.hours,
        gapHours: r.gap_hours,
      });
    }
  }
  return rows.sort(
    (a, b) =>
      a.tenant.localeCompare(b.tenant) ||
      a.period.getTime() - b.period.getTime() ||
      (a.service ?? '').localeCompare(b.service ?? '') ||
      a.metric.localeCompare(b.metric),
  );
}

const csvCell = (v: string | number | Date | null): string => {
  const s = v instanceof Date ? v.toISOString() : v === null ? '' : String(v);
  // Quote what needs it; a leading =, +, - or @ would be a formula in a spreadsheet.
  const safe = /^[=+\-@]/.test(s) && !/^-?\d/.test(s) ? `'${s}` : s;
  return /[",\n\r]/.test(safe) ? `"${safe.replace(/"/g, '""')}"` : safe;
};

export const CSV_COLUMNS = ['tenant', 'service', 'metric', 'period', 'value', 'hours', 'gapHours'] as const;

/** The rows as CSV (RFC 4180, header line first). */
export function usageCsv(rows: UsageRow[]): string {
  const lines = [CSV_COLUMNS.join(',')];
  for (const r of rows) lines.push(CSV_COLUMNS.map((c) => csvCell(r[c])).join(','));
  return `${lines.join('\r\n')}\r\n`;
}

/** The instants a month (`YYYY-MM`) starts and ends at in `timeZone`; a bad month is a 400 naming `month`. */
export async function monthRange(
  db: Database,
  month: string,
  timeZone: string,
): Promise<{ from: Date; to: Date }> {
  const m = /^(\d{4})-(\d{2})$/.exec(month);
  if (!m || Number(m[2]) < 1 || Number(m[2]) > 12)
    throw badRequest(`month must be YYYY-MM, got "${month}"`, { param: 'month' });
  const { rows } = await sql<{ from: Date; to: Date }>`
    SELECT (${`${month}-01`}::date::timestamp AT TIME ZONE ${timeZone}) AS "from",
      ((${`${month}-01`}::date + interval '1 month')::timestamp AT TIME ZONE ${timeZone}) AS "to"
  `.execute(db);
  return rows[0]!;
}

/** One tenant's month: each metric summed over its services and the tenant as a whole. */
export interface TenantUsageTotals {
  tenantId: string;
  tenant: string;
  /** The host the tenant is placed on (its name), or null while it is not placed. */
  host: string | null;
  /**
   * Counters: the month's sum; gauges: the sum over its containers and databases of each one's
   * average (storage held on average); `memory_peak_bytes`: the sum of each container's highest
   * hour. Null when every hour of the metric was a gap.
   */
  metrics: Record<string, number | null>;
  /** Hours of the month in which one of its metrics had a gap (the most over its rows). */
  gapHours: number;
}

export interface UsageAcrossTenants {
  /** Every tenant with usage in the period, ordered as asked. */
  tenants: TenantUsageTotals[];
  /** Per metric, the sum of the tenants' figures (null ones count nothing). */
  totals: Record<string, number>;
  /** Per host (by name; null: tenants not placed), its tenants' count and the sums of their figures. */
  hosts: { host: string | null; tenants: number; totals: Record<string, number> }[];
}

/** Per metric, the sum of these tenants' figures (null ones count nothing). */
function sumMetrics(tenants: TenantUsageTotals[]): Record<string, number> {
  const totals: Record<string, number> = {};
  for (const t of tenants)
    for (const [metric, value] of Object.entries(t.metrics))
      totals[metric] = (totals[metric] ?? 0) + (value ?? 0);
  return totals;
}

/** What the admin view may be ordered by: the tenant's slug, or a metric (largest first). */
export function parseUsageSort(sort: string | undefined): string {
  const value = sort ?? 'tenant';
  if (value !== 'tenant' && !(METRICS as readonly string[]).includes(value))
    throw badRequest(`sort must be tenant or one of ${METRICS.join(', ')}`, { param: 'sort' });
  return value;
}

/**
 * The operators' view across tenants: each tenant's figures for the period
 * (from the same rows as a tenant's own report by month, summed over its
 * services), and the totals, which are the sums of those figures.
 */
export async function usageAcrossTenants(
  db: Database,
  q: { from: Date; to: Date; timeZone: string; sort?: string },
): Promise<UsageAcrossTenants> {
  const rows = await usageReport(db, { ...q, granularity: 'month' });
  const placed = await db
    .selectFrom('tenants')
    .leftJoin('hosts', 'hosts.id', 'tenants.host_id')
    .select(['tenants.id', 'hosts.name'])
    .where('tenants.id', 'in', [...new Set(rows.map((r) => r.tenantId)), ''])
    .execute();
  const hostOf = new Map(placed.map((p) => [p.id, p.name]));
  const byTenant = new Map<string, TenantUsageTotals>();
  for (const r of rows) {
    let t = byTenant.get(r.tenantId);
    if (!t)
      byTenant.set(
        r.tenantId,
        (t = {
          tenantId: r.tenantId,
          tenant: r.tenant,
          host: hostOf.get(r.tenantId) ?? null,
          metrics: {},
          gapHours: 0,
        }),
      );
    const before = t.metrics[r.metric];
    t.metrics[r.metric] = r.value === null ? (before ?? null) : (before ?? 0) + r.value;
    t.gapHours = Math.max(t.gapHours, r.gapHours);
  }
  const tenants = [...byTenant.values()];
  const onHost = new Map<string | null, TenantUsageTotals[]>();
  for (const t of tenants) onHost.set(t.host, [...(onHost.get(t.host) ?? []), t]);
  const hosts = [...onHost.entries()]
    .map(([host, on]) => ({ host, tenants: on.length, totals: sumMetrics(on) }))
    .sort((a, b) => (a.host ?? '\uffff').localeCompare(b.host ?? '\uffff'));
  const sort = q.sort ?? 'tenant';
  tenants.sort((a, b) =>
    sort === 'tenant'
      ? a.tenant.localeCompare(b.tenant)
      : (b.metrics[sort] ?? -1) - (a.metrics[sort] ?? -1) || a.tenant.localeCompare(b.tenant),
  );
  return { tenants, totals: sumMetrics(tenants), hosts };
}
