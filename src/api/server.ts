import { randomUUID } from 'node:crypto';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import Fastify, { LogController, type FastifyBaseLogger } from 'fastify';
import {
  jsonSchemaTransform,
  serializerCompiler,
  validatorCompiler,
  type ZodTypeProvider,
} from 'fastify-type-provider-zod';
import type { Logger } from '../observability/logger.ts';
import { withLogContext } from '../observability/logger.ts';
import { redactUrl } from '../observability/redact.ts';
import type { Metrics } from '../observability/metrics.ts';
import { DomainError } from '../core/errors.ts';
import { installPageSecurity } from '../web/security-headers.ts';
import { installErrorHandling } from './errors.ts';
import { installInputGuard } from './input-guard.ts';

export interface ApiOptions {
  logger: Logger;
  metrics: Metrics;
  version: string;
  publicUrl: string;
  bodyLimitBytes?: number;
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** An HTML form posts here: urlencoded bodies are accepted (every other route takes JSON only). */
    form?: boolean;
  }
}

const REQUEST_ID = /^[\w.:-]{1,64}$/;

/** A registered route: method, URL pattern, and whether it declared itself public. */
export interface RegisteredRoute {
  method: string;
  url: string;
  public: boolean;
}

const ROUTE_TABLES = new WeakMap<object, RegisteredRoute[]>();

/** Every route registered on `app`, for checks that must cover them all. */
export function registeredRoutes(app: object): RegisteredRoute[] {
  return [...(ROUTE_TABLES.get(app) ?? [])];
}

/**
 * The HTTP API: Fastify with zod schemas for every route, which also generate
 * `/api/openapi.json`. Routes are registered by `src/platform/api.ts`.
 */
export async function createApi(options: ApiOptions) {
  const app = Fastify({
    // Fastify's logger type is narrower than pino's; typing the instance with it keeps plugins' types simple.
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-assertion
    loggerInstance: options.logger as FastifyBaseLogger,
    // The platform logger already mixes in the request id from the log context,
    // so the per-request logger is the platform logger itself.
    childLoggerFactory: (logger) => logger,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: options.bodyLimitBytes ?? 1024 * 1024,
    genReqId: (req) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
    },
    trustProxy: '127.0.0.1',
    routerOptions: { ignoreTrailingSlash: true },
  }).withTypeProvider<ZodTypeProvider>();

  // JSON only, so that a page on another site cannot make a browser send a request the API acts on
  // (a cross-site form can post urlencoded or text/plain bodies without a CORS preflight, never JSON).
  // The portal's own HTML forms post urlencoded bodies to the routes that declare `form: true`.
  app.removeContentTypeParser('text/plain');
  app.addContentTypeParser(
    'application/x-www-form-urlencoded',
    { parseAs: 'string' },
    (request, body, done) => {
      if (request.routeOptions.config.form !== true) {
        done(new DomainError('unsupported_media_type', 'unsupported Content-Type; send application/json'));
        return;
      }
      done(null, Object.fromEntries(new URLSearchParams(body as string)));
    },
  );
  const table: RegisteredRoute[] = [];
  ROUTE_TABLES.set(app, table);
  app.addHook('onRoute', (route) => {
    for (const method of [route.method].flat()) {
      // Read when asked: an onRoute hook of a plugin's scope may still mark the route after this one.
      table.push({
        method,
        url: route.url,
        get public() {
          return route.config?.public === true;
        },
      });
    }
  });

  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  installErrorHandling(app);
  // Registered before any other hook, so that authentication and every route see only sane text.
  installInputGuard(app);
  installPageSecurity(app);

  app.addHook('onRequest', (request, reply, done) => {
    void reply.header('x-request-id', request.id);
    withLogContext({ reqId: request.id }, done);
  });
  app.addHook('onResponse', (request, reply, done) => {
    const route = request.routeOptions.url ?? 'unmatched';
    const labels = { method: request.method, route };
    options.metrics.httpRequests.inc({ ...labels, status: String(reply.statusCode) });
    options.metrics.httpDuration.observe(labels, reply.elapsedTime / 1000);
    request.log.info(
      {
        method: request.method,
        url: redactUrl(request.url),
        route,
        status: reply.statusCode,
        ms: Math.round(reply.elapsedTime),
      },
      'request',
    );
    done();
  });

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'AIQSO control plane API',
        version: options.version,
        description: 'Tenants, services, billing webhooks and operations of an AIQSO platform.',
      },
      servers: [{ url: options.publicUrl }],
      components: {
        securitySchemes: { bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } },
      },
    },
    transform: jsonSchemaTransform,
  });
  // The API reference is public: its routes (registered by the plugin) are marked so as they are added.
  await app.register(async (docs) => {
    docs.addHook('onRoute', (route) => {
      route.config = { ...route.config, public: true };
    });
    await docs.register(swaggerUi, { routePrefix: '/api/docs', uiConfig: { docExpansion: 'list' } });
  });
  app.get('/api/openapi.json', { config: { public: true }, schema: { hide: true } }, () => app.swagger());
  return app;
}

export type ApiServer = Awaited<ReturnType<typeof createApi>>;
