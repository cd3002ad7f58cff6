import { createHash } from 'node:crypto';
import type { Database } from '../db/database.ts';
import type { RoutesTable, StepStatus } from '../db/tables.ts';
import type { Selectable } from 'kysely';
import type { EdgeRoute, RouteState } from './route-table.ts';

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
}

/** `rte_` + 26 characters of a hash of the key: deterministic, and shaped like other ids. */
export function routeId(hostname: string, pathPrefix = ''): string {
  const digest = createHash('sha256').update(`${hostname.toLowerCase()}\n${pathPrefix}`).digest();
  const alphabet = '0123456789abcdefghjkmnpqrstvwxyz';
  let body = '';
  for (let i = 0; i < 26; i++) body += alphabet[digest[i]! & 31];
  return `rte_${body}`;
}

export function toEdgeRoute(row: Selectable<RoutesTable>): EdgeRoute {
  return {
    id: row.id,
    hostname: row.hostname,
    pathPrefix: row.path_prefix,
    tenantId: row.tenant_id,
    tenantServiceId: row.tenant_service_id,
    upstream:
      row.upstream_host && row.upstream_port ? { host: row.upstream_host, port: row.upstream_port } : null,
    stripPrefix: row.strip_prefix,
    state: row.state,
    allowCidrs: row.allow_cidrs,
    denyCidrs: row.deny_cidrs,
  };
}

export async function loadRoutes(db: Database): Promise<EdgeRoute[]> {
  const rows = await db.selectFrom('routes').selectAll().execute();
  return rows.map(toEdgeRoute);
}

/** Create or replace the route at (hostname, pathPrefix). Returns its id. */
export async function upsertRoute(db: Database, spec: RouteSpec): Promise<string> {
  const hostname = spec.hostname.toLowerCase();
  const pathPrefix = spec.pathPrefix ?? '';
  const id = routeId(hostname, pathPrefix);
  const values = {
    tenant_id: spec.tenantId ?? null,
    tenant_service_id: spec.tenantServiceId ?? null,
    upstream_host: spec.upstream?.host ?? null,
    upstream_port: spec.upstream?.port ?? null,
    strip_prefix: spec.stripPrefix ?? true,
    state: spec.state ?? 'active',
    allow_cidrs: spec.allowCidrs ?? [],
    deny_cidrs: spec.denyCidrs ?? [],
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

/** A tenant's provisioning steps, for the "preparing your workspace" page. */
export async function tenantSteps(
  db: Database,
  tenantId: string,
): Promise<{ company: string | null; steps: StepStatus[] }> {
  const [tenant, resources] = await Promise.all([
    db.selectFrom('tenants').select('company').where('id', '=', tenantId).executeTakeFirst(),
    db
      .selectFrom('resources')
      .select(['kind', 'steps'])
      .where('tenant_id', '=', tenantId)
      .where('deleted', '=', false)
      .orderBy('kind')
      .orderBy('id')
      .execute(),
  ]);
  return { company: tenant?.company ?? null, steps: resources.flatMap((r) => r.steps ?? []) };
}
