import { z } from 'zod';
import { DomainError, notFound } from '../../core/errors.ts';
import type { Database } from '../../db/database.ts';
import {
  EDGE_COOKIE,
  EDGE_SESSION_TTL_SECONDS,
  EDGE_TOKEN_TYP,
  type EdgeTokenClaims,
} from '../../edge/auth/edge-token.ts';
import { normalizeHost, TargetError } from '../../edge/normalize.ts';
import { principalOf } from '../identity/authenticate.ts';
import { isPlatformAdmin } from '../../identity/principal.ts';
import type { TokenIssuer } from '../../identity/tokens.ts';
import type { ApiServer } from '../server.ts';

const Body = z.object({
  host: z
    .string()
    .min(1)
    .max(260)
    .transform((value, ctx) => {
      try {
        return normalizeHost(value);
      } catch (err) {
        if (!(err instanceof TargetError)) throw err;
        ctx.addIssue({ code: 'custom', message: 'expected a tenant host name such as acme.aiqso.io' });
        return z.NEVER;
      }
    }),
});

/**
 * The edge session: a signed user of a tenant (or a platform admin) gets a
 * token for one of the tenant's hosts, which the dashboard sets as the
 * `aiqso_edge` cookie there; the edge then lets the user through to the
 * tenant's services (src/edge/auth/). A host that is not a workspace of the
 * caller's tenant answers 404, like other tenants' resources. API keys have no
 * session to tie a token to and are refused.
 */
export function edgeSessionRoutes(app: ApiServer, deps: { db: Database; tokens: TokenIssuer }): void {
  app.post(
    '/api/v1/auth/edge-session',
    {
      config: { minRole: 'tenant_member', auditAction: 'auth.edge_session' },
      schema: {
        tags: ['auth'],
        summary:
          "An edge session for one of your tenant's hosts: set it as the cookie it names there, and the edge lets you through to the tenant's services",
        body: Body,
        response: {
          200: z.object({
            token: z.string(),
            expiresIn: z.number(),
            cookie: z.literal(EDGE_COOKIE),
            host: z.string(),
            tenantId: z.string(),
          }),
        },
      },
    },
    async (request) => {
      const principal = principalOf(request);
      if (principal.kind !== 'user' || !principal.sessionId) {
        throw new DomainError('forbidden', 'an edge session is for a signed-in user, not an API key');
      }
      const host = request.body.host;
      const route = await deps.db
        .selectFrom('routes')
        .select('tenant_id')
        .where('hostname', '=', host)
        .where('tenant_id', 'is not', null)
        .orderBy('path_prefix')
        .executeTakeFirst();
      const tenantId = route?.tenant_id;
      if (!tenantId || (!isPlatformAdmin(principal) && principal.tenantId !== tenantId)) {
        throw notFound(`workspace ${host}`);
      }
      const user = await deps.db
        .selectFrom('users')
        .select('email')
        .where('id', '=', principal.id)
        .executeTakeFirstOrThrow();
      request.audit = { tenantId, targetType: 'host', targetId: host };
      const claims: EdgeTokenClaims = {
        email: user.email,
        role: principal.role,
        tid: tenantId,
        sid: principal.sessionId,
      };
      const signed = await deps.tokens.signFor({
        typ: EDGE_TOKEN_TYP,
        audience: host,
        subject: principal.id,
        ttlSeconds: EDGE_SESSION_TTL_SECONDS,
        claims: { ...claims },
      });
      return { token: signed.token, expiresIn: signed.expiresIn, cookie: EDGE_COOKIE, host, tenantId };
    },
  );
}
