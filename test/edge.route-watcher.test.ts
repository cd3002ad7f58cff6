import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { routeAt } from '../src/edge/route-table.ts';
import { startRouteWatcher, type RouteWatcher } from '../src/edge/route-watcher.ts';
import { upsertRoute } from '../src/edge/routes-store.ts';
import { createLogger } from '../src/observability/logger.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import { eventually } from './support/upstreams.ts';

let database: TestDatabase;
let watcher: RouteWatcher;
const port = (host: string) => routeAt(watcher.table().hosts.get(host) ?? [], '')?.upstream?.port;

beforeAll(async () => {
  database = await createTestDatabase();
  watcher = await startRouteWatcher({
    db: database.db,
    databaseUrl: database.url,
    log: createLogger('silent'),
    reloadSeconds: 1,
  });
});

afterAll(async () => {
  await watcher?.close();
  await database?.drop();
});

describe('route watcher', () => {
  it('picks up a change whose notification never came, at the next periodic check', async () => {
    await database.pool.query('ALTER TABLE routes DISABLE TRIGGER routes_notify');
    try {
      await upsertRoute(database.db, {
        hostname: 'quiet.localhost',
        upstream: { host: '127.0.0.1', port: 1111 },
      });
      expect(await eventually(() => Promise.resolve(port('quiet.localhost')))).toBe(1111);
    } finally {
      await database.pool.query('ALTER TABLE routes ENABLE TRIGGER routes_notify');
    }
  });

  it('listens again after its connection is killed', async () => {
    await database.pool.query(
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'aiqso-edge-listen' AND datname = current_database()",
    );
    // Wait until a new LISTEN connection exists, then change a route: the notification must arrive.
    await eventually(async () => {
      const { rowCount } = await database.pool.query(
        "SELECT 1 FROM pg_stat_activity WHERE application_name = 'aiqso-edge-listen' AND datname = current_database() AND query LIKE 'LISTEN%'",
      );
      return rowCount ? true : undefined;
    });
    await upsertRoute(database.db, {
      hostname: 'after.localhost',
      upstream: { host: '127.0.0.1', port: 2222 },
    });
    expect(await eventually(() => Promise.resolve(port('after.localhost')))).toBe(2222);
  });
});
