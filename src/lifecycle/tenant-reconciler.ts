import { emitTenantEvent } from '../events/emit.ts';
import { sql } from 'kysely';
import { z } from 'zod';
import {
  configDigest,
  containerName,
  type ComputeDriver,
  type ContainerInfo,
  type ContainerSpec,
  type DriverKind,
} from '../core/compute.ts';
import { DomainError } from '../core/errors.ts';
import { tenantUrl } from '../core/services.ts';
import {
  CAPACITY_POLL,
  CAPACITY_WAIT,
  DASHBOARD_CLAIM,
  placeOrRefuse,
  wakeCapacityWaiters,
  type PlacementOptions,
} from '../services/hosts.ts';
import {
  pollDelayMs,
  requeueAfter,
  type Reconciler,
  type ReconcileStep,
  type StepContext,
} from '../core/reconcile.ts';
import type { Database } from '../db/database.ts';
import type { TenantStatus } from '../core/tenants.ts';
import { deleteRoute, upsertRoute } from '../edge/routes-store.ts';
import { appendAuditIn } from '../identity/audit.ts';
import { outboxHas, writeOutbox } from '../orchestrator/outbox.ts';
import { tenantOwnerEmail } from '../db/owner.ts';
import { routeStateFor } from '../core/tenants.ts';
import { TENANT_KIND } from '../core/kinds.ts';
import { lookWhenAnswering } from '../health/watch.ts';
import { finishPurge } from './purge.ts';

/**
 * The tenant reconciler: the seed's Customer Provisioning Flow as named,
 * idempotent steps. Each step looks first (deterministic names from the
 * tenant id), then creates or repairs. Deletion (purge) runs the inverses in
 * reverse order.
 */

const specSchema = z.object({ slug: z.string(), company: z.string() });
export type TenantSpec = z.infer<typeof specSchema>;

export interface TenantReconcilerDeps {
  db: Database;
  compute: ComputeDriver;
  baseDomain: string;
  publicUrl: string;
  /** How a dashboard container reaches the control plane's API. */
  apiUrlForContainers: string;
  /** Directory of the dashboard app (`dashboard/`). */
  dashboardDir: string;
  /** The dashboard's tenant-scoped API key, created once and kept sealed. */
  dashboardKey(tenantId: string): Promise<string>;
  revokeDashboardKey(tenantId: string): Promise<void>;
  /** Start removing the tenant's services; resolves to how many are not yet removed. */
  removeServices(tenantId: string): Promise<number>;
  healthTimeoutMs: number;
  /**
   * Which hosts the dashboard may go on (the configured driver's), where this
   * machine keeps data, and what a host may promise (reserve, overcommit).
   */
  placement: PlacementOptions & { driver: DriverKind };
}

const DASHBOARD = {
  memoryMb: DASHBOARD_CLAIM.memory_mb,
  cores: DASHBOARD_CLAIM.cores,
  diskGb: DASHBOARD_CLAIM.disk_gb,
} as const;
const DASHBOARD_PORT = 3000;
/** How soon a dashboard that did not answer yet is looked at again (see pollDelayMs). */
const HEALTH_POLL = { minMs: 150, maxMs: 2000 };
/** How soon a purge waiting for its services' removal looks again. */
const PURGE_POLL_MS = 1000;

/** The TCP port of the API URL containers use. */
const apiPort = (url: string) => {
  const u = new URL(url);
  return Number(u.port || (u.protocol === 'https:' ? 443 : 80));
};

type Ctx = StepContext<TenantSpec>;

/**
 * A value made once per reconcile run (the steps of a run share their
 * `ctx.resource`), made again after a failure; `set` replaces the run's copy.
 */
function perRun<T>(make: (ctx: Ctx) => Promise<T>) {
  const runs = new WeakMap<object, Promise<T>>();
  return {
    get(ctx: Ctx): Promise<T> {
      let made = runs.get(ctx.resource);
      if (!made) {
        made = make(ctx);
        runs.set(ctx.resource, made);
        made.catch(() => runs.delete(ctx.resource));
      }
      return made;
    },
    set(ctx: Ctx, value: T): void {
      runs.set(ctx.resource, Promise.resolve(value));
    },
  };
}

