import { sql } from 'kysely';
import type { Database } from '../db/database.ts';
import type { Logger } from '../observability/logger.ts';
import { emitTenantEvent } from '../events/emit.ts';
import { writeOutbox } from '../orchestrator/outbox.ts';
import type { AlertPayload, EmailPayload } from '../orchestrator/mail-handlers.ts';
import { rollUpMonth, monthOf } from './collect.ts';
import { monthRange, usageCsv, usageReport, type UsageRow } from './report.ts';

/** What a plan includes each month (from `catalog/plans.yaml`): the figures usage is measured against. */
export interface PlanAllowance {
  key: string;
  name: string;
  includes?: { storage_gb?: number; requests?: number };
}

export interface MonthlyReportDeps {
  db: Database;
  timeZone: string;
  plans: readonly PlanAllowance[];
  log: Logger;
}

/** The month (`YYYY-MM`) before the one `t` falls in, in `timeZone`. */
export function previousMonth(t: Date, timeZone: string): string {
  const [year, month] = monthOf(t, timeZone).split('-').map(Number) as [number, number];
  return month === 1 ? `${year - 1}-12` : `${year}-${String(month - 1).padStart(2, '0')}`;
}

const GB = 1e9;

/** One tenant's month, added up: what the report and the summary show. */
export interface TenantMonth {
  tenantId: string;
  slug: string;
  plan: string;
  cpuHours: number;
  /** Container disk plus service databases, averaged over the month. */
  storageGb: number;
  requests: number;
  mailsSent: number;
  gapHours: number;
  services: { service: string; cpuHours: number; storageGb: number }[];
}

const value = (rows: UsageRow[], metric: string): number =>
  rows.filter((r) => r.metric === metric).reduce((sum, r) => sum + (r.value ?? 0), 0);

/** Add a tenant's month rows up: counters summed, storage gauges (averages per container) summed. */
export function tenantMonth(
  tenant: { id: string; slug: string; plan: string },
  rows: UsageRow[],
): TenantMonth {
  const storage = (list: UsageRow[]) => (value(list, 'disk_bytes') + value(list, 'db_bytes')) / GB;
  const keys = [...new Set(rows.map((r) => r.service ?? 'workspace'))].sort();
  return {
    tenantId: tenant.id,
    slug: tenant.slug,
    plan: tenant.plan,
    cpuHours: value(rows, 'cpu_seconds') / 3600,
    storageGb: storage(rows),
    requests: value(rows, 'requests'),
    mailsSent: value(rows, 'mails_sent'),
    gapHours: Math.max(0, ...rows.map((r) => r.gapHours)),
    services: keys.map((key) => {
      const mine = rows.filter((r) => (r.service ?? 'workspace') === key);
      return { service: key, cpuHours: value(mine, 'cpu_seconds') / 3600, storageGb: storage(mine) };
    }),
  };
}

const fmt = (n: number, digits = 2) => n.toLocaleString('en-US', { maximumFractionDigits: digits });
const escape = (s: string) =>
  s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

/** "November 2026" for `2026-11`. */
export function monthName(month: string): string {
  return new Date(`${month}-15T12:00:00Z`).toLocaleString('en-US', {
    month: 'long',
    year: 'numeric',
    timeZone: 'UTC',
  });
}

/** The usage against one included amount, as a line of text and a bar (a table cell, so it shows with images off). */
function allowanceLine(label: string, used: number, included: number | undefined, unit: string) {
  if (included === undefined) return { text: `${label}: ${fmt(used)} ${unit}`, html: '' };
  const pct = (used / included) * 100;
  const text = `${label}: ${fmt(used)} of ${fmt(included)} ${unit} included (${fmt(pct, 0)}%)`;
  const width = Math.min(100, Math.round(pct));
  const colour = pct >= 100 ? '#b42318' : pct >= 80 ? '#b54708' : '#1d4ed8';
  const html = `<tr><th scope="row" style="text-align:left;padding:4px 8px">${escape(label)}</th>
<td style="padding:4px 8px;width:60%"><div style="background:#e5e7eb;width:100%;height:12px">
<div style="background:${colour};width:${width}%;height:12px"></div></div></td>
<td style="padding:4px 8px">${escape(`${fmt(used)} / ${fmt(included)} ${unit} (${fmt(pct, 0)}%)`)}</td></tr>`;
  return { text, html };
}

