import type { Kysely } from 'kysely';
import { z } from 'zod';
import { TENANT_KIND } from '../../core/kinds.ts';
import type { DB } from '../../db/tables.ts';
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
  /** The workspace's lifecycle status, and what its provisioning waits for (e.g. room on a host), if anything. */
  workspace: z.object({ status: z.string(), waitingFor: z.string().nullable() }),
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

/** The tenant's status and the first waiting step's reason among its own (dashboard) resource's steps. */
async function workspaceState(db: Kysely<DB>, tenantId: string) {
  const tenant = await db
    .selectFrom('tenants')
    .select('status')
    .where('id', '=', tenantId)
    .executeTakeFirst();
  const resource = await db
    .selectFrom('resources')
    .select('steps')
    .where('kind', '=', TENANT_KIND)
    .where('id', '=', tenantId)
    .executeTakeFirst();
  const waiting = (resource?.steps ?? []).find((s) => s.state === 'waiting' && s.waitingFor);
  return { status: tenant?.status ?? 'unknown', waitingFor: waiting?.waitingFor ?? null };
}

/** `GET /api/v1/tenants/{tenant}/status`: health, uptime and incidents of a tenant's dashboard and services (members). */
export function tenantStatusRoutes(app: ApiServer, deps: { access: TenantAccess }): void {
  app.get(
    '/api/v1/tenants/:tenant/status',
    {
      config: { minRole: 'tenant_member' },
      schema: {
        tags: ['services'],
        summary:
          "Workspace status (and what its provisioning waits for), and health of the tenant's dashboard and services: state, last probe, uptime over 24 h / 7 d / 30 d, open incident and incident history",
        params: Params,
        response: { 200: StatusOut },
      },
    },
    async (request) =>
      deps.access.forTenant(
        principalOf(request),
        request.params.tenant,
        'tenant_member',
        async ({ trx, tenantId }) => ({
          workspace: await workspaceState(trx, tenantId),
          ...(await tenantHealthStatus(trx, tenantId)),
        }),
      ),
  );
}
