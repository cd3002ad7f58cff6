import type { FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { Billing } from '../../billing/index.ts';
import { billingOverview, requestPlanChange } from '../../billing/plan-change.ts';
import { openCustomerPortal } from '../../billing/portal.ts';
import type { Plan } from '../../catalog/plans.ts';
import type { Database } from '../../db/database.ts';
import { requireTenantsOwnUser, type TenantAccess } from '../../identity/tenant-access.ts';
import { principalOf } from '../identity/authenticate.ts';
import type { ApiServer } from '../server.ts';

const Params = z.object({ tenant: z.string().min(1).max(80) });
const PlanOut = z.object({
  key: z.string(),
  name: z.string(),
  monthlyCents: z.number(),
  currency: z.string(),
  services: z.number(),
  includes: z.object({ storage_gb: z.number().optional(), requests: z.number().optional() }),
});
const BillingOut = z.object({
  mode: z.enum(['stripe', 'local']),
  status: z.string(),
  plan: PlanOut,
  subscription: z
    .object({
      status: z.string(),
      currentPeriodEnd: z.string().nullable(),
      cancelAtPeriodEnd: z.boolean(),
      pendingPlan: z.string().nullable(),
    })
    .nullable(),
  servicesInUse: z.number(),
  plans: z.array(PlanOut),
});
const PortalOut = z.object({ url: z.string().url() });
const PlanChangeOut = z.object({
  from: z.string(),
  plan: z.string(),
  state: z.enum(['requested', 'already_requested']),
});

/**
 * A tenant's billing (owners; platform admins too): its plan, price, what the
 * plan includes, the subscription's state and the plans it can move to; and
 * changing the plan. The change is asked of the billing as a new price on the
 * subscription; the plan (and its limits) changes when the
 * `customer.subscription.updated` event that follows is processed.
 */
export function tenantBillingRoutes(
  app: ApiServer,
  deps: { db: Database; access: TenantAccess; plans: Plan[]; billing: Billing; publicUrl: string },
): void {
  const { db, access, plans, billing, publicUrl } = deps;
  const tenantFor = (request: FastifyRequest, tenant: string) =>
    access.forTenant(principalOf(request), tenant, 'tenant_owner', ({ tenantId }) =>
      Promise.resolve(tenantId),
    );

  app.get(
    '/api/v1/tenants/:tenant/billing',
    {
      config: { minRole: 'tenant_owner' },
      schema: {
        tags: ['billing'],
        summary:
          "The tenant's plan (price, services limit, what it includes), its status, the subscription's state (current period end when known; `pendingPlan` while a change waits for its event), working services and the plans on offer",
        params: Params,
        response: { 200: BillingOut },
      },
    },
    async (request) => {
      const tenantId = await tenantFor(request, request.params.tenant);
      return billingOverview(db, { plans, mode: billing.port.mode }, tenantId);
    },
  );

  app.post(
    '/api/v1/tenants/:tenant/billing/plan',
    {
      config: { minRole: 'tenant_owner', auditAction: 'tenant.billing.plan' },
      schema: {
        tags: ['billing'],
        summary:
          'Change the plan: 202 once the new price is asked of the billing (idempotent: `already_requested` when the subscription has it); the plan and its limits change when the subscription update event is processed. 400 unknown plan, 409 same plan, tenant not active, no subscription, or more services than the plan allows',
        params: Params,
        body: z.object({ plan: z.string().min(1).max(40) }).strict(),
        response: { 202: PlanChangeOut },
      },
    },
    async (request, reply) => {
      const tenantId = await tenantFor(request, request.params.tenant);
      request.audit = { tenantId, targetType: 'plan', targetId: request.body.plan };
      const result = await requestPlanChange(
        { db, plans, billing: billing.port, local: billing.local },
        tenantId,
        request.body.plan,
      );
      return reply.status(202).send(result);
    },
  );

  app.post(
    '/api/v1/tenants/:tenant/billing/portal',
    {
      config: { minRole: 'tenant_owner', auditAction: 'tenant.billing.portal' },
      schema: {
        tags: ['billing'],
        summary:
          "Payment methods and invoices: 201 with the address of a portal session for the tenant's billing customer, returning to the workspace's Billing page (Stripe mode: Stripe's Customer Portal; local mode: the platform's own page, open for 15 minutes). A signed-in owner of the tenant only (no API key, no platform admin); 409 without a billing customer (no paid checkout), 502 when Stripe refuses or cannot be reached",
        params: Params,
        response: { 201: PortalOut },
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      const tenantId = await tenantFor(request, request.params.tenant);
      request.audit = { tenantId, targetType: 'tenant', targetId: tenantId };
      // The portal's address is a credential to the customer's billing account.
      requireTenantsOwnUser(principal, tenantId, {
        apiKey:
          'payment methods and invoices are opened by a signed-in owner of the workspace, not with an API key',
        operator:
          "payment methods and invoices are opened by the workspace's owners; operators see the customer in the billing provider",
      });
      const session = await openCustomerPortal({ db, billing: billing.port, publicUrl }, tenantId);
      return reply.status(201).send(session);
    },
  );
}
