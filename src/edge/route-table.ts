/**
 * The edge's in-memory route table, built by a pure function from rows of
 * the `routes` table. Lookup is one hash probe on the host, then a look
 * through that host's few path prefixes, so its cost does not grow with the
 * number of tenants.
 */

import type { RouteAuth, RouteState } from '../core/routes.ts';
import type { RouteTally } from './edge-metrics.ts';
import type { BudgetTally } from './rate-limit.ts';

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
  auth: RouteAuth;
  /** Paths below the prefix an `edge` route serves without a session (`/booking` and what is below it). */
  publicPaths: readonly string[];
  /**
   * The edge's bookkeeping, found from the route without a lookup, each set at the route's first
   * request (routes start with them undefined, so every route object has one shape): its requests
   * since the last metrics scrape (`EdgeMetrics.countRequest`), and its tenant's in-process request
   * budget (`memoryBudget`). The only fields the edge writes.
   */
  tally?: RouteTally;
  tenantBudget?: BudgetTally;
}

/**
 * One host's routes, as path prefix, route, path prefix, route… (`''` is the
 * host's root). A host has a handful of routes: a list of them takes 130 bytes
 * where a Map took 310 (1.7 MB of heap for 10,000 tenants with five routes each), and the
 * prefixes compared are strings shared by every host.
 */
export type HostRoutes = readonly (string | EdgeRoute)[];

export interface RouteTable {
  hosts: Map<string, HostRoutes>;
  size: number;
}

/** The route at exactly `pathPrefix` among one host's routes. */
export function routeAt(routes: HostRoutes, pathPrefix: string): EdgeRoute | undefined {
  for (let i = 0; i < routes.length; i += 2) if (routes[i] === pathPrefix) return routes[i + 1] as EdgeRoute;
  return undefined;
}

/** The routes of one host. */
export function hostRoutes(routes: HostRoutes | undefined): EdgeRoute[] {
  const out: EdgeRoute[] = [];
  if (routes) for (let i = 1; i < routes.length; i += 2) out.push(routes[i] as EdgeRoute);
  return out;
}

export type RouteMatch =
  | { kind: 'platform' }
  | { kind: 'unknown_host' }
  | { kind: 'no_route'; tenantId: string | null }
  | { kind: 'route'; route: EdgeRoute; forwardPath: string };

export function buildRouteTable(routes: readonly EdgeRoute[]): RouteTable {
  const building = new Map<string, (string | EdgeRoute)[]>();
  let size = 0;
  for (const route of routes) {
    const host = route.hostname.toLowerCase();
    let list = building.get(host);
    if (!list) building.set(host, (list = []));
    const at = list.indexOf(route.pathPrefix);
    // A later row for the same host and prefix replaces the earlier one (only prefixes are strings).
    if (at >= 0) list[at + 1] = route;
    else {
      list.push(route.pathPrefix, route);
      size++;
    }
  }
  // Exact copies: a list grown by push keeps spare room (0.8 MB of it for 10,000 hosts).
  const hosts = new Map<string, HostRoutes>();
  for (const [host, list] of building) hosts.set(host, list.slice());
  return { hosts, size };
}

/** The first path segment with its slash (`/crm/a` → `/crm`), or '' for `/`. */
function firstSegment(path: string): string {
  const next = path.indexOf('/', 1);
  return next < 0 ? path : path.slice(0, next);
}

const IP_LITERAL = /^(\d{1,3}(\.\d{1,3}){3}|\[[0-9a-f:.]+\])$/;

/**
 * A normalised host that is an address, not a name: the machine itself is being asked.
 * An address ends in a digit or `]`; a name in a letter (no top-level domain is all
 * digits), so most hosts are answered without the pattern.
 */
export function isIpLiteral(host: string): boolean {
  const last = host.charCodeAt(host.length - 1);
  return (last === 0x5d || (last >= 0x30 && last <= 0x39)) && IP_LITERAL.test(host);
}

/**
 * Match a normalised host and path. The base domain is the platform's own, and
 * so is a bare IP address (health checks and load balancers address the
 * machine, not a tenant); a host absent from the table is unknown — never a
 * fallback to some tenant.
 */
export function matchRoute(table: RouteTable, baseDomain: string, host: string, path: string): RouteMatch {
  if (host === baseDomain || isIpLiteral(host)) return { kind: 'platform' };
  const routes = table.hosts.get(host);
  if (!routes) return { kind: 'unknown_host' };
  const seg = firstSegment(path);
  const service = seg.length > 1 ? routeAt(routes, seg) : undefined;
  if (service) {
    const rest = path.slice(seg.length);
    const forwardPath = service.stripPrefix ? (rest === '' ? '/' : rest) : path;
    return { kind: 'route', route: service, forwardPath };
  }
  const root = routeAt(routes, '');
  if (root) return { kind: 'route', route: root, forwardPath: path };
  const any = routes[1] as EdgeRoute | undefined;
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
    size -= (hosts.get(host)?.length ?? 0) / 2;
    hosts.delete(host);
  }
  for (const [host, list] of buildRouteTable(routes).hosts) {
    size += list.length / 2;
    hosts.set(host, list);
  }
  return { hosts, size };
}

/** Every route of a table, in no particular order. */
export function tableRoutes(table: RouteTable): EdgeRoute[] {
  const out: EdgeRoute[] = [];
  for (const routes of table.hosts.values()) out.push(...hostRoutes(routes));
  return out;
}

/** A public path as routes and templates give it: `/segment[/segment…]`, no dot segments, no encoding. */
export function isPublicPath(path: string): boolean {
  return (
    path.length <= 200 &&
    /^(\/[A-Za-z0-9._~-]+)+$/.test(path) &&
    !path.split('/').some((s) => s === '.' || s === '..')
  );
}

/**
 * Whether a normalised request path is at or below one of `route`'s public
 * paths (which are relative to its prefix): `/cal/booking` and
 * `/cal/booking/x` for `/booking` at `/cal`, not `/cal/bookings`.
 */
export function isPublicRequest(route: EdgeRoute, path: string): boolean {
  const paths = route.publicPaths;
  if (paths.length === 0) return false;
  const prefix = route.pathPrefix;
  for (const p of paths) {
    const at = prefix.length + p.length;
    if (
      path.startsWith(p, prefix.length) &&
      path.startsWith(prefix) &&
      (path.length === at || path[at] === '/')
    )
      return true;
  }
  return false;
}
