/**
 * The edge's in-memory route table, built by a pure function from rows of
 * the `routes` table. Lookup is two hash probes — host, then first path
 * segment — so its cost does not grow with the number of tenants.
 */

export type RouteState = 'active' | 'provisioning' | 'suspended' | 'unavailable';

export interface EdgeRoute {
  id: string;
  hostname: string;
  /** '' for the host's root (the tenant dashboard), or '/seg'. */
  pathPrefix: string;
  tenantId: string | null;
  tenantServiceId: string | null;
  upstream: { host: string; port: number } | null;
  stripPrefix: boolean;
  state: RouteState;
  allowCidrs: string[];
  denyCidrs: string[];
}

export interface RouteTable {
  hosts: Map<string, Map<string, EdgeRoute>>;
  size: number;
}

export type RouteMatch =
  | { kind: 'platform' }
  | { kind: 'unknown_host' }
  | { kind: 'no_route'; tenantId: string | null }
  | { kind: 'route'; route: EdgeRoute; forwardPath: string };

export function buildRouteTable(routes: readonly EdgeRoute[]): RouteTable {
  const hosts = new Map<string, Map<string, EdgeRoute>>();
  for (const route of routes) {
    const host = route.hostname.toLowerCase();
    let byPrefix = hosts.get(host);
    if (!byPrefix) hosts.set(host, (byPrefix = new Map<string, EdgeRoute>()));
    byPrefix.set(route.pathPrefix, route);
  }
  return { hosts, size: routes.length };
}

/** The first path segment with its slash (`/crm/a` → `/crm`), or '' for `/`. */
function firstSegment(path: string): string {
  const next = path.indexOf('/', 1);
  return next < 0 ? path : path.slice(0, next);
}

const IP_LITERAL = /^(\d{1,3}(\.\d{1,3}){3}|\[[0-9a-f:.]+\])$/;

/** A normalised host that is an address, not a name: the machine itself is being asked. */
export const isIpLiteral = (host: string): boolean => IP_LITERAL.test(host);

/**
 * Match a normalised host and path. The base domain is the platform's own, and
 * so is a bare IP address (health checks and load balancers address the
 * machine, not a tenant); a host absent from the table is unknown — never a
 * fallback to some tenant.
 */
export function matchRoute(table: RouteTable, baseDomain: string, host: string, path: string): RouteMatch {
  if (host === baseDomain || isIpLiteral(host)) return { kind: 'platform' };
  const byPrefix = table.hosts.get(host);
  if (!byPrefix) return { kind: 'unknown_host' };
  const seg = firstSegment(path);
  const service = seg.length > 1 ? byPrefix.get(seg) : undefined;
  if (service) {
    const rest = path.slice(seg.length);
    const forwardPath = service.stripPrefix ? (rest === '' ? '/' : rest) : path;
    return { kind: 'route', route: service, forwardPath };
  }
  const root = byPrefix.get('');
  if (root) return { kind: 'route', route: root, forwardPath: path };
  const any = byPrefix.values().next().value;
  return { kind: 'no_route', tenantId: any?.tenantId ?? null };
}

/** A new table with the routes of `hostnames` replaced by `routes` (those hosts' current rows). */
export function replaceHosts(
  table: RouteTable,
  hostnames: Iterable<string>,
  routes: readonly EdgeRoute[],
): RouteTable {
  const hosts = new Map(table.hosts);
  let size = table.size;
  for (const host of hostnames) {
    size -= hosts.get(host)?.size ?? 0;
    hosts.delete(host);
  }
  for (const [host, byPrefix] of buildRouteTable(routes).hosts) {
    size += byPrefix.size;
    hosts.set(host, byPrefix);
  }
  return { hosts, size };
}

/** Every route of a table, in no particular order. */
export function tableRoutes(table: RouteTable): EdgeRoute[] {
  const out: EdgeRoute[] = [];
  for (const byPrefix of table.hosts.values()) out.push(...byPrefix.values());
  return out;
}
