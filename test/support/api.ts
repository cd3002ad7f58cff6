import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { assembleApi } from '../../src/platform/api.ts';
import { loadConfig, type Config } from '../../src/config/load.ts';
import type { MasterDatabase } from '../../src/db/connect.ts';
import type { DatabaseHandle } from '../../src/db/database.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { createMetrics } from '../../src/observability/metrics.ts';

/** Configuration for a test: defaults plus `env`, with a private data directory. */
export function testConfig(env: Record<string, string> = {}): Config {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'aiqso-test-data-'));
  return loadConfig({ AIQSO_DATA_DIR: dataDir, ...env });
}

/** The platform's API, fully wired, on a test database (drive it with `api.inject`). */
export async function testApi(database: DatabaseHandle, env: Record<string, string> = {}) {
  const config = testConfig(env);
  const master: MasterDatabase = { ...database, mode: 'external' };
  return { config, ...(await assembleApi(config, createLogger('silent'), master, createMetrics())) };
}
