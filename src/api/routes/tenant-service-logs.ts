import { PassThrough } from 'node:stream';
import { z } from 'zod';
import type { Config } from '../../config/load.ts';
import { MAX_LOG_LINES, type LogOptions, type ServiceLogs } from '../../core/compute.ts';
import type { TenantAccess } from '../../identity/tenant-access.ts';
import { readServiceLogs, serviceLogTarget, type LogTarget } from '../../services/logs.ts';
import { principalOf } from '../identity/authenticate.ts';
import type { ApiServer } from '../server.ts';

const Params = z.object({ tenant: z.string().min(1).max(80), service: z.string().min(1).max(40) });
const Query = z
  .object({
    lines: z.coerce
      .number({ message: `lines must be a whole number from 0 to ${MAX_LOG_LINES}` })
      .int(`lines must be a whole number from 0 to ${MAX_LOG_LINES}`)
      .min(0, `lines must be a whole number from 0 to ${MAX_LOG_LINES}`)
      .max(MAX_LOG_LINES, `lines must be a whole number from 0 to ${MAX_LOG_LINES}`)
      .default(100),
  })
  .strict();
const StreamQuery = Query.extend({
  /** How long the tail lasts at most, in seconds. */
  seconds: z.coerce
    .number({ message: 'seconds must be a whole number from 1 to 1800' })
    .int('seconds must be a whole number from 1 to 1800')
    .min(1, 'seconds must be a whole number from 1 to 1800')
    .max(1800, 'seconds must be a whole number from 1 to 1800')
    .default(1800),
}).strict();
const LogsOut = z.object({
  service: z.string(),
  /** The service's own output, oldest first, as it wrote it. */
  lines: z.array(z.string()),
  /** There is older output than these lines. */
  truncated: z.boolean(),
});

const KEEPALIVE_MS = 15_000;

/**
 * `GET …/services/{service}/logs`: the last lines a tenant's service wrote
 * (members, owners, platform admins), and `…/logs/stream`, a live tail as
 * server-sent events. The lines are the service's own output, the tenant's:
 * the platform adds nothing to them. Reads are not audited (only unsafe
 * methods are). Logs are read from the files on this host through the
 * driver's reader (`compute/logs.ts`), loaded on first use.
 */
export function tenantServiceLogRoutes(app: ApiServer, deps: { access: TenantAccess; config: Config }): void {
  const { access, config } = deps;
  let reader: Promise<(name: string, options: LogOptions) => Promise<ServiceLogs>> | undefined;
  const read = async (target: LogTarget, key: string, options: LogOptions) => {
    reader ??= import('../../compute/logs.ts').then((m) => m.logReader(config));
    return readServiceLogs(await reader, target, key, options);
  };
  /** Live tails under way, ended when the server closes. */
  const streams = new Set<AbortController>();
  app.addHook('preClose', (done) => {
    for (const s of streams) s.abort();
    done();
  });

  app.get(
    '/api/v1/tenants/:tenant/services/:service/logs',
    {
      config: { minRole: 'tenant_member' },
      schema: {
        tags: ['services'],
        summary: `The last lines (\`lines\`, default 100, at most ${MAX_LOG_LINES}) of a service's own output (stdout and stderr), oldest first; \`truncated\` when there is older output. 409 when the service has no container (not deployed yet, removed) or the driver cannot read logs (proxmox)`,
        params: Params,
        querystring: Query,
        response: { 200: LogsOut },
      },
    },
    async (request) => {
      const { service } = request.params;
      const container = await access.forTenant(
        principalOf(request),
        request.params.tenant,
        'tenant_member',
        ({ trx, tenantId }) => serviceLogTarget(trx, tenantId, service),
      );
      const { lines, truncated } = await read(container, service, { lines: request.query.lines });
      return { service, lines, truncated };
    },
  );

  app.get(
    '/api/v1/tenants/:tenant/services/:service/logs/stream',
    {
      config: { minRole: 'tenant_member' },
      schema: {
        tags: ['services'],
        summary: `A live tail of a service's output as server-sent events (text/event-stream): first \`{"lines":[…],"truncated":…}\` with the last \`lines\` lines, then \`{"lines":[…]}\` as the service writes more; ends when the client goes away, or after \`seconds\` (default and at most 1800; ask again to go on)`,
        params: Params,
        querystring: StreamQuery,
      },
    },
    async (request, reply) => {
      const { service } = request.params;
      const container = await access.forTenant(
        principalOf(request),
        request.params.tenant,
        'tenant_member',
        ({ trx, tenantId }) => serviceLogTarget(trx, tenantId, service),
      );
      const ac = new AbortController();
      const logs = await read(container, service, {
        lines: request.query.lines,
        follow: true,
        signal: ac.signal,
      });
      streams.add(ac);
      const body = new PassThrough();
      const event = (data: unknown) => body.write(`data: ${JSON.stringify(data)}\n\n`);
      const keepalive = setInterval(() => body.write(': still here\n\n'), KEEPALIVE_MS);
      const limit = setTimeout(() => ac.abort(), request.query.seconds * 1000);
      const end = () => {
        ac.abort();
        clearInterval(keepalive);
        clearTimeout(limit);
        streams.delete(ac);
      };
      // The client going away (or the response ending) ends the tail and closes its files.
      reply.raw.once('close', end);
      event({ lines: logs.lines, truncated: logs.truncated });
      void (async () => {
        try {
          for await (const lines of logs.follow ?? []) event({ lines });
        } catch (err) {
          request.log.warn({ err, container: container.name }, 'log tail failed');
        } finally {
          end();
          body.end();
        }
      })();
      return reply
        .header('content-type', 'text/event-stream; charset=utf-8')
        .header('cache-control', 'no-store')
        .header('x-accel-buffering', 'no')
        .send(body);
    },
  );
}