/** The owner's mail for one month: plain text, an HTML table with bars, and the rows as CSV. */
export function ownerReport(
  month: string,
  m: TenantMonth,
  plan: PlanAllowance | undefined,
  rows: UsageRow[],
) {
  const name = monthName(month);
  const storage = allowanceLine('Storage', m.storageGb, plan?.includes?.storage_gb, 'GB');
  const requests = allowanceLine('Requests', m.requests, plan?.includes?.requests, 'requests');
  const serviceLines = m.services.map(
    (s) => `  ${s.service}: ${fmt(s.cpuHours, 3)} CPU hours, ${fmt(s.storageGb, 3)} GB stored on average`,
  );
  const text = [
    `Your workspace ${m.slug} in ${name}${plan ? ` (plan ${plan.name})` : ''}:`,
    '',
    storage.text,
    requests.text,
    `CPU: ${fmt(m.cpuHours, 3)} hours`,
    `Mails sent: ${fmt(m.mailsSent, 0)}`,
    '',
    'Per service:',
    ...serviceLines,
    ...(m.gapHours > 0
      ? ['', `Up to ${m.gapHours} hours of the month could not be measured; they are not counted.`]
      : []),
    '',
    'Every hourly figure is in the attached CSV.',
  ].join('\n');
  const html = `<!doctype html><html lang="en"><body style="font-family:system-ui,sans-serif;color:#111827">
<h1 style="font-size:20px">Your usage in ${escape(name)}</h1>
<p>Workspace <strong>${escape(m.slug)}</strong>${plan ? `, plan ${escape(plan.name)}` : ''}.</p>
<table role="presentation" style="border-collapse:collapse;width:100%;max-width:600px">${storage.html}${requests.html}</table>
<table style="border-collapse:collapse;margin-top:16px"><caption style="text-align:left;font-weight:600">Per service</caption>
<tr><th scope="col" style="text-align:left;padding:4px 8px">Service</th><th scope="col" style="text-align:right;padding:4px 8px">CPU hours</th><th scope="col" style="text-align:right;padding:4px 8px">GB stored</th></tr>
${m.services
  .map(
    (s) =>
      `<tr><td style="padding:4px 8px">${escape(s.service)}</td><td style="text-align:right;padding:4px 8px">${fmt(s.cpuHours, 3)}</td><td style="text-align:right;padding:4px 8px">${fmt(s.storageGb, 3)}</td></tr>`,
  )
  .join('\n')}
</table>
<p>Mails sent: ${fmt(m.mailsSent, 0)}. Every hourly figure is in the attached CSV.</p></body></html>`;
  return {
    subject: `Your usage in ${name}`,
    text,
    html,
    csv: { filename: `usage-${m.slug}-${month}.csv`, contentType: 'text/csv', content: usageCsv(rows) },
  };
}

const SUMMARY_COLUMNS = ['tenant', 'plan', 'cpu_hours', 'storage_gb', 'requests', 'mails_sent', 'gap_hours'];

