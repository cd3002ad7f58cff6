import { badRequest, DomainError } from '../../core/errors.ts';
import { findTenant } from '../../db/tenants.ts';
import { collectUsage } from '../../usage/collect.ts';
import { monthOf } from '../../usage/collect.ts';
import { monthRange, usageAcrossTenants, usageCsv, usageReport } from '../../usage/report.ts';
import { withDatabase, type CommandContext } from '../context.ts';
import { printJson, printTable } from '../output.ts';

/**
 * `aiqso usage collect`: one collection pass for the current hour, as the
 * hourly schedule runs it (and as idempotent: a second run in the same hour
 * reads nothing again and adds nothing).
 */
export async function usageCollect(ctx: CommandContext, options: { json?: boolean }): Promise<void> {
  const result = await withDatabase(ctx, async (database) => {
    const { createComputeDriver } = await import('../../compute/index.ts');
    const compute = await createComputeDriver(ctx.config, database.db, ctx.log);
    try {
      return await collectUsage({
        db: database.db,
        admin: database.pool,
        compute,
        log: ctx.log,
        timeZone: ctx.config.timeZone,
        retention: ctx.config.usageRetention,
      });
    } finally {
      await compute.close();
    }
  });
  if (options.json) return printJson(result);
  process.stdout.write(
    `Usage collected for ${result.boundary.toISOString()}: ${result.read} containers read, ` +
      `${result.written} hourly values written (${result.gaps} gaps)` +
      (result.failed.length ? `, ${result.failed.length} containers could not be read` : '') +
      '.\n',
  );
  for (const f of result.failed) process.stderr.write(`  ${f.container}: ${f.error}\n`);
}

/**
 * `aiqso usage [<slug>] [--month YYYY-MM] [--json|--csv]`: a month's usage
 * (the current one unless --month) of one tenant or of every tenant, per
 * service and metric. Exit 2 for a bad month, 3 for an unknown tenant.
 */
export async function usageShow(
  ctx: CommandContext,
  slug: string | undefined,
  options: { month?: string; json?: boolean; csv?: boolean; all?: boolean },
): Promise<void> {
  const timeZone = ctx.config.timeZone;
  const month = options.month ?? monthOf(new Date(), timeZone).slice(0, 7);
  if (options.all) {
    if (slug !== undefined) throw badRequest('--all shows every tenant: name no tenant with it');
    if (options.csv) throw badRequest('--all prints a table or --json, not --csv');
    return usageAll(ctx, month, options.json === true);
  }
  const rows = await withDatabase(ctx, async ({ db }) => {
    const { from, to } = await monthRange(db, month, timeZone);
    let tenantId: string | undefined;
    if (slug !== undefined) {
      const tenant = await findTenant(db, slug);
      if (!tenant) throw new DomainError('not_found', `no tenant with slug or id "${slug}"`);
      tenantId = tenant.id;
    }
    return usageReport(db, { tenantId, from, to, granularity: 'month', timeZone });
  });
  if (options.csv) return void process.stdout.write(usageCsv(rows));
  if (options.json) return printJson(rows);
  if (rows.length === 0) {
    process.stdout.write(`No usage recorded for ${month}.\n`);
    return;
  }
  printTable(
    rows.map((r) => ({ ...r, service: r.service ?? '(tenant)' })),
    ['tenant', 'service', 'metric', 'value', 'hours', 'gapHours'],
  );
}

/** The columns of `aiqso usage --all`: the metrics an operator bills and plans by. */
const ALL_COLUMNS = [
  'cpu_seconds',
  'memory_avg_bytes',
  'memory_peak_bytes',
  'disk_bytes',
  'db_bytes',
  'requests',
  'mails_sent',
] as const;

/**
 * `aiqso usage --all [--month] [--json]`: every tenant's month, one line each
 * (each metric summed over its services, as `GET /api/v1/usage` answers), with
 * tenants on several hosts a `TOTAL on <host>` line each, and a TOTAL line that
 * is the sum of the tenants' lines.
 */
async function usageAll(ctx: CommandContext, month: string, json: boolean): Promise<void> {
  const timeZone = ctx.config.timeZone;
  const result = await withDatabase(ctx, async ({ db }) => {
    const { from, to } = await monthRange(db, month, timeZone);
    return { from, to, ...(await usageAcrossTenants(db, { from, to, timeZone })) };
  });
  if (json) return printJson({ month, timeZone, ...result });
  if (result.tenants.length === 0) {
    process.stdout.write(`No usage recorded for ${month}.\n`);
    return;
  }
  const cell = (v: number | null | undefined) =>
    v === null || v === undefined ? null : Number.isInteger(v) ? String(v) : v.toFixed(2);
  printTable(
    [
      ...result.tenants.map((t) => ({
        tenant: t.tenant,
        ...Object.fromEntries(ALL_COLUMNS.map((m) => [m, cell(t.metrics[m])])),
      })),
      // With tenants on more than one host, each host's sum before the whole TOTAL.
      ...(result.hosts.length > 1
        ? result.hosts.map((h) => ({
            tenant: `TOTAL on ${h.host ?? '(not placed)'}`,
            ...Object.fromEntries(ALL_COLUMNS.map((m) => [m, cell(h.totals[m])])),
          }))
        : []),
      { tenant: 'TOTAL', ...Object.fromEntries(ALL_COLUMNS.map((m) => [m, cell(result.totals[m])])) },
    ],
    ['tenant', ...ALL_COLUMNS],
  );
}
