import cookie from '@fastify/cookie';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Database } from '../../db/database.ts';
import type { Logger } from '../../observability/logger.ts';
import { addLogContext } from '../../observability/logger.ts';
import { appendAudit } from '../../identity/audit.ts';
import { requireRole } from '../../identity/principal.ts';
import type { Authenticator } from './authenticate.ts';

const MUTATING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

function resultOf(status: number): 'success' | 'failure' | 'denied' {
  if (status < 400) return 'success';
  return status === 401 || status === 403 || status === 429 ? 'denied' : 'failure';
}

function targetOf(request: FastifyRequest): { type: string | null; id: string | null } {
  if (request.audit?.targetType)
    return { type: request.audit.targetType, id: request.audit.targetId ?? null };
  const params = (request.params ?? {}) as Record<string, string>;
  const names = Object.keys(params);
  const last = names[names.length - 1];
  return last ? { type: last, id: params[last] ?? null } : { type: null, id: null };
}

/**
 * Authentication on every route, before its body is validated (default deny),
 * except a route that declares `config: { public: true }` in its own options:
 * that flag, where each public route is registered, is the only list of public
 * routes. And an audit row for every mutating request, whatever its outcome.
 */
export async function installIdentityHooks(
  app: FastifyInstance,
  deps: { authenticate: Authenticator; db: Database; log: Logger },
): Promise<void> {
  if (!app.hasRequestDecorator('cookies')) await app.register(cookie);

  app.addHook('preValidation', async (request) => {
    const config = request.routeOptions.config;
    const url = request.routeOptions.url;
    if (url === undefined || config.public === true) return;
    request.principal = await deps.authenticate(request, config.enrolment === true);
    // From here on, every log line of this request names the caller's tenant.
    if (request.principal.tenantId) addLogContext({ tenantId: request.principal.tenantId });
    if (config.minRole && !url.includes(':tenant')) requireRole(request.principal, config.minRole);
  });

  app.addHook('onSend', async (request, reply, payload) => {
    const url = request.routeOptions.url;
    if (url === undefined || !MUTATING.has(request.method)) return payload;
    if (request.routeOptions.config.auditedByApi === true) return payload;
    const principal = request.principal;
    const target = targetOf(request);
    try {
      await appendAudit(deps.db, {
        actorType: principal?.kind === 'api_key' ? 'api_key' : 'user',
        actorId: request.audit?.actorId ?? principal?.id ?? null,
        tenantId:
          request.audit?.tenantId !== undefined ? request.audit.tenantId : (principal?.tenantId ?? null),
        action: request.routeOptions.config.auditAction ?? `${request.method} ${url}`,
        targetType: target.type,
        targetId: target.id,
        sourceIp: request.audit?.sourceIp ?? request.ip,
        result: resultOf(reply.statusCode),
        details: { ...request.audit?.details, status: reply.statusCode, requestId: request.id },
      });
    } catch (err) {
      // The action already happened; losing its audit row is an operator alarm, not the caller's error.
      deps.log.error({ err, route: url }, 'audit append failed');
    }
    return payload;
  });
}
