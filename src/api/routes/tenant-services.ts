import type { FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { Plan } from '../../catalog/plans.ts';
import { platformProvides } from '../../catalog/runnable.ts';
import type { Config } from '../../config/load.ts';
import { notFound } from '../../core/errors.ts';
import type { Database } from '../../db/database.ts';
import type { Role } from '../../core/identity.ts';
import { principalOf } from '../identity/authenticate.ts';
import type { TenantAccess } from '../../identity/tenant-access.ts';
import { retryService } from '../../services/retry.ts';
import {
  listTenantServices,
  setServiceResources,
  subscribe,
  unsubscribe,
  type SubscriptionDeps,
} from '../../services/subscriptions.ts';
import type { ApiServer } from '../server.ts';

const Params = z.object({ tenant: z.string().min(1).max(80) });
const ServiceParams = Params.extend({ service: z.string().min(1).max(40) });
const Step = z.object({
  name: z.string(),
  state: z.string(),
  attempts: z.number(),
  /** While `waiting`: what the step waits for (e.g. `capacity: host … has 0 MB of memory free; …`). */
  waitingFor: z.string().optional(),
  waitingSince: z.string().optional(),
  /** While `running`: what the step reports it is doing now (an image pull's stage). */
  progress: z.string().optional(),
  lastError: z.string().optional(),
  startedAt: z.string().optional(),
  finishedAt: z.string().optional(),
});
const TenantServiceOut = z.object({
  id: z.string(),
  service: z.string(),
  name: z.string(),
  status: z.string(),
  statusReason: z.string().nullable(),
  url: z.string(),
  resources: z.object({
    memory_mb: z.number(),
    request_memory_mb: z.number().optional(),
    cores: z.number(),
    disk_gb: z.number(),
  }),
  phase: z.string().nullable(),
  lastError: z.string().nullable(),
  steps: z.array(Step),
  createdAt: z.string(),
  removedAt: z.string().nullable(),
});
const ResourcesIn = z
  .object({
    memory_mb: z.number().int().min(64).max(262_144).optional(),
    request_memory_mb: z.number().int().min(8).max(262_144).optional(),
    cores: z.number().int().min(1).max(64).optional(),
    disk_gb: z.number().int().min(1).max(4096).optional(),
  })
  .strict()
  .refine(
    (r) => Object.keys(r).length > 0,
    'expected at least one of memory_mb, request_memory_mb, cores, disk_gb',
  );

/**
 * A tenant's services: list (members), subscribe, unsubscribe and retry a
 * failed one (owners), change resources (platform admins). Access is decided by `forTenant`; the
 * subscription itself then runs as the platform, because its capacity check
 * counts every tenant's containers on the host.
 */
export function tenantServiceRoutes(
  app: ApiServer,
  deps: { db: Database; access: TenantAccess; plans: Plan[]; config: Config },
): void {
  const { db, access, config } = deps;
  const subs: SubscriptionDeps = {
    plans: deps.plans,
    driver: config.driver,
    provides: platformProvides(config),
    dataDir: config.dataDir,
    publicUrl: config.publicUrl,
    serviceGraceHours: config.serviceGraceHours,
    policy: config.hostCapacity,
  };
  /** The tenant the caller names, once the caller holds `role` in it. */
  const tenantFor = (request: FastifyRequest, tenant: string, role: Role) =>
    access.forTenant(principalOf(request), tenant, role, ({ tenantId }) => Promise.resolve(tenantId));
  const one = async (tenantId: string, key: string) => {
    const [view] = await listTenantServices(db, tenantId, config.publicUrl, key);
    if (!view) throw notFound(`service ${key} of this tenant`);
    return view;
  };

  app.get(
    '/api/v1/tenants/:tenant/services',
    {
      config: { minRole: 'tenant_member' },
      schema: {
        tags: ['services'],
        summary:
          "The tenant's services with status, reason, URL and deployment steps; `graceHours`: how long an unsubscribed service's data is kept before it is destroyed",
        params: Params,
        response: { 200: z.object({ services: z.array(TenantServiceOut), graceHours: z.number() }) },
      },
    },
    async (request) =>
      access.forTenant(
        principalOf(request),
        request.params.tenant,
        'tenant_member',
        async ({ trx, tenantId }) => ({
          services: await listTenantServices(trx, tenantId, config.publicUrl),
          graceHours: config.serviceGraceHours,
        }),
      ),
  );

  app.post(
    '/api/v1/tenants/:tenant/services',
    {
      config: { minRole: 'tenant_owner', auditAction: 'tenant.service.subscribe' },
      schema: {
        tags: ['services'],
        summary:
          'Subscribe to a catalog service; 202 while it deploys (idempotent: the existing subscription is returned)',
        params: Params,
        body: z.object({ service: z.string().min(1).max(40) }).strict(),
        response: { 202: TenantServiceOut },
      },
    },
    async (request, reply) => {
      const tenantId = await tenantFor(request, request.params.tenant, 'tenant_owner');
      request.audit = { tenantId, targetType: 'service', targetId: request.body.service };
      await subscribe(db, subs, tenantId, request.body.service);
      return reply.status(202).send(await one(tenantId, request.body.service));
    },
  );

  app.delete(
    '/api/v1/tenants/:tenant/services/:service',
    {
      config: { minRole: 'tenant_owner', auditAction: 'tenant.service.unsubscribe' },
      schema: {
        tags: ['services'],
        summary:
          'Unsubscribe: the route goes at once, the container stops after a final backup, and is destroyed with its database after the grace period',
        params: ServiceParams,
        response: { 202: TenantServiceOut },
      },
    },
    async (request, reply) => {
      const tenantId = await tenantFor(request, request.params.tenant, 'tenant_owner');
      request.audit = { tenantId, targetType: 'service', targetId: request.params.service };
      await unsubscribe(db, { ...subs, baseDomain: config.baseDomain }, tenantId, request.params.service);
      return reply.status(202).send(await one(tenantId, request.params.service));
    },
  );

  app.post(
    '/api/v1/tenants/:tenant/services/:service/retry',
    {
      config: { minRole: 'tenant_owner', auditAction: 'tenant.service.retry' },
      schema: {
        tags: ['services'],
        summary:
          "Deploy a failed service again: its steps run again from the start; 409 unless it failed, or when the plan's limit is reached",
        params: ServiceParams,
        response: { 202: TenantServiceOut },
      },
    },
    async (request, reply) => {
      const tenantId = await tenantFor(request, request.params.tenant, 'tenant_owner');
      request.audit = { tenantId, targetType: 'service', targetId: request.params.service };
      await retryService(db, deps.plans, tenantId, request.params.service);
      return reply.status(202).send(await one(tenantId, request.params.service));
    },
  );

  app.patch(
    '/api/v1/tenants/:tenant/services/:service',
    {
      config: { minRole: 'platform_admin', auditAction: 'tenant.service.resources' },
      schema: {
        tags: ['services'],
        summary: "Change a tenant service's resources (platform admins); the container follows on reconcile",
        params: ServiceParams,
        body: z.object({ resources: ResourcesIn }).strict(),
        response: { 202: TenantServiceOut },
      },
    },
    async (request, reply) => {
      const tenantId = await tenantFor(request, request.params.tenant, 'platform_admin');
      request.audit = { tenantId, targetType: 'service', targetId: request.params.service };
      await setServiceResources(db, subs, tenantId, request.params.service, request.body.resources);
      return reply.status(202).send(await one(tenantId, request.params.service));
    },
  );
}
