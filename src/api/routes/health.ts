import { z } from 'zod';
import { DomainError } from '../../core/errors.ts';
import type { ApiServer } from '../server.ts';

export interface HealthDeps {
  /** Resolves when the master database answers; rejects otherwise. */
  pingDatabase(): Promise<void>;
  metricsText(): Promise<string>;
  metricsContentType: string;
  version: string;
}

const Status = z.object({ status: z.literal('ok'), version: z.string() });

export function healthRoutes(app: ApiServer, deps: HealthDeps): void {
  app.get(
    '/healthz',
    {
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
    { schema: { tags: ['operations'], summary: 'Prometheus metrics' } },
    async (_req, reply) => reply.type(deps.metricsContentType).send(await deps.metricsText()),
  );
}
