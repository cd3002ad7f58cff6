import net from 'node:net';
import type { Logger } from '../observability/logger.ts';

/**
 * Containers on a bridge reach the control-plane host at the bridge's gateway
 * address, but the API (and an external PostgreSQL at a loopback
 * DATABASE_URL) listen on loopback only. The host gateway forwards chosen
 * ports from the gateway address to their loopback listeners, so nothing has
 * to listen on every interface. Every forwarded service still authenticates
 * its callers (API keys, database roles with passwords).
 *
 * The forward runs in the control-plane process: what goes through it is
 * unreachable while that process is down. Dashboards need the API anyway;
 * databases should not depend on it, so an embedded PostgreSQL listens on the
 * gateway address itself (`databaseListens`) and is not forwarded, and an
 * external one on loopback should too (README, "What survives what").
 */
export interface Forward {
  /** What is forwarded, for logs ("api", "database"). */
  name: string;
  port: number;
  target: { host: string; port: number };
}

export interface HostGateway {
  close(): Promise<void>;
}

const LOOPBACK = /^(127\.|::1$|localhost$)/;

const isLoopback = (host: string): boolean => LOOPBACK.test(host);

export async function startHostGateway(
  address: string,
  forwards: Forward[],
  log: Logger,
): Promise<HostGateway> {
  const servers: net.Server[] = [];
  const sockets = new Set<net.Socket>();
  const listening: string[] = [];
  for (const forward of forwards) {
    if (address === forward.target.host) continue;
    const server = net.createServer((client) => {
      const upstream = net.connect(forward.target.port, forward.target.host);
      for (const s of [client, upstream]) {
        sockets.add(s);
        s.on('close', () => sockets.delete(s));
        s.on('error', () => {
          client.destroy();
          upstream.destroy();
        });
      }
      client.pipe(upstream).pipe(client);
    });
    const bound = await new Promise<boolean>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) => {
        // A listener on every interface (or another platform process) already serves it.
        if (err.code === 'EADDRINUSE') resolve(false);
        else reject(err);
      });
      server.listen(forward.port, address, () => resolve(true));
    });
    if (!bound) {
      log.info(
        { forward: forward.name, address, port: forward.port },
        'port already served on the gateway address',
      );
      continue;
    }
    servers.push(server);
    listening.push(`${forward.name} ${address}:${forward.port}`);
  }
  if (listening.length) log.info({ forwards: listening }, 'host gateway forwarding to loopback');
  return {
    async close() {
      for (const s of sockets) s.destroy();
      await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
    },
  };
}

/** Where containers reach the control plane's API, the master database and the Redis for services. */
export interface ContainerReach {
  apiUrl: string;
  db: { host: string; port: number };
  /** Where services reach AIQSO_SERVICES_REDIS_URL's server, when it is set. */
  redis?: { host: string; port: number };
  forwards: Forward[];
}

export function containerReach(options: {
  hostAddress: string;
  http: { bind: string; port: number };
  databaseUrl: string;
  /** Addresses the database server itself listens on, when known (the embedded one's). */
  databaseListens?: string[];
  /** The Redis for services (AIQSO_SERVICES_REDIS_URL); a loopback one is forwarded like the database. */
  servicesRedisUrl?: string;
}): ContainerReach {
  const { hostAddress, http } = options;
  const bracket = (h: string) => (h.includes(':') ? `[${h}]` : h);
  const wildcard = http.bind === '0.0.0.0' || http.bind === '::';
  const forwards: Forward[] = [];
  // Loopback containers (the process driver) use the API's own address.
  const apiHost = isLoopback(hostAddress) ? (wildcard ? '127.0.0.1' : http.bind) : hostAddress;
  if (!isLoopback(hostAddress) && !wildcard)
    forwards.push({ name: 'api', port: http.port, target: { host: http.bind, port: http.port } });
  const url = new URL(options.databaseUrl);
  const dbHost = url.hostname.replace(/^\[|\]$/g, '') || '127.0.0.1';
  const dbPort = Number(url.port || 5432);
  let db = { host: dbHost, port: dbPort };
  if (isLoopback(dbHost) && !isLoopback(hostAddress)) {
    db = { host: hostAddress, port: dbPort };
    if (!options.databaseListens?.includes(hostAddress))
      forwards.push({ name: 'database', port: dbPort, target: { host: dbHost, port: dbPort } });
  }
  let redis: ContainerReach['redis'];
  if (options.servicesRedisUrl) {
    const r = new URL(options.servicesRedisUrl);
    const host = r.hostname.replace(/^\[|\]$/g, '') || '127.0.0.1';
    const port = Number(r.port || 6379);
    redis = { host, port };
    if (isLoopback(host) && !isLoopback(hostAddress)) {
      redis = { host: hostAddress, port };
      forwards.push({ name: 'redis', port, target: { host, port } });
    }
  }
  return { apiUrl: `http://${bracket(apiHost)}:${http.port}`, db, ...(redis ? { redis } : {}), forwards };
}
