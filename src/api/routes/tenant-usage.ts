import { z } from 'zod';
import type { Config } from '../../config/load.ts';
import { principalOf } from '../identity/authenticate.ts';
import type { TenantAccess } from '../../identity/tenant-access.ts';
import { parseUsageRange, usageReport } from '../../usage/report.ts';
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

/**
 * A tenant's metered usage (members): per service (null: the tenant as a
 * whole) and metric, by hour, day or month. Read under the tenant's row-level
 * scope like every tenant route; `from`/`to`/`granularity` are checked by
 * `parseUsageRange`, whose refusals name the parameter.
 */
export function tenantUsageRoutes(app: ApiServer, deps: { access: TenantAccess; config: Config }): void {
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
