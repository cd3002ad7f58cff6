import { z } from 'zod';
import type { ApiServer } from '../server.ts';
import { DomainError, notFound } from '../../core/errors.ts';
import type { Database } from '../../db/database.ts';
import { createApiKey, listPlatformApiKeys, revokePlatformApiKey } from '../../identity/api-keys.ts';
import { requireRole } from '../../identity/principal.ts';
import { requireUserForKeys } from '../../identity/tenant-access.ts';
import { revokeUserSessions } from '../../identity/sessions.ts';
import { resetTotp } from '../../identity/totp.ts';
import { ApiKeyOut } from './api-key-schema.ts';
import { principalOf } from './authenticate.ts';

/** Platform-wide routes: platform API keys (made by signed-in admins only), and an admin's reset of a user's TOTP. */
export function platformRoutes(app: ApiServer, deps: { db: Database }): void {
  app.post(
    '/api/v1/platform/api-keys',
    {
      config: { minRole: 'platform_admin', auditAction: 'platform.api_key.create' },
      schema: {
        tags: ['api keys'],
        summary:
          'Create a platform-wide API key (signed-in admins only, not with an API key); `key` is shown only in this response',
        body: z.object({
          name: z.string().min(1).max(100),
          expiresAt: z.iso.datetime({ offset: true }).optional(),
        }),
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      requireRole(principal, 'platform_admin');
      requireUserForKeys(principal);
      const key = await createApiKey(deps.db, {
        tenantId: null,
        role: 'platform_admin',
        name: request.body.name,
        expiresAt: request.body.expiresAt ? new Date(request.body.expiresAt) : null,
        createdBy: principal.id,
      });
      request.audit = { tenantId: null, targetType: 'api_key', targetId: key.id };
      return reply.status(201).send(key);
    },
  );

  app.get(
    '/api/v1/platform/api-keys',
    {
      config: { minRole: 'platform_admin' },
      schema: {
        tags: ['api keys'],
        summary: 'The platform-wide API keys (never the secret)',
        response: { 200: z.object({ apiKeys: z.array(ApiKeyOut) }) },
      },
    },
    async (request) => {
      requireRole(principalOf(request), 'platform_admin');
      return { apiKeys: await listPlatformApiKeys(deps.db) };
    },
  );

  app.delete(
    '/api/v1/platform/api-keys/:keyId',
    {
      config: { minRole: 'platform_admin', auditAction: 'platform.api_key.revoke' },
      schema: {
        tags: ['api keys'],
        summary: 'Revoke a platform-wide API key; the next request with it is refused, on every API process',
        params: z.object({ keyId: z.string().min(1).max(80) }),
        response: { 200: ApiKeyOut },
      },
    },
    async (request) => {
      requireRole(principalOf(request), 'platform_admin');
      request.audit = { tenantId: null, targetType: 'api_key', targetId: request.params.keyId };
      return revokePlatformApiKey(deps.db, request.params.keyId);
    },
  );

  app.post(
    '/api/v1/platform/users/:userId/totp/reset',
    {
      config: { minRole: 'platform_admin', auditAction: 'platform.user.totp.reset' },
      schema: {
        tags: ['auth'],
        summary:
          "Reset another user's TOTP (admins): secret and recovery codes removed, their logins ended; they enrol again (an admin before their next login)",
        params: z.object({ userId: z.string().min(1).max(80) }),
        response: {
          200: z.object({ userId: z.string(), wasEnrolled: z.boolean(), sessionsEnded: z.number() }),
        },
      },
    },
    async (request) => {
      const principal = principalOf(request);
      requireRole(principal, 'platform_admin');
      const target = await deps.db
        .selectFrom('users')
        .select(['id', 'tenant_id'])
        .where('id', '=', request.params.userId)
        .executeTakeFirst();
      if (!target) throw notFound(`user ${request.params.userId}`);
      request.audit = { tenantId: target.tenant_id, targetType: 'user', targetId: target.id };
      if (target.id === principal.id) {
        throw new DomainError(
          'forbidden',
          'you cannot reset your own two-factor authentication; ask another admin',
        );
      }
      const wasEnrolled = await resetTotp(deps.db, target.id);
      const sessionsEnded = await revokeUserSessions(deps.db, target.id);
      return { userId: target.id, wasEnrolled, sessionsEnded };
    },
  );
}
