import { createHash } from 'node:crypto';
import type { Database } from '../db/database.ts';
import type { RoutesTable } from '../db/tables.ts';
import type { Selectable } from 'kysely';
import type { RouteAuth, RouteState } from '../core/routes.ts';
import type { TenantPageFacts } from './pages.ts';
import { isPublicPath, type EdgeRoute } from './route-table.ts';

/**
 * Data access for the `routes` table: what edges read, and what reconcilers
 * write. A route's id is derived from its (hostname, path prefix) key, so a
 * reconciler that runs twice writes the same row, and the trigger on the
 * table notifies every edge (channel `aiqso_routes`).
 */

export interface RouteSpec {
  hostname: string;
  pathPrefix?: string;
  tenantId?: string | null;
  tenantServiceId?: string | null;
  upstream?: { host: string; port: number } | null;
  stripPrefix?: boolean;
  state?: RouteState;
  allowCidrs?: string[];
  denyCidrs?: string[];
  /** Default: `app` for a host's root route (the tenant dashboard signs in itself), `edge` for a service path. */
  auth?: RouteAuth;
  publicPaths?: string[];
}

/** `rte_` + 26 characters of a hash of the key: deterministic, and shaped like other ids. */
export function routeId(hostname: string, pathPrefix = ''): string {
  const digest = createHash('sha256').update(`${hostname.toLowerCase()}\n${pathPrefix}`).digest();
  const alphabet = '0123456789abcdefghjkmnpqrstvwxyz';
  let body = '';
  for (let i = 0; i < 26; i++) body += alphabet[digest[i]! & 31];
  return `rte_${body}`;
}

/** The columns an edge needs (no timestamps: 50,000 Date objects are memory for nothing). */
export const EDGE_COLUMNS = [
  'id',
  'hostname',
  'path_prefix',
  'tenant_id',
  'tenant_service_id',
  'upstream_host',
  'upstream_port',
  'strip_prefix',
  'state',
  'allow_cidrs',
  'deny_cidrs',
  'auth',
  'public_paths',
] as const;

type EdgeRow = Pick<Selectable<RoutesTable>, (typeof EDGE_COLUMNS)[number]>;

const NONE: string[] = [];
Object.freeze(NONE);

/**
 * Shares equal values among the routes of one load: a tenant's hostname and
 * id repeat on each of its routes, and upstream hosts (and often the whole
 * address) repeat across tenants. Shared, a 50,000-route table is smaller.
 */
export class RouteInterner {
  private readonly strings = new Map<string, string>();
  private readonly upstreams = new Map<string, { host: string; port: number }>();

  string(s: string): string {
    const known = this.strings.get(s);
    if (known !== undefined) return known;
    this.strings.set(s, s);
    return s;
  }

  upstream(host: string, port: number): { host: string; port: number } {
    const key = `${host}:${port}`;
    let upstream = this.upstreams.get(key);
    if (!upstream) this.upstreams.set(key, (upstream = { host: this.string(host), port }));
    return upstream;
  }
}

/** Row → route, sharing what `intern` has seen before. */
export function toEdgeRoute(row: EdgeRow, intern = new RouteInterner()): EdgeRoute {
  return {
    id: row.id,
    hostname: intern.string(row.hostname),
    pathPrefix: intern.string(row.path_prefix),
    tenantId: row.tenant_id && intern.string(row.tenant_id),
    tenantServiceId: row.tenant_service_id,
    upstream:
      row.upstream_host && row.upstream_port ? intern.upstream(row.upstream_host, row.upstream_port) : null,
    stripPrefix: row.strip_prefix,
    state: row.state,
    allowCidrs: row.allow_cidrs.length ? row.allow_cidrs : NONE,
    denyCidrs: row.deny_cidrs.length ? row.deny_cidrs : NONE,
    auth: row.auth,
    publicPaths: row.public_paths.length ? row.public_paths : NONE,
    tally: undefined,
    tenantBudget: undefined,
  };
}

/**
 * Every route, read in pages of `pageSize` rows from one snapshot. Pages keep
 * the rows in flight few: a single 50,000-row result would be promoted to the
 * old generation before it became garbage, and the edge's resident memory
 * would keep that high-water mark for good.
 */
export async function loadRoutes(db: Database, pageSize = 2000): Promise<EdgeRoute[]> {
  const intern = new RouteInterner();
  const out: EdgeRoute[] = [];
  await db
    .transaction()
    .setIsolationLevel('repeatable read')
    .execute(async (trx) => {
      let after = '';
      for (;;) {
        const rows = await trx
          .selectFrom('routes')
          .select(EDGE_COLUMNS)
          .where('id', '>', after)
          .orderBy('id')
          .limit(pageSize)
          .execute();
        for (const r of rows) out.push(toEdgeRoute(r, intern));
        if (rows.length < pageSize) return;
        after = rows[rows.length - 1]!.id;
      }
    });
  return out;
}

