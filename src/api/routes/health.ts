import { z } from 'zod';
import { DomainError } from '../../core/errors.ts';
import { metricsRefusal } from '../../observability/metrics-access.ts';
import type { ApiServer } from '../server.ts';

export interface HealthDeps {
  /** Resolves when the master database answers; rejects otherwise. */
  pingDatabase(): Promise<void>;
  metricsText(): Promise<string>;
  metricsContentType: string;
  /** AIQSO_METRICS_TOKEN: /metrics needs it as a bearer token; without one, only loopback clients read them. */
  metricsToken?: string;
  version: string;
}

const Status = z.object({ status: z.literal('ok'), version: z.string() });

export function healthRoutes(app: ApiServer, deps: HealthDeps): void {
  app.get(
    '/healthz',
    {
      // Liveness and readiness answer anyone; /metrics checks its own token (metrics-access.ts).
      config: { public: true },
      schema: {
        tags: ['operations'],
        summary: 'Liveness: the process answers',
        response: { 200: Status },
      },
    },
    () => ({ status: 'ok' as const, version: deps.version }),
  );

  app.get(
    '/readyz',
    {
      // Liveness and readiness answer anyone; /metrics checks its own token (metrics-access.ts).
      config: { public: true },
      schema: {
        tags: ['operations'],
        summary: 'Readiness: the master database is reachable',
        response: { 200: Status },
      },
    },
    async () => {
      try {
        await deps.pingDatabase();
      } catch (err) {
        throw new DomainError('unavailable', 'master database is not reachable', { cause: err });
      }
      return { status: 'ok' as const, version: deps.version };
    },
  );

  app.get(
    '/metrics',
    {
      // Liveness and readiness answer anyone; /metrics checks its own token (metrics-access.ts).
      config: { public: true },
      schema: {
        tags: ['operations'],
        summary:
          'Prometheus metrics: with AIQSO_METRICS_TOKEN as a bearer token, or without one from this machine only',
      },
    },
    async (request, reply) => {
      // request.ip: the socket's peer, or the edge's X-Forwarded-For when the edge is in this process.
      const refusal = metricsRefusal(deps.metricsToken, request.headers.authorization, request.ip);
      if (refusal) {
        if (refusal.status === 401) void reply.header('www-authenticate', 'Bearer realm="metrics"');
        throw new DomainError(refusal.code, refusal.message);
      }
      return reply.type(deps.metricsContentType).send(await deps.metricsText());
    },
  );
}
