import { z } from 'zod';
import type { ApiServer } from '../../api/server.ts';
import { DomainError, notFound } from '../../core/errors.ts';
import type { Database } from '../../db/database.ts';
import { createApiKey } from '../api-keys.ts';
import { requireRole } from '../principal.ts';
import { revokeUserSessions } from '../sessions.ts';
import { resetTotp } from '../totp.ts';
import { principalOf } from './authenticate.ts';

/** Platform-wide routes: platform API keys, and an admin's reset of a user's TOTP. */
export function platformRoutes(app: ApiServer, deps: { db: Database }): void {
  app.post(
    '/api/v1/platform/api-keys',
    {
      config: { minRole: 'platform_admin', auditAction: 'platform.api_key.create' },
      schema: {
        tags: ['api keys'],
        summary: 'Create a platform-wide API key (admins only); `key` is shown only in this response',
        body: z.object({
          name: z.string().min(1).max(100),
          expiresAt: z.iso.datetime({ offset: true }).optional(),
        }),
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      requireRole(principal, 'platform_admin');
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
