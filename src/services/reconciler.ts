import { emitServiceEvent } from '../events/emit.ts';
import { outboxHas } from '../orchestrator/outbox.ts';
import { sql } from 'kysely';
import type pg from 'pg';
import { configDigest, containerName, type ComputeDriver, type DriverKind } from '../core/compute.ts';
import { DomainError } from '../core/errors.ts';
import {
  pollDelayMs,
  requeueAfter,
  type Reconciler,
  type ReconcileStep,
  type StepContext,
} from '../core/reconcile.ts';
import type { Database } from '../db/database.ts';
import { deleteRoute, upsertRoute } from '../edge/routes-store.ts';
import { TENANT_SERVICE_KIND } from '../core/kinds.ts';
import { routeStateFor } from '../core/tenants.ts';
import { deleteResource } from '../orchestrator/resources.ts';
import {
  dropServiceDatabase,
  ensureServiceDatabase,
  serviceDatabaseExists,
  serviceDatabaseName,
} from './databases.ts';
import { containerSpecFor, loadDeployment, probe, type Deployment } from './deploy-context.ts';
import {
  dropServiceRedisUser,
  ensureServiceRedisUser,
  serviceRedisAccess,
  serviceRedisUser,
  serviceRedisUserState,
  type ServicesRedis,
} from './redis.ts';
import { lookWhenAnswering } from '../health/watch.ts';
import { findFinalBackup, takeFinalBackup } from './final-backup.ts';
import {
  CAPACITY_POLL,
  CAPACITY_WAIT,
  placeOrRefuse,
  wakeCapacityWaiters,
  type PlacementOptions,
} from './hosts.ts';
import { failing, readyEmailKey, routeState, sendReadyEmail } from './step-support.ts';
import { tenantServiceSpecSchema, type TenantServiceSpec } from './subscriptions.ts';

/**
 * The tenant service reconciler: the seed's Service Deployment Flow as named,
 * idempotent steps — capacity, container, database, Redis user, start, route, health,
 * active, "service ready" email. An unsubscribed service (spec.removeAfter
 * set) is stopped, unrouted and dumped once; after its grace period the
 * `retire` step deletes the resource, whose removal destroys the container
 * and database. Invariant: a route points at a service only while it is
 * subscribed; the database outlives the container until the final removal.
 */
export interface TenantServiceReconcilerDeps {
  db: Database;
  /** The master database's pool: creates and drops service databases and roles. */
  admin: pg.Pool;
  compute: ComputeDriver;
  baseDomain: string;
  publicUrl: string;
  repoRoot: string;
  dataDir: string;
  /** Where containers reach the master database server (deps.reach.db). */
  dbReach: { host: string; port: number };
  /** Where the control plane itself reaches it (pg_dump). */
  dbLocal: { host: string; port: number };
  /** The service's root secret (its database password), sealed at rest. */
  rootSecret(tenantServiceId: string): Promise<string>;
  /** The Redis for services (AIQSO_SERVICES_REDIS_URL), when configured. */
  redis?: ServicesRedis;
  placement: PlacementOptions & { driver: DriverKind };
  healthPollMs?: number;
}

type Ctx = StepContext<TenantServiceSpec>;

