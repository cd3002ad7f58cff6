import { z } from 'zod';
import type { ApiServer } from '../server.ts';
import { conflict, notFound } from '../../core/errors.ts';
import { newId } from '../../core/ids.ts';
import type { Database } from '../../db/database.ts';
import { findTenant } from '../../db/tenants.ts';
import { createApiKey, listApiKeys, revokeApiKey } from '../../identity/api-keys.ts';
import { checkPassword, hashPassword, normaliseEmail } from '../../identity/passwords.ts';
import { requireOpenTenant, requireUserForKeys, type TenantAccess } from '../../identity/tenant-access.ts';
import { ApiKeyOut } from './api-key-schema.ts';
import { principalOf } from './authenticate.ts';

const TenantParams = z.object({ tenant: z.string().min(1).max(80) });
const NewKeyBody = z.object({
  name: z.string().min(1).max(100),
  role: z.enum(['tenant_owner', 'tenant_member']).default('tenant_member'),
  expiresAt: z.iso.datetime({ offset: true }).optional(),
});
const UserOut = z.object({ id: z.string(), email: z.string(), role: z.string(), createdAt: z.string() });

/** Tenant-scoped routes: every read and write goes through `access.forTenant`. */
export function tenantRoutes(app: ApiServer, deps: { db: Database; access: TenantAccess }): void {
  const { access } = deps;

  app.get(
    '/api/v1/tenants/:tenant',
    {
      config: { minRole: 'tenant_member' },
      schema: {
        tags: ['tenants'],
        summary: 'A tenant (by id or slug) with its status, services and provisioning steps',
        params: TenantParams,
      },
    },
    async (request) => {
      const principal = principalOf(request);
      return access.forTenant(
        principal,
        request.params.tenant,
        'tenant_member',
        async ({ trx, tenantId }) => {
          const tenant = await findTenant(trx, tenantId);
          if (!tenant) throw notFound(`tenant ${request.params.tenant}`);
          return tenant;
        },
      );
    },
  );

  app.get(
    '/api/v1/tenants/:tenant/users',
    {
      config: { minRole: 'tenant_member' },
      schema: {
        tags: ['tenants'],
        summary: "The tenant's users",
        params: TenantParams,
        response: { 200: z.object({ users: z.array(UserOut) }) },
      },
    },
    async (request) =>
      access.forTenant(principalOf(request), request.params.tenant, 'tenant_member', async ({ trx }) => {
        // No WHERE tenant_id: row-level security limits this to the scope's tenant.
        const rows = await trx
          .selectFrom('users')
          .select(['id', 'email', 'role', 'created_at'])
          .orderBy('id')
          .execute();
        return {
          users: rows.map((u) => ({
            id: u.id,
            email: u.email,
            role: u.role,
            createdAt: u.created_at.toISOString(),
          })),
        };
      }),
  );

  app.post(
    '/api/v1/tenants/:tenant/users',
    {
      config: { minRole: 'tenant_owner', auditAction: 'tenant.user.create' },
      schema: {
        tags: ['tenants'],
        summary: 'Add a user to the tenant (not to a suspended or cancelled tenant)',
        params: TenantParams,
        body: z.object({
          email: z.email(),
          password: z.string().max(1024),
          role: z.enum(['tenant_owner', 'tenant_member']),
        }),
        response: { 201: UserOut },
      },
    },
    async (request, reply) => {
      const email = normaliseEmail(request.body.email);
      checkPassword(request.body.password, email);
      const passwordHash = await hashPassword(request.body.password);
      const user = await access.forTenant(
        principalOf(request),
        request.params.tenant,
        'tenant_owner',
        async ({ trx, tenantId }) => {
          request.audit = { tenantId };
          await requireOpenTenant(trx, tenantId, 'users');
          const row = await trx
            .insertInto('users')
            .values({
              id: newId('user'),
              email,
              role: request.body.role,
              tenant_id: tenantId,
              password_hash: passwordHash,
            })
            .onConflict((oc) => oc.column('email').doNothing())
            .returning(['id', 'email', 'role', 'created_at'])
            .executeTakeFirst();
          if (!row) throw conflict(`a user with email ${email} already exists`);
          request.audit = { tenantId, targetType: 'user', targetId: row.id };
          return row;
        },
      );
      return reply
        .status(201)
        .send({ id: user.id, email: user.email, role: user.role, createdAt: user.created_at.toISOString() });
    },
  );

  app.get(
    '/api/v1/tenants/:tenant/api-keys',
    {
      config: { minRole: 'tenant_owner' },
      schema: {
        tags: ['api keys'],
        summary: "The tenant's API keys (never the secret)",
        params: TenantParams,
        response: { 200: z.object({ apiKeys: z.array(ApiKeyOut) }) },
      },
    },
    async (request) =>
      access.forTenant(
        principalOf(request),
        request.params.tenant,
        'tenant_owner',
        async ({ trx, tenantId }) => ({
          apiKeys: await listApiKeys(trx, tenantId),
        }),
      ),
  );

  app.post(
    '/api/v1/tenants/:tenant/api-keys',
    {
      config: { minRole: 'tenant_owner', auditAction: 'tenant.api_key.create' },
      schema: {
        tags: ['api keys'],
        summary:
          'Create an API key for the tenant (signed-in users only; not for a suspended or cancelled tenant); `key` is shown only in this response',
        params: TenantParams,
        body: NewKeyBody,
        response: { 201: ApiKeyOut.extend({ key: z.string() }) },
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      const created = await access.forTenant(
        principal,
        request.params.tenant,
        'tenant_owner',
        async ({ trx, tenantId }) => {
          request.audit = { tenantId };
          requireUserForKeys(principal);
          await requireOpenTenant(trx, tenantId, 'API keys');
          // Only owners (and admins) get here, so a key never carries more power than its creator.
          const key = await createApiKey(trx, {
            tenantId,
            role: request.body.role,
            name: request.body.name,
            expiresAt: request.body.expiresAt ? new Date(request.body.expiresAt) : null,
            createdBy: principal.id,
          });
          request.audit = { tenantId, targetType: 'api_key', targetId: key.id };
          return key;
        },
      );
      return reply.status(201).send(created);
    },
  );

  app.delete(
    '/api/v1/tenants/:tenant/api-keys/:keyId',
    {
      config: { minRole: 'tenant_owner', auditAction: 'tenant.api_key.revoke' },
      schema: {
        tags: ['api keys'],
        summary: 'Revoke an API key; it stops working at once',
        params: TenantParams.extend({ keyId: z.string().min(1).max(80) }),
        response: { 200: ApiKeyOut },
      },
    },
    async (request) =>
      access.forTenant(
        principalOf(request),
        request.params.tenant,
        'tenant_owner',
        async ({ trx, tenantId }) => {
          request.audit = { tenantId, targetType: 'api_key', targetId: request.params.keyId };
          return revokeApiKey(trx, tenantId, request.params.keyId);
        },
      ),
  );
}
