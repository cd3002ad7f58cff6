import { z } from 'zod';
import type { Config } from '../../config/load.ts';
import { principalOf } from '../identity/authenticate.ts';
import type { TenantAccess } from '../../identity/tenant-access.ts';
import type { Database } from '../../db/database.ts';
import { monthOf } from '../../usage/collect.ts';
import {
  monthRange,
  parseUsageRange,
  parseUsageSort,
  usageAcrossTenants,
  usageReport,
} from '../../usage/report.ts';
import type { ApiServer } from '../server.ts';

const UsageOut = z.object({
  from: z.string(),
  to: z.string(),
  granularity: z.enum(['hour', 'day', 'month']),
  timeZone: z.string(),
  usage: z.array(
    z.object({
      service: z.string().nullable(),
      metric: z.string(),
      period: z.string(),
      value: z.number().nullable(),
      hours: z.number(),
      gapHours: z.number(),
    }),
  ),
});

const AcrossOut = z.object({
  month: z.string(),
  timeZone: z.string(),
  from: z.string(),
  to: z.string(),
  sort: z.string(),
  total: z.number(),
  limit: z.number(),
  offset: z.number(),
  totals: z.record(z.string(), z.number()),
  hosts: z.array(
    z.object({
      host: z.string().nullable(),
      tenants: z.number(),
      totals: z.record(z.string(), z.number()),
    }),
  ),
  tenants: z.array(
    z.object({
      tenantId: z.string(),
      tenant: z.string(),
      host: z.string().nullable(),
      metrics: z.record(z.string(), z.number().nullable()),
      gapHours: z.number(),
    }),
  ),
});

/**
 * A tenant's metered usage (members): per service (null: the tenant as a
 * whole) and metric, by hour, day or month. Read under the tenant's row-level
 * scope like every tenant route; `from`/`to`/`granularity` are checked by
 * `parseUsageRange`, whose refusals name the parameter. Also the admins' view
 * across tenants (`GET /api/v1/usage`).
 */
export function tenantUsageRoutes(
  app: ApiServer,
  deps: { access: TenantAccess; config: Config; db: Database },
): void {
  app.get(
    '/api/v1/usage',
    {
      config: { minRole: 'platform_admin' },
      schema: {
        tags: ['usage'],
        summary:
          "Every tenant's usage in a month (admins): per tenant each metric summed over its services, and totals that are the sums of the tenants' figures; `sort` (tenant or a metric, largest first), `limit` and `offset` page",
        querystring: z.object({
          month: z.string().max(20).optional(),
          sort: z.string().max(40).optional(),
          limit: z.coerce.number().int().min(1).max(500).default(50),
          offset: z.coerce.number().int().min(0).max(1_000_000).default(0),
        }),
        response: { 200: AcrossOut },
      },
    },
    async (request) => {
      const { limit, offset } = request.query;
      const timeZone = deps.config.timeZone;
      const month = request.query.month ?? monthOf(new Date(), timeZone).slice(0, 7);
      const sort = parseUsageSort(request.query.sort);
      const { from, to } = await monthRange(deps.db, month, timeZone);
      const all = await usageAcrossTenants(deps.db, { from, to, timeZone, sort });
      return {
        month,
        timeZone,
        from: from.toISOString(),
        to: to.toISOString(),
        sort,
        total: all.tenants.length,
        limit,
        offset,
        totals: all.totals,
        hosts: all.hosts,
        tenants: all.tenants.slice(offset, offset + limit),
      };
    },
  );

  app.get(
    '/api/v1/tenants/:tenant/usage',
    {
      config: { minRole: 'tenant_member' },
      schema: {
        tags: ['usage'],
        summary:
          'Metered usage (CPU seconds, memory, disk, database size, network, requests, mails) per service and metric; value null: every hour of the period was a gap',
        params: z.object({ tenant: z.string().min(1).max(80) }),
        querystring: z.object({
          from: z.string().max(40).optional(),
          to: z.string().max(40).optional(),
          granularity: z.string().max(10).optional(),
        }),
        response: { 200: UsageOut },
      },
    },
    async (request) => {
      const range = parseUsageRange(request.query);
      const timeZone = deps.config.timeZone;
      const rows = await deps.access.forTenant(
        principalOf(request),
        request.params.tenant,
        'tenant_member',
        ({ trx, tenantId }) => usageReport(trx, { tenantId, ...range, timeZone }),
      );
      return {
        from: range.from.toISOString(),
        to: range.to.toISOString(),
        granularity: range.granularity,
        timeZone,
        usage: rows.map((r) => ({
          service: r.service,
          metric: r.metric,
          period: r.period.toISOString(),
          value: r.value,
          hours: r.hours,
          gapHours: r.gapHours,
        })),
      };
    },
  );
}
