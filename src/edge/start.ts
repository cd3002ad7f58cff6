import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Redis } from 'ioredis';
import type { Config } from '../config/load.ts';
import type { DatabaseHandle } from '../db/database.ts';
import type { Logger } from '../observability/logger.ts';
import type { Metrics } from '../observability/metrics.ts';
import { createEdgeSessionVerifier } from './auth/verifier.ts';
import { createEdgeMetrics } from './edge-metrics.ts';
import { startEdgeUsageReporter } from '../usage/edge-report.ts';
import { compileCidrs } from './forwarding.ts';
import { createEdgeHandler, type ChallengeResponder, type EdgeHandlerOptions } from './handler.ts';
import { createRateLimiter } from './rate-limit.ts';
import { startRouteWatcher, type RouteWatcher } from './route-watcher.ts';
import { sharedTenantFacts, tenantPageFacts } from './routes-store.ts';
import { listenEdge, type EdgeListeners } from './server.ts';
import { createCertificateStore, type TlsVersion } from './tls.ts';

export interface EdgeDeps {
  config: Config;
  log: Logger;
  database: DatabaseHandle;
  metrics: Metrics;
  /**
   * The platform's app, served in-process for the base domain (must be
   * `ready()`); without it the base domain is forwarded to
   * `config.edgeTuning.platformUpstream`.
   */
  api?: { routing(req: IncomingMessage, res: ServerResponse): void };
  challenges?: ChallengeResponder;
}

export interface RunningEdge {
  watcher: RouteWatcher;
  listeners: EdgeListeners;
  close(): Promise<void>;
}

export interface BuiltinEdgeOptions {
  bind: string;
  httpPort: number;
  https?: { port: number; certFile: string; keyFile: string; certDir?: string; minVersion?: TlsVersion };
  /** Behind the nginx edge: trust loopback's X-Forwarded-For and leave rate limits to nginx. */
  behindNginx?: boolean;
}

/** Wait briefly for Redis so the first requests share budgets; an edge still starts without it. */
async function redisReady(redis: Redis, ms: number): Promise<void> {
  if (redis.status === 'ready') return;
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms);
    redis.once('ready', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

function platformFor(deps: EdgeDeps): EdgeHandlerOptions['platform'] {
  const { api } = deps;
  if (api) return { serve: (req, res) => api.routing(req, res) };
  const upstream = deps.config.edgeTuning.platformUpstream;
  if (!upstream) throw new Error('an edge needs the platform app or AIQSO_EDGE_PLATFORM_URL');
  const { registry } = deps.metrics;
  return { upstream, metrics: async () => ({ type: registry.contentType, text: await registry.metrics() }) };
}

/** Where the platform's own workloads (dashboards) call the API from: loopback (the host gateway), the containers' subnet. */
function internalCallerCidrs(config: Config): string[] {
  const subnet =
    config.driver === 'lxc' ? [config.lxc.subnet] : config.proxmox ? [config.proxmox.subnet] : [];
  return ['127.0.0.0/8', '::1/128', ...subnet];
}

/** The builtin edge: route watcher, limiter, handler and listeners, from configuration. */
export async function startBuiltinEdge(deps: EdgeDeps, options: BuiltinEdgeOptions): Promise<RunningEdge> {
  const { config, log, database } = deps;
  const tuning = config.edgeTuning;
  const edgeMetrics = createEdgeMetrics(deps.metrics.registry);
  const watcher = await startRouteWatcher({
    db: database.db,
    databaseUrl: database.url,
    log,
    reloadSeconds: tuning.reloadSeconds,
    onChange: (t) => edgeMetrics.routes.set(t.size),
  });
  edgeMetrics.routes.set(watcher.table().size);
  // ioredis is loaded only when configured (it costs an edge without Redis ~15 MB).
  const redis = config.redisUrl
    ? new (await import('ioredis')).Redis(config.redisUrl, {
        enableOfflineQueue: false,
        maxRetriesPerRequest: 1,
        lazyConnect: false,
      })
    : undefined;
  redis?.on('error', (err) => log.warn({ err }, 'Redis unavailable; rate limits fall back to this process'));
  if (redis) await redisReady(redis, 2000);
  const trusted = [...tuning.trustedProxies, ...(options.behindNginx ? ['127.0.0.1/8', '::1/128'] : [])];
  const certificates = options.https
    ? createCertificateStore(
        {
          ...options.https,
          certDir: options.https.certDir ?? tuning.certDir,
          minVersion: options.https.minVersion ?? config.tlsMinVersion,
        },
        log,
      )
    : undefined;
  // Where plain HTTP is sent once the HTTPS listener has its port.
  const redirectTo = options.https ? { port: options.https.port } : undefined;
  const handler = createEdgeHandler({
    baseDomain: config.baseDomain,
    routes: () => watcher.table(),
    platform: platformFor(deps),
    limiter: createRateLimiter(
      options.behindNginx
        ? { perIp: 0, perTenant: 0 }
        : { perIp: tuning.ratePerIp, perTenant: tuning.ratePerTenant },
      redis,
      config.baseDomain,
    ),
    edgeSessions: createEdgeSessionVerifier({ db: database.db, issuer: config.publicUrl }),
    nginxAuth: options.behindNginx,
    https: redirectTo,
    metricsToken: config.metricsToken,
    tenantFacts: sharedTenantFacts((tenantId) => tenantPageFacts(database.db, tenantId)),
    challenges: deps.challenges,
    trustedProxies: trusted.length ? compileCidrs(trusted).list : undefined,
    internalCallers: compileCidrs(internalCallerCidrs(config)).list,
    log,
    metrics: edgeMetrics,
    upstreamTimeoutMs: tuning.upstreamTimeoutSeconds * 1000,
  });
  // Behind nginx, nginx's access log is what counts requests (src/usage/nginx-log.ts).
  const usage = options.behindNginx
    ? { flush: () => Promise.resolve(), close: () => Promise.resolve() }
    : startEdgeUsageReporter({ db: database.db, metrics: edgeMetrics, log });
  let listeners: EdgeListeners;
  try {
    listeners = await listenEdge(handler, {
      bind: options.bind,
      httpPort: options.httpPort,
      https: options.https && certificates ? { port: options.https.port, certificates } : undefined,
    });
    if (redirectTo && listeners.httpsPort) redirectTo.port = listeners.httpsPort;
  } catch (err) {
    handler.close();
    certificates?.close();
    redis?.disconnect();
    await usage.close();
    await watcher.close();
    throw err;
  }
  return {
    watcher,
    listeners,
    async close() {
      await listeners.close();
      handler.close();
      certificates?.close();
      redis?.disconnect();
      await usage.close();
      await watcher.close();
    },
  };
}
