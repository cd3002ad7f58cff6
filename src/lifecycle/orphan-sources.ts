import type pg from 'pg';
import { isContainerName, type ComputeDriver } from '../core/compute.ts';
import type { OrphanSource } from '../core/reconcile.ts';
import type { Database } from '../db/database.ts';
import { deleteRoute } from '../edge/routes-store.ts';
import { dropServiceDatabase, listServiceDatabases } from '../services/databases.ts';
import { dropServiceRedisUser, listServiceRedisUsers, type ServicesRedis } from '../services/redis.ts';

/**
 * Where the tenant lifecycle's things live outside the specs, for orphan
 * detection (orchestrator/resync.ts): what no live spec owns is reported, and
 * removed only after AIQSO_ORPHAN_GRACE_SECONDS. Each inventory lists only what
 * this platform made, never a look-alike: containers named by `containerName`
 * (not prepared templates), routes by the resource that wrote them, service
 * databases tagged with this platform's database, Redis users named with this
 * platform's namespace. The names here are the ones the reconcilers' `owns` give.
 */
export const ORPHAN_SOURCES = {
  compute: 'compute',
  routes: 'routes',
  databases: 'databases',
  redis: 'redis',
} as const;

export function computeOrphans(compute: ComputeDriver): OrphanSource {
  return {
    name: ORPHAN_SOURCES.compute,
    list: async () => (await compute.list()).map((c) => c.name).filter(isContainerName),
    remove: (name) => compute.destroy(name),
  };
}

/**
 * Routes by their owner: a service's routes by its tenant service id, a
 * tenant's own by its tenant id. Routes of neither kind are not listed.
 */
export function routeOrphans(db: Database): OrphanSource {
  const owned = (owner: string) =>
    db
      .selectFrom('routes')
      .select(['hostname', 'path_prefix'])
      .where((eb) =>
        eb.or([
          eb('tenant_service_id', '=', owner),
          eb.and([eb('tenant_service_id', 'is', null), eb('tenant_id', '=', owner)]),
        ]),
      )
      .execute();
  return {
    name: ORPHAN_SOURCES.routes,
    async list() {
      const rows = await db
        .selectFrom('routes')
        .select((eb) => eb.fn.coalesce('tenant_service_id', 'tenant_id').as('owner'))
        .where((eb) => eb.or([eb('tenant_service_id', 'is not', null), eb('tenant_id', 'is not', null)]))
        .distinct()
        .execute();
      return rows.map((r) => r.owner).filter((o): o is string => o !== null);
    },
    async remove(owner) {
      for (const route of await owned(owner)) await deleteRoute(db, route.hostname, route.path_prefix);
    },
  };
}

/** Service databases on the master server; a service's database and role share its name. */
export function databaseOrphans(admin: pg.Pool): OrphanSource {
  return {
    name: ORPHAN_SOURCES.databases,
    list: () => listServiceDatabases(admin),
    remove: (name) => dropServiceDatabase(admin, { name, role: name }),
  };
}

/** Service users on the Redis for services; removing one removes its keys too. */
export function redisOrphans(redis: ServicesRedis): OrphanSource {
  return {
    name: ORPHAN_SOURCES.redis,
    list: async () => listServiceRedisUsers(await redis.admin(), redis.namespace),
    remove: async (name) => dropServiceRedisUser(await redis.admin(), name),
  };
}

export function lifecycleOrphanSources(deps: {
  compute: ComputeDriver;
  db: Database;
  admin: pg.Pool;
  redis?: ServicesRedis;
}): OrphanSource[] {
  return [
    computeOrphans(deps.compute),
    routeOrphans(deps.db),
    databaseOrphans(deps.admin),
    ...(deps.redis ? [redisOrphans(deps.redis)] : []),
  ];
}
