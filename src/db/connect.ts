import { platformPorts, type Config } from '../config/load.ts';
import type { Logger } from '../observability/logger.ts';
import { openDatabase, type DatabaseHandle } from './database.ts';
import { startEmbeddedPostgres } from './embedded.ts';
import { migrate, pendingMigrations } from './migrate.ts';

export interface MasterDatabase extends DatabaseHandle {
  /** 'embedded' for the server in `<data>/pg`, 'external' for DATABASE_URL's. */
  mode: 'embedded' | 'external';
  /** Embedded only: true when this process started the server and stops it when it closes. */
  ownsServer?: boolean;
  /** Embedded only: the addresses the server listens on (loopback, and what `listen` asked for). */
  listens?: string[];
}

const EMBEDDED_DB = 'aiqso';

/**
 * Open the master database: the server at DATABASE_URL, or an embedded
 * PostgreSQL in `<data>/pg` that lives exactly as long as this handle.
 * Pending migrations are applied unless `migrate` is false; with
 * `'when-behind'` only when a numbered migration is pending (the job queue's
 * schema is then left to the processes that run jobs, which bring it up to
 * date when they start), so a process on a current database loads no
 * migration machinery.
 */
export async function connectMasterDatabase(
  config: Config,
  log: Logger,
  options: {
    migrate?: boolean | 'when-behind';
    poolSize?: number;
    applicationName?: string;
    /** Embedded only: more addresses for the server to listen on (containers' way to it). */
    listen?: string[];
  } = {},
): Promise<MasterDatabase> {
  const poolOptions = { max: options.poolSize, applicationName: options.applicationName };
  if (config.databaseUrl) {
    const handle = openDatabase(config.databaseUrl, poolOptions);
    return finish({ ...handle, mode: 'external' }, log, options.migrate);
  }
  const server = await startEmbeddedPostgres(config.dataDir, log, {
    listen: options.listen,
    avoidPorts: platformPorts(config),
  });
  try {
    await ensureDatabase(server.url, EMBEDDED_DB);
    const url = server.url.replace(/\/postgres$/, `/${EMBEDDED_DB}`);
    const handle = openDatabase(url, poolOptions);
    log.info(
      { port: server.port, dir: server.dir, listens: server.listens },
      server.shared
        ? 'connected to the embedded PostgreSQL of a running aiqso'
        : 'embedded PostgreSQL started',
    );
    const master: MasterDatabase = {
      ...handle,
      mode: 'embedded',
      ownsServer: !server.shared,
      listens: server.listens,
      async close() {
        await handle.close();
        await server.stop();
        if (!server.shared) log.info('embedded PostgreSQL stopped');
      },
    };
    return await finish(master, log, options.migrate);
  } catch (err) {
    await server.stop();
    throw err;
  }
}

async function finish(
  master: MasterDatabase,
  log: Logger,
  runMigrations: boolean | 'when-behind' = true,
): Promise<MasterDatabase> {
  if (!runMigrations) return master;
  try {
    if (runMigrations === 'when-behind' && (await pendingMigrations(master.pool)).length === 0) return master;
    await migrate(master.pool, (name) => log.info({ migration: name }, 'migration applied'));
  } catch (err) {
    await master.close();
    throw err;
  }
  return master;
}

async function ensureDatabase(adminUrl: string, name: string): Promise<void> {
  const admin = openDatabase(adminUrl, { max: 1 });
  try {
    const { rowCount } = await admin.pool.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    if (!rowCount) await admin.pool.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.close();
  }
}