export function tenantReconciler(deps: TenantReconcilerDeps): Reconciler<TenantSpec> {
  const name = (ctx: Ctx) => containerName(ctx.resource.id, 'dashboard');
  const hostname = (ctx: Ctx) => `${ctx.resource.spec.slug}.${deps.baseDomain}`;
  // The tenant's status and host, read once per run by observes and applies alike; placement keeps
  // the run's copy current. A status that changes meanwhile (billing) queues another run, which reads
  // it anew: acting on the copy converges as a fresh read would.
  const tenantRows = perRun((ctx) =>
    deps.db
      .selectFrom('tenants')
      .select(['status', 'host_id'])
      .where('id', '=', ctx.resource.id)
      .executeTakeFirstOrThrow(),
  );
  const tenantRow = (ctx: Ctx) => tenantRows.get(ctx);
  const status = async (ctx: Ctx): Promise<TenantStatus> => (await tenantRow(ctx)).status;
  const info = (ctx: Ctx): Promise<ContainerInfo> =>
    ctx.look('dashboard', () => deps.compute.status(name(ctx)));
  const wantsRunning = (s: TenantStatus) => s !== 'cancelled' && s !== 'purged';
  // Made once per run: observe compares its digest, apply ensures it (its key unsealed once).
  const dashboardSpec = (ctx: Ctx): Promise<ContainerSpec> => dashboardSpecs.get(ctx);
  const dashboardSpecs = perRun(async (ctx): Promise<ContainerSpec> => {
    const { spec, id } = ctx.resource;
    return {
      name: name(ctx),
      tenantId: id,
      role: 'dashboard',
      workload: { kind: 'app', dir: deps.dashboardDir, entry: 'server.mjs', snapshot: true },
      resources: DASHBOARD,
      port: DASHBOARD_PORT,
      env: {
        PORT: String(DASHBOARD_PORT),
        AIQSO_API_URL: deps.apiUrlForContainers,
        AIQSO_TENANT_ID: id,
        AIQSO_TENANT_SLUG: spec.slug,
        AIQSO_COMPANY: spec.company,
        AIQSO_API_KEY: await deps.dashboardKey(id),
        // The platform's own pages (password reset), linked from the sign-in page.
        AIQSO_PUBLIC_URL: deps.publicUrl,
      },
      // The dashboard reads through the API and reaches nothing else on the host.
      hostPorts: [apiPort(deps.apiUrlForContainers)],
    };
  });

  const steps: ReconcileStep<TenantSpec>[] = [
    {
      // Nothing to create; on deletion (purge) it runs last, once everything outside the database is gone:
      // the tenant's services (their own removals destroy their containers and databases) included.
      name: 'workspace record',
      observe: () => Promise.resolve('ok' as const),
      apply: () => Promise.resolve(),
      async remove(ctx) {
        const remaining = await deps.removeServices(ctx.resource.id);
        if (remaining > 0) return requeueAfter(PURGE_POLL_MS, `${remaining} service(s) to be removed`);
        await finishPurge(deps.db, ctx.resource.id, [`container ${name(ctx)}`, `route ${hostname(ctx)}`], {
          dataDir: deps.placement.dataDir,
          compute: deps.compute,
        });
        // Its room is free: whatever waits for room is placed now, without anyone acting.
        await wakeCapacityWaiters(deps.db);
      },
    },
    {
      // A host with room for the dashboard (its memory request), recorded on the tenant. A full host is a
      // wait, not a failure: nothing is created, the preparing page and the API say what is short, the
      // operators get one alert, and the tenant is placed by itself once there is room.
      name: 'placement',
      quick: true,
      async observe(ctx) {
        return (await tenantRow(ctx)).host_id ? 'ok' : 'missing';
      },
      async apply(ctx) {
        const refusal = await placeOrRefuse(deps.db, deps.placement, {
          resource: ctx.resource,
          waitingSince: ctx.waitingSince,
          need: DASHBOARD_CLAIM,
          what: 'the dashboard',
          owner: `tenant ${ctx.resource.spec.slug}`,
          addressRoom: () => deps.compute.addressRoom?.() ?? Promise.resolve(undefined),
          onPlaced: async (trx, host) => {
            const placed = await trx
              .updateTable('tenants')
              .set({ host_id: host.id })
              .where('id', '=', ctx.resource.id)
              .returning(['status', 'host_id'])
              .executeTakeFirstOrThrow();
            tenantRows.set(ctx, placed);
          },
        });
        if (refusal === null) return;
        // The workspace's address shows the preparing page (with this reason) while it waits.
        const route = await deps.db
          .selectFrom('routes')
          .select('id')
          .where('hostname', '=', hostname(ctx))
          .where('path_prefix', '=', '')
          .executeTakeFirst();
        if (!route)
          await upsertRoute(deps.db, {
            hostname: hostname(ctx),
            tenantId: ctx.resource.id,
            upstream: null,
            state: routeStateFor(await status(ctx)),
            stripPrefix: false,
          });
        return requeueAfter(pollDelayMs(ctx.waitingSince, CAPACITY_POLL), `${CAPACITY_WAIT}${refusal}`);
      },
    },
    {
      // Also repairs a dashboard that runs with another configuration than its spec's (the API's
      // address moved, say): rewritten, and restarted if it runs, since it reads it only at start.
      name: 'dashboard container',
      async observe(ctx) {
        const c = await info(ctx);
        if (c.state === 'missing') return 'missing';
        return c.configDigest === configDigest(await dashboardSpec(ctx)) ? 'ok' : 'drifted';
      },
      async apply(ctx, found) {
        const made = ctx.saw('dashboard', await deps.compute.ensure(await dashboardSpec(ctx)));
        if (found === 'drifted' && made.state === 'running')
          ctx.saw('dashboard', await deps.compute.restart(name(ctx)));
      },
      async remove(ctx) {
        await deps.compute.destroy(name(ctx));
        await deps.revokeDashboardKey(ctx.resource.id);
      },
    },
    {
      name: 'dashboard running',
      async observe(ctx) {
        const running = (await info(ctx)).state === 'running';
        return running === wantsRunning(await status(ctx)) ? 'ok' : 'drifted';
      },
      async apply(ctx) {
        if (wantsRunning(await status(ctx))) ctx.saw('dashboard', await deps.compute.start(name(ctx)));
        else await deps.compute.stop(name(ctx));
      },
    },
    {
      name: 'route',
      quick: true,
      async observe(ctx) {
        const route = await deps.db
          .selectFrom('routes')
          .select(['upstream_host', 'upstream_port', 'state'])
          .where('hostname', '=', hostname(ctx))
          .where('path_prefix', '=', '')
          .executeTakeFirst();
        if (!route) return 'missing';
        const endpoint = (await info(ctx)).endpoint;
        const same =
          route.state === routeStateFor(await status(ctx)) &&
          route.upstream_host === (endpoint?.host ?? null) &&
          route.upstream_port === (endpoint?.port ?? null);
        return same ? 'ok' : 'drifted';
      },
      async apply(ctx) {
        await upsertRoute(deps.db, {
          hostname: hostname(ctx),
          tenantId: ctx.resource.id,
          upstream: (await info(ctx)).endpoint ?? null,
          state: routeStateFor(await status(ctx)),
          stripPrefix: false,
        });
      },
      async remove(ctx) {
        await deleteRoute(deps.db, hostname(ctx));
      },
    },
    {
      name: 'health check',
      quick: true,
      async observe(ctx) {
        const now = await status(ctx);
        // Once the workspace is live, its dashboard's health is the health monitor's (src/health/).
        if (!wantsRunning(now) || now !== 'provisioning') return 'ok';
        return (await healthy(await info(ctx))) ? 'ok' : 'missing';
      },
      // Observe just probed and saw no healthy answer: look again shortly, without holding a worker
      // slot, until the timeout has passed since the first look.
      async apply(ctx) {
        const waited = ctx.waitingSince ? Date.now() - ctx.waitingSince.getTime() : 0;
        if (waited < deps.healthTimeoutMs) {
          // Watched meanwhile, off the slots, so the look comes as soon as it answers.
          const poll = pollDelayMs(ctx.waitingSince, HEALTH_POLL);
          const endpoint = (await info(ctx)).endpoint;
          return lookWhenAnswering(poll, 'the dashboard to answer /healthz', endpoint, '/healthz');
        }
        if (await healthy(await info(ctx))) return;
        throw new DomainError(
          'unavailable',
          `dashboard did not answer /healthz within ${deps.healthTimeoutMs / 1000} s`,
        );
      },
    },
    {
      name: 'welcome email',
      quick: true,
      async observe(ctx) {
        return (await outboxHas(deps.db, `welcome:${ctx.resource.id}`)) ? 'ok' : 'missing';
      },
      async apply(ctx) {
        const owner = await tenantOwnerEmail(deps.db, ctx.resource.id);
        const url = tenantUrl(deps.publicUrl, ctx.resource.spec.slug);
        await writeOutbox(deps.db, {
          key: `welcome:${ctx.resource.id}`,
          kind: 'email',
          payload: {
            template: 'welcome',
            tenantId: ctx.resource.id,
            to: owner,
            subject: `Welcome to your ${ctx.resource.spec.company} workspace`,
            text: `Your workspace is ready at ${url}/\n\nSign in with ${owner} and the password you chose at signup.\n`,
          },
        });
      },
    },
    {
      name: 'activate',
      quick: true,
      async observe(ctx) {
        return (await status(ctx)) === 'provisioning' ? 'missing' : 'ok';
      },
      async apply(ctx) {
        await deps.db.transaction().execute(async (trx) => {
          const activated = await trx
            .updateTable('tenants')
            .set({ status: 'active', updated_at: sql`now()` })
            .where('id', '=', ctx.resource.id)
            .where('status', '=', 'provisioning')
            .executeTakeFirst();
          await trx
            .updateTable('routes')
            .set({ state: 'active', updated_at: new Date() })
            .where('tenant_id', '=', ctx.resource.id)
            .where('path_prefix', '=', '')
            .execute();
          if (activated.numUpdatedRows === 0n) return;
          await emitTenantEvent(trx, 'tenant.activated', ctx.resource.id, {
            url: `http://${hostname(ctx)}`,
          });
          // Last: the audit row holds the audit chain's lock until this commits.
          await appendAuditIn(trx, {
            actorType: 'system',
            actorId: null,
            tenantId: ctx.resource.id,
            action: 'tenant.activated',
            targetType: 'tenant',
            targetId: ctx.resource.id,
            result: 'success',
            details: { from: 'provisioning', url: `http://${hostname(ctx)}` },
          });
        });
      },
    },
  ];

  return {
    kind: TENANT_KIND,
    parseSpec: (raw) => specSchema.parse(raw),
    steps,
    // As lifecycle/orphan-sources.ts names them: the dashboard container, and the routes this tenant wrote.
    owns: (resource) => [
      { source: 'compute', name: containerName(resource.id, 'dashboard') },
      { source: 'routes', name: resource.id },
    ],
  };
}

async function healthy(container: ContainerInfo): Promise<boolean> {
  if (container.state !== 'running' || !container.endpoint) return false;
  try {
    const res = await fetch(`http://${container.endpoint.host}:${container.endpoint.port}/healthz`, {
      signal: AbortSignal.timeout(2000),
    });
    await res.arrayBuffer();
    return res.status === 200;
  } catch {
    return false;
  }
}
