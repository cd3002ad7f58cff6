import { z } from 'zod';
import { notFound } from '../../core/errors.ts';
import type { Database } from '../../db/database.ts';
import { principalOf } from '../identity/authenticate.ts';
import { isPlatformAdmin, type Principal } from '../../identity/principal.ts';
import type { TenantAccess } from '../../identity/tenant-access.ts';
import { cancelTenant } from '../../lifecycle/cancel.ts';
import { startPurge } from '../../lifecycle/purge.ts';
import type { ApiServer } from '../server.ts';

const Params = z.object({ tenant: z.string().min(1).max(80) });
const TenantState = z.object({
  id: z.string(),
  slug: z.string(),
  status: z.string(),
  cancelledAt: z.string().nullable(),
  purgeAfter: z.string().nullable(),
});

/**
 * Operator actions on a tenant, for platform admins only: cancel (the grace
 * period starts, as when Stripe deletes the subscription) and purge. Both are
 * idempotent and audited (the identity hooks record every mutating request).
 */
export function tenantLifecycleRoutes(
  app: ApiServer,
  /** `dataDir`: where a never-provisioned tenant's purge, done here, looks for its files. */
  deps: { db: Database; access: TenantAccess; graceDays: number; dataDir?: string },
): void {
  const { db } = deps;

  /** The tenant's id, for an admin; everyone else gets what every tenant route answers (404 or 403). */
  async function adminTarget(ref: string, principal: Principal): Promise<string> {
    if (!isPlatformAdmin(principal)) {
      // Another tenant's answers "not found"; one's own tenant needs the admin role (403).
      await deps.access.forTenant(principal, ref, 'platform_admin', () => Promise.resolve());
    }
    const row = await db
      .selectFrom('tenants')
      .select('id')
      .where(ref.startsWith('ten_') ? 'id' : 'slug', '=', ref)
      .executeTakeFirst();
    if (!row) throw notFound(`tenant ${ref}`);
    return row.id;
  }

  async function state(tenantId: string) {
    const t = await db
      .selectFrom('tenants')
      .select(['id', 'slug', 'status', 'cancelled_at', 'purge_after'])
      .where('id', '=', tenantId)
      .executeTakeFirstOrThrow();
    return {
      id: t.id,
      slug: t.slug,
      status: t.status,
      cancelledAt: t.cancelled_at?.toISOString() ?? null,
      purgeAfter: t.purge_after?.toISOString() ?? null,
    };
  }

  app.post(
    '/api/v1/tenants/:tenant/cancel',
    {
      config: { minRole: 'platform_admin', auditAction: 'tenant.cancel' },
      schema: {
        tags: ['tenants'],
        summary:
          'Cancel a tenant (admins): routes suspended at once, purge after AIQSO_GRACE_DAYS; Stripe is not called. Idempotent',
        params: Params,
        response: {
          200: z.object({
            tenant: TenantState,
            changed: z.boolean(),
            liveSubscriptions: z.array(z.string()),
          }),
        },
      },
    },
    async (request) => {
      const tenantId = await adminTarget(request.params.tenant, principalOf(request));
      request.audit = { tenantId, targetType: 'tenant', targetId: tenantId };
      const outcome = await cancelTenant(db, tenantId, { graceDays: deps.graceDays });
      return {
        tenant: await state(tenantId),
        changed: outcome.changed,
        liveSubscriptions: outcome.liveSubscriptions,
      };
    },
  );

  app.post(
    '/api/v1/tenants/:tenant/purge',
    {
      config: { minRole: 'platform_admin', auditAction: 'tenant.purge' },
      schema: {
        tags: ['tenants'],
        summary:
          'Purge a cancelled tenant (admins) once its grace period is over, or at once with ?now=true: containers, routes and stored data. 409 for any other status. Idempotent',
        params: Params,
        querystring: z.object({ now: z.enum(['true', 'false']).default('false') }),
        response: {
          200: z.object({ tenant: TenantState, purge: z.literal('done') }),
          202: z.object({ tenant: TenantState, purge: z.literal('queued') }),
        },
      },
    },
    async (request, reply) => {
      const tenantId = await adminTarget(request.params.tenant, principalOf(request));
      request.audit = { tenantId, targetType: 'tenant', targetId: tenantId };
      const started = await startPurge(db, tenantId, {
        ignoreGrace: request.query.now === 'true',
        dataDir: deps.dataDir,
      });
      const tenant = await state(tenantId);
      return started === 'purged'
        ? reply.status(200).send({ tenant, purge: 'done' as const })
        : reply.status(202).send({ tenant, purge: 'queued' as const });
    },
  );
}
