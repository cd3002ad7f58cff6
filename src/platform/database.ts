import type { Config } from '../config/load.ts';
import { connectMasterDatabase, type MasterDatabase } from '../db/connect.ts';
import { loadSecretBox } from '../identity/master-key.ts';
import { assertMasterKeyOpens } from '../identity/rotate-master-key.ts';
import type { Logger } from '../observability/logger.ts';

/**
 * The master database, checked: the master key must open the secrets it holds
 * (an edge signs logins with them, a worker deploys with them).
 */
export async function openCheckedDatabase(
  config: Config,
  log: Logger,
  options?: Parameters<typeof connectMasterDatabase>[2],
): Promise<MasterDatabase> {
  const database = await connectMasterDatabase(config, log, options);
  try {
    await assertMasterKeyOpens(
      database.db,
      await loadSecretBox({ configured: config.masterKey, dataDir: config.dataDir }),
    );
    return database;
  } catch (err) {
    await database.close();
    throw err;
  }
}
