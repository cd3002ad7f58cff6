import type { Config } from './config/load.ts';
import { createEdgePlatform, type EdgePlatform } from './app-api.ts';
import { loadCatalog } from './catalog/load.ts';
import { containerFacingAddresses } from './compute/index.ts';
import { syncCatalog } from './catalog/sync.ts';
import type { Logger } from './observability/logger.ts';
import { startPlatformWorker } from './lifecycle/wiring.ts';
import type { OrchestratorWorker } from './orchestrator/worker.ts';

export { assembleApi, buildApi, createEdgePlatform, type ApiParts, type EdgePlatform } from './app-api.ts';

/**
 * The composition root: builds every part from the parsed configuration and
 * hands dependencies in as arguments. Nothing below this file reads config
 * or picks a driver by itself.
 */
export type Platform = EdgePlatform & {
  /** The in-process orchestrator worker (`aiqso up`). */
  worker: OrchestratorWorker;
};

export async function createPlatform(config: Config, log: Logger): Promise<Platform> {
  // An invalid template stops start-up before anything else runs, naming the file and field.
  const catalog = loadCatalog(config.catalogDir);
  // The edge's parts (checked database, API), then what only `aiqso up` adds: the catalog and a worker.
  // An embedded database also listens where containers reach this host, so they keep it without us.
  const databaseListen = config.databaseUrl ? [] : await containerFacingAddresses(config);
  const edge = await createEdgePlatform(config, log, { databaseListen });
  try {
    await syncCatalog(edge.database.db, catalog);
    const running = await startPlatformWorker(config, log, edge.database);
    return {
      ...edge,
      worker: running.worker,
      async close() {
        await edge.api.close();
        await running.stop();
        await edge.database.close();
      },
    };
  } catch (err) {
    await edge.close();
    throw err;
  }
}
