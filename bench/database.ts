import { chmod, stat } from 'node:fs/promises';
import path from 'node:path';
import type pg from 'pg';
import { openDatabase, type Database } from '../src/db/database.ts';
import { startEmbeddedPostgres } from '../src/db/embedded.ts';
import { migrate } from '../src/db/migrate.ts';
import { dropServiceDatabase, listServiceDatabases } from '../src/services/databases.ts';
import type { Logger } from '../src/observability/logger.ts';

/**
 * A migrated database of the benchmark's own: on TEST_DATABASE_URL's server,
 * else on an embedded server in `tmp` (which it lets the postgres user pass through). `close()` drops it
 * with the service databases and roles made in it (and stops the server).
 */
export async function benchDatabase(
  tmp: string,
  log: Logger,
  options: { max?: number; name?: string } = {},
): Promise<{ db: Database; pool: pg.Pool; url: string; close(): Promise<void> }> {
  if (!process.env.TEST_DATABASE_URL) {
    // Run as root, the embedded server is the postgres user's, which must pass through `tmp` (made
    // 0700 by mkdtemp) to its data directory: as `aiqso up` lets it through the data directory.
    await chmod(tmp, (await stat(tmp)).mode | 0o001);
  }
  const server = process.env.TEST_DATABASE_URL
    ? undefined
    : await startEmbeddedPostgres(path.join(tmp, 'pg'), log);
  const adminUrl = process.env.TEST_DATABASE_URL ?? server!.url;
  const name = `aiqso_bench_${process.pid}${options.name ? `_${options.name}` : ''}`;
  const admin = openDatabase(adminUrl, { max: 1 });
  await admin.pool.query(`CREATE DATABASE ${name}`);
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  const handle = openDatabase(url.toString(), { max: options.max ?? 10 });
  await migrate(handle.pool);
  return {
    db: handle.db,
    pool: handle.pool,
    url: url.toString(),
    async close() {
      // The service databases and roles the platform under test made live beside it on the server
      // (each names this database in its comment; a service's role has its database's name).
      for (const service of await listServiceDatabases(handle.pool))
        await dropServiceDatabase(admin.pool, { name: service, role: service });
      await handle.close();
      await admin.pool.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await admin.close();
      await server?.stop();
    },
  };
}
