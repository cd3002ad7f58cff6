import cookie from '@fastify/cookie';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Database } from '../../db/database.ts';
import type { Logger } from '../../observability/logger.ts';
import { addLogContext } from '../../observability/logger.ts';
import { appendAudit } from '../../identity/audit.ts';
import { requireRole } from '../../identity/principal.ts';
import type { Authenticator } from './authenticate.ts';

/**
 * Routes anyone may call. Every other route under /api/ is authenticated
 * before its body is validated (default deny): a new API route is protected
 * unless it is listed here or declares `config: { public: true }`. Routes
 * outside /api/ (health, metrics, webhooks, later portal pages) authenticate
 * their own way; the security-suite coverage test flags any route anywhere
 * that is neither allow-listed nor covered by the suite.
 */
export const PUBLIC_ROUTES: readonly string[] = [
  '/healthz',
  '/readyz',
  '/metrics',
  '/api/openapi.json',
  '/api/docs',
  '/api/docs/*',
  '/api/v1/signup',
  '/webhooks/*',
];

export function isPublicRoute(url: string, config: { public?: boolean } = {}): boolean {
  if (config.public || !url.startsWith('/api/')) return true;
  return PUBLIC_ROUTES.some((p) => (p.endsWith('/*') ? url.startsWith(p.slice(0, -1)) : url === p));
}

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

/** Authentication on every non-public route, and an audit row for every mutating request, whatever its outcome. */
export async function installIdentityHooks(
  app: FastifyInstance,
  deps: { authenticate: Authenticator; db: Database; log: Logger },
): Promise<void> {
  if (!app.hasRequestDecorator('cookies')) await app.register(cookie);

  app.addHook('preValidation', async (request) => {
    const config = request.routeOptions.config;
    const url = request.routeOptions.url;
    if (url === undefined || isPublicRoute(url, config)) return;
    request.principal = await deps.authenticate(request, config.enrolment === true);
    // From here on, every log line of this request names the caller's tenant.
    if (request.principal.tenantId) addLogContext({ tenantId: request.principal.tenantId });
    if (config.minRole && !url.includes(':tenant')) requireRole(request.principal, config.minRole);
  });

  app.addHook('onSend', async (request, reply, payload) => {
    const url = request.routeOptions.url;
    if (url === undefined || !MUTATING.has(request.method)) return payload;
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
        details: { status: reply.statusCode, requestId: request.id },
      });
    } catch (err) {
      // The action already happened; losing its audit row is an operator alarm, not the caller's error.
      deps.log.error({ err, route: url }, 'audit append failed');
    }
    return payload;
  });
}