/** The operator's summary: one line per tenant and the totals, which are the sums of those lines. */
export function operatorSummary(month: string, months: TenantMonth[]) {
  const total = months.reduce(
    (t, m) => ({
      cpuHours: t.cpuHours + m.cpuHours,
      storageGb: t.storageGb + m.storageGb,
      requests: t.requests + m.requests,
      mailsSent: t.mailsSent + m.mailsSent,
    }),
    { cpuHours: 0, storageGb: 0, requests: 0, mailsSent: 0 },
  );
  const line = (m: TenantMonth) =>
    [m.slug, m.plan, m.cpuHours, m.storageGb, m.requests, m.mailsSent, m.gapHours].join(',');
  const csv = [
    SUMMARY_COLUMNS.join(','),
    ...months.map(line),
    ['TOTAL', '', total.cpuHours, total.storageGb, total.requests, total.mailsSent, ''].join(','),
  ].join('\r\n');
  const text = [
    `Usage in ${monthName(month)}: ${months.length} tenant(s).`,
    '',
    `CPU: ${fmt(total.cpuHours, 3)} hours; storage: ${fmt(total.storageGb, 3)} GB on average; requests: ${fmt(total.requests, 0)}; mails: ${fmt(total.mailsSent, 0)}.`,
    '',
    'Top by CPU:',
    ...[...months]
      .sort((a, b) => b.cpuHours - a.cpuHours)
      .slice(0, 10)
      .map((m) => `  ${m.slug}: ${fmt(m.cpuHours, 3)} CPU hours, ${fmt(m.storageGb, 3)} GB`),
    '',
    'Every tenant is in the attached CSV.',
  ].join('\n');
  return {
    subject: `Usage in ${monthName(month)}: ${months.length} tenant(s)`,
    text,
    total,
    csv: { filename: `usage-summary-${month}.csv`, contentType: 'text/csv', content: `${csv}\r\n` },
  };
}

/**
 * Queue the reports of a closed month: one mail to each tenant owner with
 * usage in it (and a `usage.report` event for webhooks) and one summary to
 * the platform admins. The month is rolled up
 * first. Every mail goes through the outbox under a key of tenant and month,
 * so running this again (a second worker, a restart on the 1st, a backfilled
 * firing) queues nothing twice.
 */
export async function queueMonthlyReports(
  deps: MonthlyReportDeps,
  month: string,
): Promise<{ tenants: number; queued: number }> {
  const { db, timeZone } = deps;
  const { from, to } = await monthRange(db, month, timeZone);
  await rollUpMonth(db, timeZone, `${month}-01`);
  const rows = await usageReport(db, { from, to, granularity: 'month', timeZone });
  const tenantIds = [...new Set(rows.map((r) => r.tenantId))];
  if (tenantIds.length === 0) return { tenants: 0, queued: 0 };
  const tenants = await db
    .selectFrom('tenants as t')
    .leftJoin('users as u', (j) => j.onRef('u.tenant_id', '=', 't.id').on('u.role', '=', 'tenant_owner'))
    .select(['t.id', 't.slug', 't.plan', 't.status', 'u.email'])
    .where('t.id', 'in', tenantIds)
    .orderBy('t.slug')
    .execute();
  const months: TenantMonth[] = [];
  let queued = 0;
  for (const t of tenants) {
    const mine = rows.filter((r) => r.tenantId === t.id);
    const m = tenantMonth({ id: t.id, slug: t.slug, plan: t.plan }, mine);
    months.push(m);
    // A purged tenant has no owner left to tell; its figures stay in the operator's summary.
    if (!t.email || t.status === 'purged') continue;
    const report = ownerReport(
      month,
      m,
      deps.plans.find((p) => p.key === t.plan),
      mine,
    );
    const payload: EmailPayload = {
      to: t.email,
      subject: report.subject,
      text: report.text,
      html: report.html,
      template: 'usage-report',
      tenantId: t.id,
      attachments: [report.csv],
    };
    const key = `usage-report:${t.id}:${month}`;
    await db.transaction().execute(async (trx) => {
      if (await writeOutbox(trx, { key, kind: 'email', payload: { ...payload } })) queued++;
      // The same month's figures for event webhooks (once per tenant and month, like the mail).
      const totals = {
        cpuHours: m.cpuHours,
        storageGb: m.storageGb,
        requests: m.requests,
        mailsSent: m.mailsSent,
      };
      await emitTenantEvent(trx, 'usage.report', t.id, { month, usage: totals }, { key });
    });
  }
  const summary = operatorSummary(month, months);
  const alert: AlertPayload = {
    subject: summary.subject,
    text: summary.text,
    template: 'usage-summary',
    attachments: [summary.csv],
  };
  if (await writeOutbox(db, { key: `usage-summary:${month}`, kind: 'alert', payload: alert })) queued++;
  deps.log.info({ month, tenants: months.length, queued }, 'usage: monthly reports queued');
  return { tenants: months.length, queued };
}

