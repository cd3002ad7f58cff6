import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, inject } from 'vitest';
import { loadConfig } from '../src/config/load.ts';
import { newId } from '../src/core/ids.ts';
import { connectMasterDatabase, type MasterDatabase } from '../src/db/connect.ts';
import { openDatabase } from '../src/db/database.ts';
import { openToPublic, wallDatabases } from '../src/db/walls.ts';
import { createLogger } from '../src/observability/logger.ts';
import {
  dropServiceDatabase,
  ensureServiceDatabase,
  listServiceDatabases,
  serviceDatabaseName,
} from '../src/services/databases.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import { withDatabase } from './support/urls.ts';

/**
 * Database walls (#20): with a service's own credentials, only its own
 * database lets it in; the platform's database, `postgres`, `template1` and
 * another tenant's service database refuse it. On the embedded server (its
 * pg_hba.conf and REVOKE CONNECT) and on an external server (REVOKE CONNECT;
 * the test server trusts every password, so privileges alone must refuse).
 */
const log = createLogger('silent');

interface Server {
  master: MasterDatabase;
  /** Where a service connects to `database` as `user`. */
  connect(user: string, password: string, database: string): Promise<pg.Client>;
  platformDb: string;
}

function twoServices() {
  const make = (key: string) => {
    const name = serviceDatabaseName(newId('tenant'), key);
    return { name, role: name, password: randomBytes(12).toString('hex') };
  };
  return [make('notes'), make('espocrm')] as const;
}

async function refusedEverywhereButHome(server: Server) {
  const [mine, theirs] = twoServices();
  try {
    for (const s of [mine, theirs]) await ensureServiceDatabase(server.master.pool, s);
    const own = await server.connect(mine.role, mine.password, mine.name);
    expect((await own.query('SELECT current_database() AS d')).rows).toEqual([{ d: mine.name }]);
    await own.end();
    for (const other of [server.platformDb, 'postgres', 'template1', theirs.name]) {
      await expect(server.connect(mine.role, mine.password, other), other).rejects.toThrow(
        /no pg_hba\.conf entry|permission denied for database/,
      );
    }
    // The platform lists its own service databases (orphan detection), tagged with its database's name.
    expect(await listServiceDatabases(server.master.pool)).toEqual(
      expect.arrayContaining([mine.name, theirs.name]),
    );
  } finally {
    for (const s of [mine, theirs]) await dropServiceDatabase(server.master.pool, s);
  }
}

describe('the embedded server', { timeout: 120_000 }, () => {
  let dataDir: string;
  let server: Server;
  beforeAll(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'aiqso-walls-'));
    const config = loadConfig({ AIQSO_DATA_DIR: dataDir }, dataDir);
    const master = await connectMasterDatabase(config, log, { poolSize: 2 });
    const port = Number(new URL(master.url).port);
    server = {
      master,
      platformDb: 'aiqso',
      async connect(user, password, database) {
        const client = new pg.Client({ host: '127.0.0.1', port, user, password, database });
        client.on('error', () => undefined);
        await client.connect();
        return client;
      },
    };
  });
  afterAll(async () => {
    await server?.master.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('lets a service role into its own database only', async () => {
    // pg_hba.conf alone already refuses: the walls below are a second layer.
    await refusedEverywhereButHome(server);
    expect(await wallDatabases(server.master.pool, log)).toEqual({
      closed: expect.arrayContaining(['aiqso', 'postgres', 'template1']) as string[],
      open: [],
    });
    expect(await openToPublic(server.master.pool, ['aiqso', 'postgres', 'template1'])).toEqual([]);
    await refusedEverywhereButHome(server);
  });
});

describe('an external server', { timeout: 120_000 }, () => {
  let platform: TestDatabase;
  let server: Server;
  beforeAll(async () => {
    platform = await createTestDatabase({ max: 2 });
    server = {
      master: { ...platform, mode: 'external' },
      platformDb: platform.name,
      async connect(user, password, database) {
        const url = new URL(withDatabase(platform.url, database));
        url.username = user;
        url.password = password;
        const client = new pg.Client({ connectionString: url.toString() });
        client.on('error', () => undefined);
        await client.connect();
        return client;
      },
    };
  });
  afterAll(() => platform?.drop());

  it('closes the platform and system databases to PUBLIC, idempotently', async () => {
    const first = await wallDatabases(platform.pool, log);
    expect(first.open).toEqual([]);
    expect(first.closed).toEqual([platform.name, 'postgres', 'template1'].sort());
    expect(await wallDatabases(platform.pool, log)).toEqual(first);
    await refusedEverywhereButHome(server);
  });

  it('keeps the way in of a platform role that owns its database without being a superuser', async () => {
    const role = `aiqso_walls_${randomBytes(4).toString('hex')}`;
    const name = `${role}_db`;
    const admin = openDatabase(inject('pgAdminUrl'), { max: 1 });
    await admin.pool.query(`CREATE ROLE ${role} LOGIN`);
    await admin.pool.query(`CREATE DATABASE ${name} OWNER ${role}`);
    const url = new URL(withDatabase(inject('pgAdminUrl'), name));
    url.username = role;
    const own = openDatabase(url.toString(), { max: 1 });
    try {
      const report = await wallDatabases(own.pool, log);
      expect(report.closed).toContain(name);
      expect(await openToPublic(admin.pool, [name])).toEqual([]);
      await own.close();
      const again = openDatabase(url.toString(), { max: 1 });
      expect((await again.pool.query('SELECT current_user AS u')).rows).toEqual([{ u: role }]);
      await again.close();
    } finally {
      await own.close();
      await admin.pool.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await admin.pool.query(`DROP ROLE IF EXISTS ${role}`);
      await admin.close();
    }
  });
});
