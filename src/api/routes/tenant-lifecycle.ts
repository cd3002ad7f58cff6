import { z } from 'zod';
import { notFound } from '../../core/errors.ts';
import type { BillingPort } from '../../core/billing.ts';
import type { Database } from '../../db/database.ts';
import type { Logger } from '../../observability/logger.ts';
import { principalOf } from '../identity/authenticate.ts';
import { isPlatformAdmin, type Principal } from '../../identity/principal.ts';
import type { TenantAccess } from '../../identity/tenant-access.ts';
import { cancelTenant } from '../../lifecycle/cancel.ts';
import { startPurge } from '../../lifecycle/purge.ts';
import { setTenantSuspended } from '../../lifecycle/suspend.ts';
import { TENANT_STATUSES } from '../../core/tenants.ts';
import { searchTenants } from '../../db/tenants.ts';
import type { ApiServer } from '../server.ts';

const Params = z.object({ tenant: z.string().min(1).max(80) });
const TenantQuery = z.object({
  q: z.string().max(100).optional(),
  status: z.enum(TENANT_STATUSES).optional(),
  limit: z.coerce.number().int().min(1).max(200).default(25),
  offset: z.coerce.number().int().min(0).max(1_000_000).default(0),
});
const TenantRow = z.object({
  id: z.string(),
  slug: z.string(),
  company: z.string().nullable(),
  plan: z.string(),
  status: z.string(),
  statusReason: z.string().nullable(),
  createdAt: z.string(),
});
const TenantState = z.object({
  id: z.string(),
  slug: z.string(),
  status: z.string(),
  cancelledAt: z.string().nullable(),
  purgeAfter: z.string().nullable(),
});

/**
 * Operator actions on tenants, for platform admins only: list and search
 * them; suspend and reactivate; cancel (the grace period starts, as when
 * Stripe deletes the subscription) and purge. Every action is idempotent and
 * audited (the identity hooks record every mutating request).
 */
export function tenantLifecycleRoutes(
  app: ApiServer,
  /** `dataDir`: where a never-provisioned tenant's purge, done here, looks for its files. */
  deps: {
    db: Database;
    access: TenantAccess;
    graceDays: number;
    dataDir?: string;
    /** For an owner's own cancellation: their live subscriptions are cancelled in Stripe too. */
    billing?: BillingPort;
    log?: Logger;
  },
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

  app.get(
    '/api/v1/tenants',
    {
      config: { minRole: 'platform_admin' },
      schema: {
        tags: ['tenants'],
        summary:
          'Every tenant (admins), newest first: `q` searches slug and company, `status` filters, `limit` and `offset` page',
        querystring: TenantQuery,
        response: {
          200: z.object({
            tenants: z.array(TenantRow),
            total: z.number(),
            limit: z.number(),
            offset: z.number(),
          }),
        },
      },
    },
    async (request) => {
      const { q, status, limit, offset } = request.query;
      const page = await searchTenants(db, { q: q || undefined, status, limit, offset });
      return {
        tenants: page.tenants.map((t) => ({ ...t, createdAt: t.createdAt.toISOString() })),
        total: page.total,
        limit,
        offset,
      };
    },
  );

  for (const suspend of [true, false]) {
    const verb = suspend ? 'suspend' : 'reactivate';
    app.post(
      `/api/v1/tenants/:tenant/${verb}`,
      {
        config: { minRole: 'platform_admin', auditAction: `tenant.${verb}` },
        schema: {
          tags: ['tenants'],
          summary: suspend
            ? 'Suspend a tenant (admins): its workspace answers a suspended page at once; a payment does not lift it. Idempotent'
            : 'Reactivate a suspended tenant (admins), whatever suspended it. 409 for a tenant not suspended or active. Idempotent',
          params: Params,
          response: {
            200: z.object({
              tenant: z.object({
                id: z.string(),
                slug: z.string(),
                status: z.string(),
                statusReason: z.string().nullable(),
              }),
              changed: z.boolean(),
            }),
          },
        },
      },
      async (request) => {
        const principal = principalOf(request);
        const tenantId = await adminTarget(request.params.tenant, principal);
        request.audit = { tenantId, targetType: 'tenant', targetId: tenantId };
        const { changed, ...tenant } = await setTenantSuspended(db, tenantId, suspend, {
          graceDays: deps.graceDays,
          actorId: principal.id,
        });
        return { tenant, changed };
      },
    );
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

  const Cancellation = z.object({
    status: z.string(),
    graceDays: z.number(),
    cancelledAt: z.string().nullable(),
    purgeAfter: z.string().nullable(),
  });

  app.get(
    '/api/v1/tenants/:tenant/cancellation',
    {
      config: { minRole: 'tenant_owner' },
      schema: {
        tags: ['tenants'],
        summary:
          "The workspace's cancellation (owners): its status, the grace period in days, and when it was cancelled and is purged (null while not cancelled)",
        params: Params,
        response: { 200: Cancellation },
      },
    },
    async (request) =>
      deps.access.forTenant(
        principalOf(request),
        request.params.tenant,
        'tenant_owner',
        async ({ trx, tenantId }) => {
          const t = await trx
            .selectFrom('tenants')
            .select(['status', 'cancelled_at', 'purge_after'])
            .where('id', '=', tenantId)
            .executeTakeFirstOrThrow();
          return {
            status: t.status,
            graceDays: deps.graceDays,
            cancelledAt: t.cancelled_at?.toISOString() ?? null,
            purgeAfter: t.purge_after?.toISOString() ?? null,
          };
        },
      ),
  );

  app.post(
    '/api/v1/tenants/:tenant/cancellation',
    {
      config: { minRole: 'tenant_owner', auditAction: 'tenant.cancel.owner' },
      schema: {
        tags: ['tenants'],
        summary:
          'Cancel the workspace (its owner): services and addresses stop at once, its live subscriptions are cancelled in Stripe, and it is purged after AIQSO_GRACE_DAYS. Idempotent',
        params: Params,
        response: { 200: Cancellation.extend({ changed: z.boolean() }) },
      },
    },
    async (request) => {
      const principal = principalOf(request);
      const tenantId = await deps.access.forTenant(
        principal,
        request.params.tenant,
        'tenant_owner',
        ({ tenantId }) => Promise.resolve(tenantId),
      );
      request.audit = { tenantId, targetType: 'tenant', targetId: tenantId };
      const outcome = await cancelTenant(db, tenantId, {
        graceDays: deps.graceDays,
        reason: 'cancelled by its owner',
        by: { actorType: principal.kind === 'user' ? 'user' : 'operator', actorId: principal.id }, // an API key acts for its tenant's owners
      });
      // The workspace is cancelled whatever Stripe answers; a subscription left live is logged for the operator.
      for (const id of outcome.liveSubscriptions) {
        await deps.billing?.cancelSubscription(id).catch((err: unknown) => {
          deps.log?.error(
            { err, tenantId, subscription: id },
            'owner cancellation: Stripe subscription not cancelled',
          );
        });
      }
      return {
        status: outcome.status,
        graceDays: deps.graceDays,
        cancelledAt: outcome.cancelledAt?.toISOString() ?? null,
        purgeAfter: outcome.purgeAfter?.toISOString() ?? null,
        changed: outcome.changed,
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
