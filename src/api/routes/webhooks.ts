import { z } from 'zod';
import { notFound } from '../../core/errors.ts';
import type { Database } from '../../db/database.ts';
import {
  createEndpoint,
  findDelivery,
  listDeliveries,
  listEndpoints,
  redeliver,
  removeEndpoint,
  type Owner,
} from '../../events/endpoints.ts';
import type { TargetPolicy } from '../../events/targets.ts';
import type { SecretBox } from '../../identity/secrets.ts';
import type { TenantAccess } from '../../identity/tenant-access.ts';
import { principalOf } from '../identity/authenticate.ts';
import type { ApiServer } from '../server.ts';

const EndpointOut = z.object({
  id: z.string(),
  tenant: z.string().nullable(),
  url: z.string(),
  events: z.array(z.string()),
  description: z.string().nullable(),
  createdAt: z.string(),
});
const DeliveryOut = z.object({
  id: z.string(),
  endpoint: z.string(),
  event: z.string(),
  type: z.string(),
  tenant: z.string().nullable(),
  status: z.string(),
  attempts: z.number(),
  lastStatus: z.number().nullable(),
  lastError: z.string().nullable(),
  nextAttemptAt: z.string().nullable(),
  deliveredAt: z.string().nullable(),
  createdAt: z.string(),
  history: z.array(
    z.object({
      at: z.string(),
      status: z.number().nullable(),
      excerpt: z.string().nullable(),
      durationMs: z.number(),
      error: z.string().nullable(),
    }),
  ),
});
const NewEndpointIn = z.object({
  url: z.string().min(1).max(2000),
  events: z.array(z.string().min(1).max(60)).min(1).max(40),
  description: z.string().max(200).optional(),
});
const Created = z.object({ endpoint: EndpointOut, secret: z.string() });
const DeliveriesQuery = z.object({
  endpoint: z.string().min(1).max(40).optional(),
  limit: z.coerce.number().int().min(1).max(1000).optional(),
});
const TenantParams = z.object({ tenant: z.string().min(1).max(80) });
const EndpointParams = z.object({ endpoint: z.string().min(1).max(40) });
const DeliveryParams = z.object({ delivery: z.string().min(1).max(20) });

export interface WebhookRouteDeps {
  db: Database;
  access: TenantAccess;
  box: () => Promise<SecretBox>;
  policy: TargetPolicy;
}

/**
 * Event webhooks: the operator's endpoints (every tenant's events) under
 * /api/v1/webhooks, platform admins only; a tenant's own endpoints (its own
 * events only) under /api/v1/tenants/{tenant}/webhooks, its owner. A new
 * endpoint's signing secret is in the 201 answer and never again.
 */
