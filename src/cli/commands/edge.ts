import { createEdgePlatform } from '../../app-api.ts';
import { startEdge } from '../../edge/index.ts';
import type { CommandContext } from '../context.ts';
import { onShutdownSignal } from '../shutdown.ts';

/**
 * `aiqso edge`: only the edge (with the platform app for the base domain,
 * which is stateless over the master database; no orchestrator worker). Run as many as needed, each
 * on its own address or port; all follow the same route table.
 */
export async function edge(ctx: CommandContext): Promise<void> {
  const { config, log } = ctx;
  const platform = await createEdgePlatform(config, log);
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
  process.stderr.write(
    `AIQSO edge (${config.edge}) listening on http://${config.http.bind}:${running.listeners.httpPort}${https}, ` +
      `${running.watcher.table().size} routes. Press Ctrl-C to stop.\n`,
  );
}