/** Create or replace the route at (hostname, pathPrefix). Returns its id. */
export async function upsertRoute(db: Database, spec: RouteSpec): Promise<string> {
  const hostname = spec.hostname.toLowerCase();
  const pathPrefix = spec.pathPrefix ?? '';
  const id = routeId(hostname, pathPrefix);
  const bad = spec.publicPaths?.find((p) => !isPublicPath(p));
  if (bad !== undefined) throw new Error(`not a public path: ${JSON.stringify(bad)}`);
  const values = {
    tenant_id: spec.tenantId ?? null,
    tenant_service_id: spec.tenantServiceId ?? null,
    upstream_host: spec.upstream?.host ?? null,
    upstream_port: spec.upstream?.port ?? null,
    strip_prefix: spec.stripPrefix ?? true,
    state: spec.state ?? 'active',
    allow_cidrs: spec.allowCidrs ?? [],
    deny_cidrs: spec.denyCidrs ?? [],
    auth: spec.auth ?? (pathPrefix === '' ? 'app' : 'edge'),
    public_paths: spec.publicPaths ?? [],
  };
  await db
    .insertInto('routes')
    .values({ id, hostname, path_prefix: pathPrefix, ...values })
    .onConflict((oc) =>
      oc.columns(['hostname', 'path_prefix']).doUpdateSet({ ...values, updated_at: new Date() }),
    )
    .execute();
  return id;
}

/** Set the state of every route of a tenant (suspend, resume, mark provisioning). */
export async function setTenantRouteState(
  db: Database,
  tenantId: string,
  state: RouteState,
): Promise<number> {
  const result = await db
    .updateTable('routes')
    .set({ state, updated_at: new Date() })
    .where('tenant_id', '=', tenantId)
    .where('state', '!=', state)
    .executeTakeFirst();
  return Number(result.numUpdatedRows);
}

export async function deleteRoute(db: Database, hostname: string, pathPrefix = ''): Promise<boolean> {
  const result = await db
    .deleteFrom('routes')
    .where('hostname', '=', hostname.toLowerCase())
    .where('path_prefix', '=', pathPrefix)
    .executeTakeFirst();
  return Number(result.numDeletedRows) > 0;
}

/**
 * What the edge's pages say of a tenant: its provisioning steps for the
 * "preparing your workspace" page, its status, reason and purge date for the
 * suspended and cancelled ones.
 */
export async function tenantPageFacts(db: Database, tenantId: string): Promise<TenantPageFacts> {
  const [tenant, resources] = await Promise.all([
    db
      .selectFrom('tenants')
      .select(['company', 'status', 'status_reason', 'purge_after'])
      .where('id', '=', tenantId)
      .executeTakeFirst(),
    db
      .selectFrom('resources')
      .select(['kind', 'steps'])
      .where('tenant_id', '=', tenantId)
      .where('deleted', '=', false)
      .orderBy('kind')
      .orderBy('id')
      .execute(),
  ]);
  return {
    company: tenant?.company ?? null,
    status: tenant?.status ?? null,
    statusReason: tenant?.status_reason ?? null,
    purgeAfter: tenant?.purge_after ?? null,
    steps: resources.flatMap((r) => r.steps ?? []),
  };
}

/** How long one read of a tenant's page facts answers every request for its "preparing" or suspended page. */
export const FACTS_TTL_MS = 1000;

/**
 * `tenantPageFacts` shared between requests: one read per tenant per `ttlMs`, and
 * requests that arrive while it runs wait for it. Anyone may load a preparing
 * or suspended workspace's address as often as they like, so without this
 * every such request would cost the master database two queries. The page is
 * at most `ttlMs` behind the tenant.
 */
export function sharedTenantFacts(
  read: (tenantId: string) => ReturnType<typeof tenantPageFacts>,
  ttlMs = FACTS_TTL_MS,
  now: () => number = Date.now,
): (tenantId: string) => ReturnType<typeof tenantPageFacts> {
  const recent = new Map<string, { at: number; answer: ReturnType<typeof tenantPageFacts> }>();
  let swept = now();
  return (tenantId) => {
    const t = now();
    const hit = recent.get(tenantId);
    if (hit && t - hit.at < ttlMs) return hit.answer;
    // Expired entries go once per ttlMs: the map holds about the tenants read in the last two.
    if (t - swept >= ttlMs) {
      for (const [id, entry] of recent) if (t - entry.at >= ttlMs) recent.delete(id);
      swept = t;
    }
    const answer = read(tenantId);
    recent.set(tenantId, { at: t, answer });
    // A failed read is not kept: the next request tries again.
    answer.catch(() => {
      if (recent.get(tenantId)?.answer === answer) recent.delete(tenantId);
    });
    return answer;
  };
}
