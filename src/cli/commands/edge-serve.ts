import v8 from 'node:v8';
import type { Config } from '../../config/load.ts';
import { connectMasterDatabase } from '../../db/connect.ts';
import { startEdge, type EdgeDeps } from '../../edge/index.ts';
import type { Logger } from '../../observability/logger.ts';
import { createMetrics } from '../../observability/metrics.ts';
import type { CommandContext } from '../context.ts';
import { onShutdownSignal } from '../shutdown.ts';

type EdgeProcess = EdgeDeps & { close(): Promise<void> };

/**
 * An edge that forwards the base domain to AIQSO_EDGE_PLATFORM_URL: only the
 * route table, the database it comes from and metrics. It loads none of the
 * platform app (Fastify, identity, billing) and holds no secrets.
 */
async function forwardingEdge(config: Config, log: Logger): Promise<EdgeProcess> {
  const database = await connectMasterDatabase(config, log, {
    poolSize: 4,
    applicationName: 'aiqso-edge',
    migrate: 'when-behind',
  });
  return { config, log, database, metrics: createMetrics(), close: () => database.close() };
}

/**
 * `aiqso edge`: only the edge (no orchestrator worker). The base domain is
 * served by the platform app in this thread (stateless over the master
 * database), or with AIQSO_EDGE_PLATFORM_URL forwarded to a platform listener.
 * Run as many as needed, each on its own address or port; all follow the same
 * route table.
 */
export async function serveEdge(ctx: CommandContext): Promise<void> {
  const { config, log } = ctx;
  const platform: EdgeProcess = config.edgeTuning.platformUpstream
    ? await forwardingEdge(config, log)
    : await (await import('../../app-api.ts')).createEdgePlatform(config, log);
  let running;
  try {
    running = await startEdge(platform);
  } catch (err) {
    await platform.close();
    if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE') {
      throw new Error(
        `port ${config.http.port} on ${config.http.bind} is in use; set AIQSO_HTTP_PORT to another port`,
      );
    }
    throw err;
  }
  onShutdownSignal(async () => {
    await running.close();
    await platform.close();
  }, log);
  const https = running.listeners.httpsPort
    ? ` and https://${config.http.bind}:${running.listeners.httpsPort}`
    : '';
  const upstream = config.edgeTuning.platformUpstream;
  const base = upstream ? `, ${config.baseDomain} forwarded to ${upstream.host}:${upstream.port}` : '';
  // What V8 allows the heap (old generation plus young), as NODE_OPTIONS sized it.
  const limitMb = Math.round(v8.getHeapStatistics().heap_size_limit / 2 ** 20);
  process.stderr.write(
    `AIQSO edge (${config.edge}) listening on http://${config.http.bind}:${running.listeners.httpPort}${https}, ` +
      `${running.watcher.table().size} routes${base} (heap limit ${limitMb} MB). Press Ctrl-C to stop.\n`,
  );
}
