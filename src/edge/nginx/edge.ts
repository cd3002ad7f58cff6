import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { EdgeUsageReporter } from '../../usage/edge-report.ts';
import { startNginxLogReporter } from '../../usage/nginx-log.ts';
import { createEdgeMetrics } from '../edge-metrics.ts';
import { tableRoutes, type RouteTable } from '../route-table.ts';
import { startBuiltinEdge, type BuiltinEdgeOptions, type EdgeDeps, type RunningEdge } from '../start.ts';
import { dirCertificates, fingerprint, withAltNames } from '../tls.ts';
import { startNginx, type ApplyResult, type NginxProcess } from './apply.ts';
import { renderNginxConfig } from './render.ts';

export interface NginxEdge extends RunningEdge {
  nginx: NginxProcess;
  /** The reader of nginx's access log into usage_edge_counts; `flush` reads what nginx wrote so far. */
  usage: EdgeUsageReporter;
  /** The outcome of the latest render + apply. */
  lastApply(): ApplyResult;
  /** Render and apply the current table now (also done on every route change). */
  sync(): Promise<ApplyResult>;
}

export interface NginxEdgeOptions extends Omit<BuiltinEdgeOptions, 'behindNginx'> {
  /** nginx's own directory (config, pid, logs, temp files). */
  dir: string;
  workerProcesses?: number | 'auto';
  /** How often certificate files are checked for a renewal (ms). */
  certPollMs?: number;
  /** How often the access log is read for usage metering (ms). */
  usageReadMs?: number;
}

/**
 * The nginx edge (AIQSO_EDGE=nginx): nginx listens on the public ports and
 * proxies active routes straight to their upstreams; an internal builtin edge
 * on a loopback port serves the base domain, pages and IP-list checks. Every
 * route change re-renders the configuration; a render nginx refuses leaves
 * the working configuration in place and is logged and counted.
 */
export async function startNginxEdge(deps: EdgeDeps, options: NginxEdgeOptions): Promise<NginxEdge> {
  const { log, config } = deps;
  const metrics = createEdgeMetrics(deps.metrics.registry);
  const internal = await startBuiltinEdge(deps, { bind: '127.0.0.1', httpPort: 0, behindNginx: true });
  let nginx: NginxProcess;
  try {
    nginx = await startNginx({ dir: options.dir, log });
  } catch (err) {
    await internal.close();
    throw err;
  }
  let last: ApplyResult = { result: 'unchanged' };
  const https = options.https && {
    ...options.https,
    certDir: options.https.certDir ?? config.edgeTuning.certDir,
  };
  // nginx reads certificates when it loads its configuration: a renewed file needs a reload.
  const certFiles = (): string[] =>
    https
      ? [
          https.certFile,
          https.keyFile,
          ...dirCertificates(https.certDir).flatMap((c) => [c.certFile, c.keyFile]),
        ]
      : [];
  let certPrint = fingerprint(certFiles());

  const sync = async (table: RouteTable = internal.watcher.table(), reload = false): Promise<ApplyResult> => {
    const { config: text, skipped } = renderNginxConfig({
      routes: tableRoutes(table),
      baseDomain: config.baseDomain,
      dir: options.dir,
      listen: {
        bind: options.bind,
        httpPort: options.httpPort,
        https: https && {
          port: https.port,
          certFile: https.certFile,
          keyFile: https.keyFile,
          minVersion: https.minVersion ?? config.tlsMinVersion,
          sni: withAltNames(dirCertificates(https.certDir)),
        },
      },
      internal: { host: '127.0.0.1', port: internal.listeners.httpPort },
      rate: { perIp: config.edgeTuning.ratePerIp, perTenant: config.edgeTuning.ratePerTenant },
      upstreamTimeoutSeconds: config.edgeTuning.upstreamTimeoutSeconds,
      workerProcesses: options.workerProcesses,
    });
    if (skipped.length)
      log.warn(
        { skipped: skipped.slice(0, 20), count: skipped.length },
        'routes left out of the nginx configuration',
      );
    last = await nginx.apply(text, { reload });
    metrics.nginxApply.inc({ result: last.result });
    return last;
  };

  const first = await sync();
  if (first.result === 'invalid' || first.result === 'failed') {
    await nginx.stop();
    await internal.close();
    throw new Error(`nginx refused the initial configuration: ${first.error}`);
  }

  try {
    await waitForListener(options.bind, options.httpPort, () => nginx.running());
  } catch (err) {
    await nginx.stop();
    await internal.close();
    throw err;
  }

  let timer: NodeJS.Timeout | undefined;
  internal.watcher.subscribe(() => {
    // Coalesce bursts of changes into one render and reload.
    timer ??= setTimeout(() => {
      timer = undefined;
      sync().catch((err: unknown) => log.error({ err }, 'nginx sync failed'));
    }, 100);
  });

  const certTimer = https
    ? setInterval(() => {
        const print = fingerprint(certFiles());
        if (print === certPrint) return;
        certPrint = print;
        log.info('TLS certificates changed; reloading nginx');
        sync(undefined, true).catch((err: unknown) => log.error({ err }, 'nginx certificate reload failed'));
      }, options.certPollMs ?? 2000)
    : undefined;
  certTimer?.unref();

  // Requests per tenant for usage metering come from nginx's access log (the internal edge behind it
  // reports none, or requests it is handed would count twice).
  const usage = startNginxLogReporter({
    db: deps.database.db,
    file: path.join(options.dir, 'access.log'),
    edge: `nginx:${os.hostname()}:${options.dir}`,
    log,
    intervalMs: options.usageReadMs,
  });

  return {
    nginx,
    usage,
    watcher: internal.watcher,
    listeners: { httpPort: options.httpPort, httpsPort: options.https?.port, close: () => Promise.resolve() },
    lastApply: () => last,
    sync: () => sync(),
    async close() {
      if (timer) clearTimeout(timer);
      if (certTimer) clearInterval(certTimer);
      await nginx.stop();
      // nginx wrote its buffered lines when it stopped: they are counted now.
      await usage.close();
      await internal.close();
    },
  };
}

/** Resolve once nginx accepts connections on its port; fail if it exits or takes over 10 s. */
async function waitForListener(host: string, port: number, alive: () => boolean): Promise<void> {
  const end = Date.now() + 10_000;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host);
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (!alive()) throw new Error(`nginx exited before listening on ${host}:${port} (see its error.log)`);
    if (Date.now() > end) throw new Error(`nginx did not listen on ${host}:${port} within 10 s`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
