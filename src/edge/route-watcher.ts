import { sql } from 'kysely';
import pg from 'pg';
import type { Database } from '../db/database.ts';
import type { Logger } from '../observability/logger.ts';
import { buildRouteTable, replaceHosts, type RouteTable } from './route-table.ts';
import { EDGE_COLUMNS, loadRoutes, RouteInterner, toEdgeRoute } from './routes-store.ts';

export const ROUTES_CHANNEL = 'aiqso_routes';

export interface RouteWatcherOptions {
  db: Database;
  /** Connection string for the dedicated LISTEN connection. */
  databaseUrl: string;
  log: Logger;
  /** Full reload period; repairs anything a lost notification missed. */
  reloadSeconds: number;
  onChange?: (table: RouteTable) => void;
}

export interface RouteWatcher {
  /** The current table; swapped atomically on every change. */
  table(): RouteTable;
  /** Call `fn` with every new table. */
  subscribe(fn: (table: RouteTable) => void): void;
  /** Reload everything now. */
  reload(): Promise<void>;
  close(): Promise<void>;
}

/**
 * Keeps an in-memory route table in step with the database: LISTEN on a
 * dedicated connection (re-established after a failure, followed by a full
 * reload since notifications sent meanwhile are lost), each notification
 * reloading only the hosts it names, plus a periodic full reload.
 */
export async function startRouteWatcher(options: RouteWatcherOptions): Promise<RouteWatcher> {
  const { db, log } = options;
  let table = buildRouteTable([]);
  // Until the first full load is in, notifications only collect their hosts.
  let loaded = false;
  let closed = false;
  let client: pg.Client | undefined;
  let pending = new Set<string>();
  let flushing: Promise<void> | undefined;
  let reconnectTimer: NodeJS.Timeout | undefined;

  const subscribers: ((t: RouteTable) => void)[] = options.onChange ? [options.onChange] : [];
  const publish = (next: RouteTable) => {
    table = next;
    for (const fn of subscribers) fn(next);
  };

  // A digest of the table, computed by PostgreSQL: the periodic check costs the edge
  // one small query, and only a table that changed is loaded again.
  let loadedDigest = '';
  const digest = async (): Promise<string> => {
    const { rows } = await sql<{ d: string | null }>`
      SELECT md5(string_agg(r::text, ',' ORDER BY r.id)) AS d FROM routes r`.execute(db);
    return rows[0]?.d ?? 'empty';
  };
  const reload = async () => {
    const before = await digest();
    publish(buildRouteTable(await loadRoutes(db)));
    loadedDigest = before;
  };
  const resync = async () => {
    if ((await digest()) !== loadedDigest) await reload();
  };

  const flush = async () => {
    while (pending.size > 0 && !closed) {
      const hosts = [...pending];
      pending = new Set();
      const rows = await db
        .selectFrom('routes')
        .select(EDGE_COLUMNS)
        .where('hostname', 'in', hosts)
        .execute();
      const intern = new RouteInterner();
      publish(
        replaceHosts(
          table,
          hosts,
          rows.map((r) => toEdgeRoute(r, intern)),
        ),
      );
    }
  };

  const onNotify = (msg: pg.Notification) => {
    if (msg.channel !== ROUTES_CHANNEL || !msg.payload) return;
    pending.add(msg.payload);
    if (loaded) startFlush();
  };

  const startFlush = () => {
    flushing ??= flush()
      .catch((err: unknown) => log.error({ err }, 'route reload failed'))
      .finally(() => (flushing = undefined));
  };

  const connect = async (): Promise<void> => {
    const c = new pg.Client({ connectionString: options.databaseUrl, application_name: 'aiqso-edge-listen' });
    c.on('notification', onNotify);
    c.on('error', (err) => {
      log.warn({ err }, 'route LISTEN connection failed; reconnecting');
      lost(c);
    });
    c.on('end', () => lost(c));
    try {
      await c.connect();
      await c.query(`LISTEN ${ROUTES_CHANNEL}`);
    } catch (err) {
      await c.end().catch(() => undefined);
      throw err;
    }
    client = c;
  };

  const lost = (c: pg.Client) => {
    if (closed || client !== c) return;
    client = undefined;
    void c.end().catch(() => undefined);
    retry();
  };

  const retry = () => {
    if (closed || reconnectTimer) return;
    reconnectTimer = setTimeout(() => {
      reconnectTimer = undefined;
      if (closed) return;
      // Notifications sent while disconnected are lost: reload everything after LISTEN.
      connect()
        .then(reload)
        .catch((err: unknown) => {
          log.warn({ err }, 'route LISTEN reconnect failed; retrying');
          retry();
        });
    }, 1000);
  };

  // LISTEN first, then load once: a change committed meanwhile is in the load or
  // in a notification, which is applied after the load (its rows read afresh).
  await connect();
  try {
    await reload();
  } catch (err) {
    closed = true;
    await client?.end().catch(() => undefined);
    throw err;
  }
  loaded = true;
  if (pending.size > 0) startFlush();
  const periodic = setInterval(() => {
    resync().catch((err: unknown) => log.error({ err }, 'periodic route reload failed'));
  }, options.reloadSeconds * 1000);
  periodic.unref();

  return {
    table: () => table,
    subscribe: (fn) => subscribers.push(fn),
    reload,
    async close() {
      closed = true;
      clearInterval(periodic);
      if (reconnectTimer) clearTimeout(reconnectTimer);
      await flushing;
      await client?.end().catch(() => undefined);
    },
  };
}