export function webhookRoutes(app: ApiServer, deps: WebhookRouteDeps): void {
  const { db, access } = deps;
  const operator: Owner = { tenantId: null };

  app.post(
    '/api/v1/webhooks',
    {
      config: { minRole: 'platform_admin', auditAction: 'platform.webhook.create' },
      schema: {
        tags: ['webhooks'],
        summary:
          "Register an operator endpoint for every tenant's events; the answer holds its signing secret, shown once",
        body: NewEndpointIn,
        response: { 201: Created },
      },
    },
    async (request, reply) => {
      const created = await createEndpoint(db, await deps.box(), deps.policy, operator, request.body);
      request.audit = { tenantId: null, targetType: 'webhook', targetId: created.endpoint.id };
      return reply.status(201).send(created);
    },
  );

  app.get(
    '/api/v1/webhooks',
    {
      config: { minRole: 'platform_admin' },
      schema: {
        tags: ['webhooks'],
        summary: "The operator's endpoints",
        response: { 200: z.object({ endpoints: z.array(EndpointOut) }) },
      },
    },
    async () => ({ endpoints: await listEndpoints(db, operator) }),
  );

  app.delete(
    '/api/v1/webhooks/:endpoint',
    {
      config: { minRole: 'platform_admin', auditAction: 'platform.webhook.remove' },
      schema: {
        tags: ['webhooks'],
        summary: 'Remove an operator endpoint and its deliveries',
        params: EndpointParams,
        response: { 200: z.object({ removed: z.string() }) },
      },
    },
    async (request) => {
      await removeEndpoint(db, operator, request.params.endpoint);
      request.audit = { tenantId: null, targetType: 'webhook', targetId: request.params.endpoint };
      return { removed: request.params.endpoint };
    },
  );

  app.get(
    '/api/v1/webhooks/deliveries',
    {
      config: { minRole: 'platform_admin' },
      schema: {
        tags: ['webhooks'],
        summary: "Deliveries to the operator's endpoints, newest first, each attempt with its answer",
        querystring: DeliveriesQuery,
        response: { 200: z.object({ deliveries: z.array(DeliveryOut) }) },
      },
    },
    async (request) => ({ deliveries: await listDeliveries(db, operator, request.query) }),
  );

  app.post(
    '/api/v1/webhooks/deliveries/:delivery/redeliver',
    {
      config: { minRole: 'platform_admin', auditAction: 'platform.webhook.redeliver' },
      schema: {
        tags: ['webhooks'],
        summary: 'Deliver a delivery to an operator endpoint again, now',
        params: DeliveryParams,
        response: { 202: z.object({ delivery: z.string() }) },
      },
    },
    async (request, reply) => {
      const found = await findDelivery(db, operator, request.params.delivery);
      if (!found) throw notFound(`webhook delivery ${request.params.delivery}`);
      await redeliver(db, found.id);
      request.audit = { tenantId: null, targetType: 'webhook_delivery', targetId: found.id };
      return reply.status(202).send({ delivery: found.id });
    },
  );

  app.post(
    '/api/v1/tenants/:tenant/webhooks',
    {
      config: { minRole: 'tenant_owner', auditAction: 'tenant.webhook.create' },
      schema: {
        tags: ['webhooks'],
        summary:
          "Register an endpoint for this tenant's own events; the answer holds its signing secret, shown once",
        params: TenantParams,
        body: NewEndpointIn,
        response: { 201: Created },
      },
    },
    async (request, reply) => {
      const box = await deps.box();
      const created = await access.forTenant(
        principalOf(request),
        request.params.tenant,
        'tenant_owner',
        ({ trx, tenantId }) => createEndpoint(trx, box, deps.policy, { tenantId }, request.body),
      );
      request.audit = {
        tenantId: created.endpoint.tenant,
        targetType: 'webhook',
        targetId: created.endpoint.id,
      };
      return reply.status(201).send(created);
    },
  );

  app.get(
    '/api/v1/tenants/:tenant/webhooks',
    {
      config: { minRole: 'tenant_owner' },
      schema: {
        tags: ['webhooks'],
        summary: "The tenant's own endpoints",
        params: TenantParams,
        response: { 200: z.object({ endpoints: z.array(EndpointOut) }) },
      },
    },
    async (request) =>
      access.forTenant(
        principalOf(request),
        request.params.tenant,
        'tenant_owner',
        async ({ trx, tenantId }) => ({
          endpoints: await listEndpoints(trx, { tenantId }),
        }),
      ),
  );

  app.delete(
    '/api/v1/tenants/:tenant/webhooks/:endpoint',
    {
      config: { minRole: 'tenant_owner', auditAction: 'tenant.webhook.remove' },
      schema: {
        tags: ['webhooks'],
        summary: 'Remove one of the tenant’s endpoints and its deliveries',
        params: TenantParams.merge(EndpointParams),
        response: { 200: z.object({ removed: z.string() }) },
      },
    },
    async (request) => {
      const tenantId = await access.forTenant(
        principalOf(request),
        request.params.tenant,
        'tenant_owner',
        async ({ trx, tenantId }) => {
          await removeEndpoint(trx, { tenantId }, request.params.endpoint);
          return tenantId;
        },
      );
      request.audit = { tenantId, targetType: 'webhook', targetId: request.params.endpoint };
      return { removed: request.params.endpoint };
    },
  );

  app.get(
    '/api/v1/tenants/:tenant/webhooks/deliveries',
    {
      config: { minRole: 'tenant_owner' },
      schema: {
        tags: ['webhooks'],
        summary: "Deliveries to the tenant's endpoints, newest first, each attempt with its answer",
        params: TenantParams,
        querystring: DeliveriesQuery,
        response: { 200: z.object({ deliveries: z.array(DeliveryOut) }) },
      },
    },
    async (request) =>
      access.forTenant(
        principalOf(request),
        request.params.tenant,
        'tenant_owner',
        async ({ trx, tenantId }) => ({
          deliveries: await listDeliveries(trx, { tenantId }, request.query),
        }),
      ),
  );

  app.post(
    '/api/v1/tenants/:tenant/webhooks/deliveries/:delivery/redeliver',
    {
      config: { minRole: 'tenant_owner', auditAction: 'tenant.webhook.redeliver' },
      schema: {
        tags: ['webhooks'],
        summary: "Deliver a delivery to one of the tenant's endpoints again, now",
        params: TenantParams.merge(DeliveryParams),
        response: { 202: z.object({ delivery: z.string() }) },
      },
    },
    async (request, reply) => {
      const found = await access.forTenant(
        principalOf(request),
        request.params.tenant,
        'tenant_owner',
        async ({ trx, tenantId }) => ({
          tenantId,
          delivery: await findDelivery(trx, { tenantId }, request.params.delivery),
        }),
      );
      if (!found.delivery) throw notFound(`webhook delivery ${request.params.delivery}`);
      await redeliver(db, found.delivery.id);
      request.audit = {
        tenantId: found.tenantId,
        targetType: 'webhook_delivery',
        targetId: found.delivery.id,
      };
      return reply.status(202).send({ delivery: found.delivery.id });
    },
  );
}
