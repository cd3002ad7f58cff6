import { z } from 'zod';
import { tenantHealthStatus } from '../../health/status.ts';
import { principalOf } from '../identity/authenticate.ts';
import type { TenantAccess } from '../../identity/tenant-access.ts';
import type { ApiServer } from '../server.ts';

const Params = z.object({ tenant: z.string().min(1).max(80) });
const Rung = z.object({ rung: z.number(), action: z.string(), at: z.string(), outcome: z.string() });
const Incident = z.object({
  id: z.string(),
  target: z.string(),
  reason: z.string(),
  rungs: z.array(Rung),
  openedAt: z.string(),
  resolvedAt: z.string().nullable(),
});
const Uptime = z.number().nullable();
const StatusOut = z.object({
  targets: z.array(
    z.object({
      kind: z.enum(['dashboard', 'service']),
      id: z.string(),
      name: z.string(),
      state: z.enum(['unknown', 'healthy', 'failing', 'degraded']),
      summary: z.string(),
      lastProbe: z.object({ at: z.string(), result: z.string() }).nullable(),
      uptime: z.object({ '24h': Uptime, '7d': Uptime, '30d': Uptime }),
      openIncident: Incident.nullable(),
    }),
  ),
  incidents: z.array(Incident),
});

/** `GET /api/v1/tenants/{tenant}/status`: health, uptime and incidents of a tenant's dashboard and services (members). */
export function tenantStatusRoutes(app: ApiServer, deps: { access: TenantAccess }): void {
  app.get(
    '/api/v1/tenants/:tenant/status',
    {
      config: { minRole: 'tenant_member' },
      schema: {
        tags: ['services'],
        summary:
          "Health of the tenant's dashboard and services: state, last probe, uptime over 24 h / 7 d / 30 d, open incident and incident history",
        params: Params,
        response: { 200: StatusOut },
      },
    },
    async (request) =>
      deps.access.forTenant(
        principalOf(request),
        request.params.tenant,
        'tenant_member',
        ({ trx, tenantId }) => tenantHealthStatus(trx, tenantId),
      ),
  );
}
