import type { Config } from './config/load.ts';
import type { ApiServer } from './api/server.ts';
import { assembleApi } from './app-api.ts';
import { openCheckedDatabase } from './open-database.ts';
import type { Billing } from './billing/index.ts';
import { loadCatalog } from './catalog/load.ts';
import { syncCatalog } from './catalog/sync.ts';
import type { MasterDatabase } from './db/connect.ts';
import type { Logger } from './observability/logger.ts';
import { createMetrics, type Metrics } from './observability/metrics.ts';
import { startPlatformWorker } from './lifecycle/wiring.ts';
import type { OrchestratorWorker } from './orchestrator/worker.ts';

export { assembleApi, buildApi, createEdgePlatform, type ApiParts, type EdgePlatform } from './app-api.ts';

/**
 * The composition root: builds every part from the parsed configuration and
 * hands dependencies in as arguments. Nothing below this file reads config
 * or picks a driver by itself.
 */
export interface Platform {
  config: Config;
  log: Logger;
  database: MasterDatabase;
  metrics: Metrics;
  billing: Billing;
  api: ApiServer;
  /** The in-process orchestrator worker (`aiqso up`). */
  worker: OrchestratorWorker;
  close(): Promise<void>;
}

export async function createPlatform(config: Config, log: Logger): Promise<Platform> {
  // An invalid template stops start-up before anything else runs, naming the file and field.
  const catalog = loadCatalog(config.catalogDir);
  const database = await openCheckedDatabase(config, log);
  const metrics = createMetrics();
  try {
    await syncCatalog(database.db, catalog);
    const { api, billing } = await assembleApi(config, log, database, metrics);
    const running = await startPlatformWorker(config, log, database);
    return {
      config,
      log,
      database,
      metrics,
      billing,
      api,
      worker: running.worker,
      async close() {
        await api.close();
        await running.stop();
        await database.close();
      },
    };
  } catch (err) {
    await database.close();
    throw err;
  }
}