export function tenantServiceReconciler(deps: TenantServiceReconcilerDeps): Reconciler<TenantServiceSpec> {
  // Read once by the observes of a run (StepContext.look), afresh by the steps that act.
  const load = (ctx: Ctx) =>
    ctx.look('deployment', () => loadDeployment(deps.db, ctx.resource.id, ctx.resource.spec));
  const removing = (ctx: Ctx) => ctx.resource.spec.removeAfter !== null;
  const hostname = (d: Deployment) => `${d.spec.slug}.${deps.baseDomain}`;
  const info = (ctx: Ctx, d: Deployment) => ctx.look('container', () => deps.compute.status(d.containerName));
  const wantsRunning = (ctx: Ctx, d: Deployment) =>
    !removing(ctx) && d.tenantStatus !== 'cancelled' && d.tenantStatus !== 'purged';
  const setStatus = async (id: string, status: 'deploying' | 'active' | 'failed', reason: string | null) => {
    await deps.db.transaction().execute(async (trx) => {
      const before = await trx
        .selectFrom('tenant_services')
        .select('status')
        .where('id', '=', id)
        .forUpdate()
        .executeTakeFirst();
      const changed = await trx
        .updateTable('tenant_services')
        .set({ status, status_reason: reason, updated_at: sql`now()` })
        .where('id', '=', id)
        .where('status', 'not in', ['removing', 'removed'])
        .executeTakeFirst();
      if (changed.numUpdatedRows === 0n || before?.status === status) return;
      if (status === 'active') await emitServiceEvent(trx, 'service.ready', id);
      if (status === 'failed') await emitServiceEvent(trx, 'service.failed', id);
    });
  };
  const redisOf = async (d: Deployment) => {
    if (!d.template.database.redis) return undefined;
    return serviceRedisAccess(needRedis(d), d.tenantId, d.template.key, await deps.rootSecret(d.id));
  };
  const needRedis = (d: Deployment): ServicesRedis => {
    if (!deps.redis)
      throw new DomainError(
        'deploy_failed',
        `${d.template.key} needs a Redis user of its own, and this platform has no Redis for services (AIQSO_SERVICES_REDIS_URL is not set)`,
      );
    return deps.redis;
  };
  const containerSpec = async (d: Deployment) =>
    containerSpecFor(
      d,
      {
        driver: deps.compute.kind,
        repoRoot: deps.repoRoot,
        publicUrl: deps.publicUrl,
        dbReach: deps.dbReach,
        root: await deps.rootSecret(d.id),
      },
      await redisOf(d),
    );

  const steps: ReconcileStep<TenantServiceSpec>[] = [
    {
      // Nothing to create; on deletion it runs last, once the container and database are gone.
      name: 'service record',
      observe: () => Promise.resolve('ok' as const),
      apply: () => Promise.resolve(),
      async remove(ctx) {
        await deps.db
          .updateTable('tenant_services')
          .set({
            status: 'removed',
            status_reason: 'container and database destroyed',
            removed_at: sql`now()`,
            updated_at: sql`now()`,
          })
          .where('id', '=', ctx.resource.id)
          .execute();
        // Its room is free: whatever waits for room is placed now, without anyone acting.
        await wakeCapacityWaiters(deps.db);
      },
    },
    {
      // A restore of this service is under way (src/backup/restore.ts): nothing here may start,
      // stop or re-create it until the restore's row says it ended.
      name: 'restore hold',
      async observe(ctx) {
        const running = await deps.db
          .selectFrom('restores')
          .select('id')
          .where('tenant_service_id', '=', ctx.resource.id)
          .where('status', '=', 'running')
          .executeTakeFirst();
        return running ? 'missing' : 'ok';
      },
      apply: () => Promise.resolve(requeueAfter(2000, 'the restore of this service to end')),
    },
    {
      // No room on the host (memory request, disk, CPUs, containers, an address) is a wait, not a
      // failure: the status says what is short, the operators get one alert, and the service is
      // deployed by itself once there is room.
      name: 'capacity check',
      async observe(ctx) {
        if (removing(ctx)) return 'ok';
        return (await info(ctx, await load(ctx))).state === 'missing' ? 'missing' : 'ok';
      },
      async apply(ctx) {
        const d = await load(ctx);
        const refusal = await placeOrRefuse(deps.db, deps.placement, {
          resource: ctx.resource,
          waitingSince: ctx.waitingSince,
          need: d.spec.resources,
          what: d.template.key,
          owner: `service ${d.template.key} of tenant ${d.spec.slug}`,
          addressRoom: () => deps.compute.addressRoom?.() ?? Promise.resolve(undefined),
        });
        if (refusal === null) return;
        await setStatus(d.id, 'deploying', `waiting for room on the host: ${refusal}`);
        return requeueAfter(pollDelayMs(ctx.waitingSince, CAPACITY_POLL), `${CAPACITY_WAIT}${refusal}`);
      },
    },
    {
      // An image is pulled once per host and shared: its own step, so a long pull shows as running.
      name: 'image pull',
      async observe(ctx) {
        if (removing(ctx)) return 'ok';
        const d = await load(ctx);
        if (d.template.kind !== 'image' || !deps.compute.images) return 'ok';
        return (await deps.compute.images.cached(d.template.image)) ? 'ok' : 'missing';
      },
      async apply(ctx) {
        const d = await load(ctx);
        if (d.template.kind !== 'image' || !deps.compute.images) return;
        await deps.compute.images.pull(d.template.image, (p) =>
          ctx.progress(`${p.stage} ${p.detail}`.trim()),
        );
      },
    },
    {
      name: 'container',
      async observe(ctx) {
        if (removing(ctx)) return 'ok';
        const d = await load(ctx);
        const c = await info(ctx, d);
        if (c.state === 'missing') return 'missing';
        const want = d.spec.resources;
        const drifted =
          (c.limits?.memoryMb !== undefined && c.limits.memoryMb !== want.memory_mb) ||
          (c.limits?.cores !== undefined && c.limits.cores !== want.cores) ||
          // Runs (or would start) with another configuration: its database endpoint moved, new limits…
          c.configDigest !== configDigest(await containerSpec(d));
        return drifted ? 'drifted' : 'ok';
      },
      async apply(ctx, found) {
        const d = await load(ctx);
        if (d.status === 'pending') await setStatus(d.id, 'deploying', null);
        const made = ctx.saw('container', await deps.compute.ensure(await containerSpec(d)));
        // A new environment or limits reach a running workload only through a restart.
        if (found === 'drifted' && made.state === 'running')
          ctx.saw('container', await deps.compute.restart(d.containerName));
      },
      async remove(ctx) {
        await deps.compute.destroy((await load(ctx)).containerName);
      },
    },
    {
      name: 'database',
      async observe(ctx) {
        const d = await load(ctx);
        if (!d.database || removing(ctx)) return 'ok';
        return (await serviceDatabaseExists(deps.admin, d.database.name)) ? 'ok' : 'missing';
      },
      async apply(ctx) {
        const d = await load(ctx);
        if (!d.database) return;
        await ensureServiceDatabase(deps.admin, { ...d.database, password: await deps.rootSecret(d.id) });
      },
      async remove(ctx) {
        const d = await load(ctx);
        if (d.database) await dropServiceDatabase(deps.admin, d.database);
      },
    },
    {
      // Its own ACL user on the Redis for services, limited to its key and channel prefix. Kept through
      // the grace period like the database; on removal its keys go, then the user (and its connections).
      name: 'redis user',
      async observe(ctx) {
        const d = await load(ctx);
        // Not looked at while the service is meant to be down (unsubscribed, its tenant cancelled or
        // purged): its removal then always runs, and clears keys even when the user itself is gone.
        if (!d.template.database.redis || !wantsRunning(ctx, d)) return 'ok';
        const access = (await redisOf(d))!;
        return serviceRedisUserState(await needRedis(d).admin(), access.user, access.password);
      },
      async apply(ctx) {
        const d = await load(ctx);
        const access = await redisOf(d);
        if (access) await ensureServiceRedisUser(await needRedis(d).admin(), access.user, access.password);
      },
      async remove(ctx) {
        const d = await load(ctx);
        // Without the setting the platform cannot reach that Redis any more: nothing it can remove.
        if (!d.template.database.redis || !deps.redis) return;
        await dropServiceRedisUser(
          await deps.redis.admin(),
          serviceRedisUser(deps.redis.namespace, d.tenantId, d.template.key),
        );
      },
    },
    {
      name: 'running',
      async observe(ctx) {
        const d = await load(ctx);
        const c = await info(ctx, d);
        if (c.state === 'missing') return removing(ctx) ? 'ok' : 'missing';
        return (c.state === 'running') === wantsRunning(ctx, d) ? 'ok' : 'drifted';
      },
      async apply(ctx) {
        const d = await load(ctx);
        if (wantsRunning(ctx, d)) ctx.saw('container', await deps.compute.start(d.containerName));
        else await deps.compute.stop(d.containerName);
      },
      async remove(ctx) {
        await deps.compute.stop((await load(ctx)).containerName);
      },
    },
    {
      name: 'route',
      async observe(ctx) {
        const d = await load(ctx);
        const route = await deps.db
          .selectFrom('routes')
          .select(['upstream_host', 'upstream_port', 'state', 'strip_prefix', 'auth', 'public_paths'])
          .where('hostname', '=', hostname(d))
          .where('path_prefix', '=', d.template.route.path)
          .executeTakeFirst();
        if (removing(ctx)) return route ? 'drifted' : 'ok';
        if (!route) return 'missing';
        const endpoint = (await info(ctx, d)).endpoint;
        const same =
          route.state === routeState(d) &&
          route.strip_prefix === d.template.route.strip_prefix &&
          route.auth === d.template.route.auth &&
          route.public_paths.join('\n') === d.template.route.public_paths.join('\n') &&
          route.upstream_host === (endpoint?.host ?? null) &&
          route.upstream_port === (endpoint?.port ?? null);
        return same ? 'ok' : 'drifted';
      },
      async apply(ctx) {
        const d = await load(ctx);
        if (removing(ctx)) {
          await deleteRoute(deps.db, hostname(d), d.template.route.path);
          return;
        }
        await upsertRoute(deps.db, {
          hostname: hostname(d),
          pathPrefix: d.template.route.path,
          tenantId: d.tenantId,
          tenantServiceId: d.id,
          upstream: (await info(ctx, d)).endpoint ?? null,
          stripPrefix: d.template.route.strip_prefix,
          state: routeState(d),
          auth: d.template.route.auth,
          publicPaths: d.template.route.public_paths,
        });
      },
      async remove(ctx) {
        const d = await load(ctx);
        await deleteRoute(deps.db, hostname(d), d.template.route.path);
      },
    },
    {
      name: 'final backup',
      async observe(ctx) {
        if (!removing(ctx)) return 'ok';
        const d = await load(ctx);
        if (!d.database || !(await serviceDatabaseExists(deps.admin, d.database.name))) return 'ok';
        return (await findFinalBackup(deps.db, d.id)) ? 'ok' : 'missing';
      },
      async apply(ctx) {
        const d = await load(ctx);
        if (!d.database) return;
        await takeFinalBackup(deps.db, deps.dataDir, {
          tenantId: d.tenantId,
          tenantSlug: d.spec.slug,
          tenantServiceId: d.id,
          service: d.template.key,
          database: { ...deps.dbLocal, ...d.database, password: await deps.rootSecret(d.id) },
        });
      },
    },
    {
      name: 'health check',
      async observe(ctx) {
        const d = await load(ctx);
        if (!wantsRunning(ctx, d)) return 'ok';
        // Once a service has answered, its health is the health monitor's (src/health/): a recreate or
        // restart here must not turn a service the monitor is repairing into a failed deployment.
        if (d.status === 'active' || d.status === 'degraded') return 'ok';
        return (await probe(await info(ctx, d), d.template.health.path)) === d.template.health.status
          ? 'ok'
          : 'missing';
      },
      // Observe just probed and saw no healthy answer: look again shortly, without holding a worker
      // slot, until the template's timeout has passed since the first look.
      async apply(ctx) {
        const d = await load(ctx);
        const { path, status, timeout_seconds } = d.template.health;
        const c = await info(ctx, d);
        // A workload that exited (an image's entrypoint) will not answer: say why at once.
        if (c.state === 'stopped' && d.template.kind === 'image') {
          throw new DomainError(
            'deploy_failed',
            `the container stopped before answering GET ${path}: its workload exited` +
              (c.lastOutput ? ` (last output: ${c.lastOutput})` : ''),
          );
        }
        const waited = ctx.waitingSince ? Date.now() - ctx.waitingSince.getTime() : 0;
        if (waited < timeout_seconds * 1000) {
          const poll = pollDelayMs(ctx.waitingSince, { minMs: deps.healthPollMs ?? 150, maxMs: 2000 });
          // Watched meanwhile, off the slots, as the tenant's dashboard is.
          return lookWhenAnswering(poll, `GET ${path} to answer ${status}`, c.endpoint, path, status);
        }
        const last = await probe(c, path);
        if (last === status) return;
        const seen = typeof last === 'number' ? `last answer ${last}` : `last error: ${last}`;
        throw new DomainError(
          'deploy_failed',
          `GET ${path} did not answer ${status} within ${timeout_seconds} s (${seen})`,
        );
      },
    },
    {
      name: 'activate',
      async observe(ctx) {
        if (removing(ctx)) return 'ok';
        const status = (await load(ctx)).status;
        return status === 'active' || status === 'degraded' ? 'ok' : 'missing';
      },
      async apply(ctx) {
        const d = await load(ctx);
        await setStatus(d.id, 'active', null);
        await deps.db
          .updateTable('routes')
          .set({ state: routeStateFor(d.tenantStatus), updated_at: new Date() })
          .where('tenant_service_id', '=', d.id)
          .execute();
      },
    },
    {
      name: 'ready email',
      async observe(ctx) {
        if (removing(ctx)) return 'ok';
        return (await outboxHas(deps.db, readyEmailKey(ctx.resource.id, ctx.resource.spec)))
          ? 'ok'
          : 'missing';
      },
      async apply(ctx) {
        const d = await load(ctx);
        await sendReadyEmail(deps, d);
      },
    },
    {
      name: 'retire',
      observe(ctx) {
        const after = ctx.resource.spec.removeAfter;
        return Promise.resolve(after !== null && Date.parse(after) <= Date.now() ? 'missing' : 'ok');
      },
      async apply(ctx) {
        // The removal runs next: the steps' inverses destroy the container and the database.
        await deleteResource(deps.db, { kind: TENANT_SERVICE_KIND, id: ctx.resource.id });
      },
    },
  ];

  return {
    kind: TENANT_SERVICE_KIND,
    parseSpec: (raw) => tenantServiceSpecSchema.parse(raw),
    steps: steps.map((s) => failing(deps.db, s)),
    // As lifecycle/orphan-sources.ts names them: its container, its routes, its database and Redis user
    // (named as at subscription).
    owns: (resource) =>
      resource.tenantId
        ? [
            { source: 'compute', name: containerName(resource.tenantId, resource.spec.service) },
            { source: 'routes', name: resource.id },
            { source: 'databases', name: serviceDatabaseName(resource.tenantId, resource.spec.service) },
            ...(deps.redis
              ? [
                  {
                    source: 'redis',
                    name: serviceRedisUser(deps.redis.namespace, resource.tenantId, resource.spec.service),
                  },
                ]
              : []),
          ]
        : [],
  };
}