/** Tenants' month so far, for the included-amount warnings: requests summed, storage as of the last hour. */
async function monthToDate(db: Database, from: Date, to: Date) {
  const { rows } = await sql<{ tenant_id: string; requests: number | null; storage: number | null }>`
    SELECT t.id AS tenant_id,
      (SELECT sum(value) FROM usage_metrics m WHERE m.tenant_id = t.id AND m.metric = 'requests'
        AND m.period_start >= ${from} AND m.period_start < ${to}) AS requests,
      (SELECT sum(value) FROM usage_metrics m WHERE m.tenant_id = t.id AND m.metric IN ('disk_bytes', 'db_bytes')
        AND m.period_start = (SELECT max(period_start) FROM usage_metrics x WHERE x.tenant_id = t.id
          AND x.metric IN ('disk_bytes', 'db_bytes') AND x.period_start >= ${from} AND x.period_start < ${to})
      ) AS storage
    FROM tenants t WHERE t.status IN ('active', 'suspended')
  `.execute(db);
  return rows;
}

/**
 * Warn owners whose month so far reached 80% or 100% of what their plan
 * includes: one mail per tenant, month, amount and threshold (the outbox key),
 * however many passes see it. Nothing is cut off.
 */
export async function warnPlanAllowances(deps: MonthlyReportDeps, now: Date): Promise<number> {
  const { db, timeZone } = deps;
  const month = monthOf(now, timeZone).slice(0, 7);
  const { from, to } = await monthRange(db, month, timeZone);
  const withIncludes = new Map(deps.plans.filter((p) => p.includes).map((p) => [p.key, p]));
  if (withIncludes.size === 0) return 0;
  const owners = await db
    .selectFrom('tenants as t')
    .innerJoin('users as u', 'u.tenant_id', 't.id')
    .select(['t.id', 't.slug', 't.plan', 'u.email'])
    .where('u.role', '=', 'tenant_owner')
    .where('t.plan', 'in', [...withIncludes.keys()])
    .execute();
  const usage = new Map((await monthToDate(db, from, to)).map((r) => [r.tenant_id, r]));
  let queued = 0;
  for (const o of owners) {
    const plan = withIncludes.get(o.plan)!;
    const u = usage.get(o.id);
    if (!u) continue;
    const amounts = [
      {
        key: 'storage',
        label: 'storage',
        used: (u.storage ?? 0) / GB,
        included: plan.includes?.storage_gb,
        unit: 'GB',
      },
      {
        key: 'requests',
        label: 'requests',
        used: u.requests ?? 0,
        included: plan.includes?.requests,
        unit: 'requests',
      },
    ];
    for (const a of amounts) {
      if (a.included === undefined) continue;
      const pct = (a.used / a.included) * 100;
      const threshold = pct >= 100 ? 100 : pct >= 80 ? 80 : undefined;
      if (threshold === undefined) continue;
      const payload: EmailPayload = {
        to: o.email,
        subject: `Your workspace ${o.slug} has used ${threshold}% of its ${a.label} this month`,
        text: [
          `Your workspace ${o.slug} has used ${fmt(a.used)} of the ${fmt(a.included)} ${a.unit} of ${a.label} your plan ${plan.name} includes in ${monthName(month)} (${fmt(pct, 0)}%).`,
          '',
          'Nothing is switched off: your services keep running. To stay within the plan, remove data you no longer need or change to a larger plan.',
        ].join('\n'),
        template: 'usage-warning',
        tenantId: o.id,
      };
      const key = `usage-warning:${o.id}:${month}:${a.key}:${threshold}`;
      if (await writeOutbox(db, { key, kind: 'email', payload: { ...payload } })) queued++;
    }
  }
  return queued;
}
