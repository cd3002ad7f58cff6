import type { Config } from './config/load.ts';
import { createApi, type ApiServer } from './api/server.ts';
import { healthRoutes } from './api/routes/health.ts';
import { connectMasterDatabase, type MasterDatabase } from './db/connect.ts';
import type { Logger } from './observability/logger.ts';
import { createMetrics, type Metrics } from './observability/metrics.ts';
import { startConfiguredWorker } from './orchestrator/wiring.ts';
import type { OrchestratorWorker } from './orchestrator/worker.ts';
import { VERSION } from './version.ts';

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
  api: ApiServer;
  /** The in-process orchestrator worker (`aiqso up`). */
  worker: OrchestratorWorker;
  close(): Promise<void>;
}

export async function buildApi(config: Config, log: Logger, database: MasterDatabase, metrics: Metrics) {
  const api = await createApi({ logger: log, metrics, version: VERSION, publicUrl: config.publicUrl });
  healthRoutes(api, {
    version: VERSION,
    pingDatabase: async () => {
      await database.pool.query('SELECT 1');
    },
    metricsText: () => metrics.registry.metrics(),
    metricsContentType: metrics.registry.contentType,
  });
  return api;
}

export async function createPlatform(config: Config, log: Logger): Promise<Platform> {
  const database = await connectMasterDatabase(config, log);
  const metrics = createMetrics();
  let api: ApiServer;
  let worker: OrchestratorWorker;
  try {
    api = await buildApi(config, log, database, metrics);
    await api.ready();
    worker = await startConfiguredWorker(config, log, database.url);
  } catch (err) {
    await database.close();
    throw err;
  }
  return {
    config,
    log,
    database,
    metrics,
    api,
    worker,
    async close() {
      await api.close();
      await worker.stop();
      await database.close();
    },
  };
}
