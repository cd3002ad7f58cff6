import path from 'node:path';
import type pg from 'pg';
import type { Config } from '../config/load.ts';
import type { ComputeDriver } from '../core/compute.ts';
import type { Database } from '../db/database.ts';
import { forgetVisitorMail } from '../identity/account-recovery.ts';
import { loadSecretBox } from '../identity/master-key.ts';
import type { SecretBox } from '../identity/secrets.ts';
import { orchestratorParts, startConfiguredWorker, type OrchestratorParts } from './orchestrator.ts';
import {
  containerReach,
  startHostGateway,
  type ContainerReach,
  type HostGateway,
} from '../compute/gateway.ts';
import { createComputeDriver } from '../compute/index.ts';
import type { MasterDatabase } from '../db/connect.ts';
import type { Logger } from '../observability/logger.ts';
import { REPO_ROOT } from '../catalog/load.ts';
import { loadPlans, PLANS_FILE, type Plan } from '../catalog/plans.ts';
import { meterEventHandler } from '../billing/meter-events.ts';
import type { BillingPort } from '../core/billing.ts';
import { createBillingPort } from '../billing/index.ts';
import { processBillingEvent } from '../billing/process.ts';
import { tenantBillingEffect } from '../lifecycle/billing-effect.ts';
import { certificateRenewalHandler } from '../edge/renewal.ts';
import { wallDatabases } from '../db/walls.ts';
import { dashboardCredentials } from '../lifecycle/dashboard-credential.ts';
import { expirePendingSignups } from '../lifecycle/pending-signups.ts';
import { lifecycleOrphanSources } from '../lifecycle/orphan-sources.ts';
import { purgeDue } from '../lifecycle/purge.ts';
import { tenantReconciler } from '../lifecycle/tenant-reconciler.ts';
import { createLogger } from '../observability/logger.ts';
import {
  HEALTH_TASK,
  healthMonitor,
  REPAIR_TASK,
  repairTask,
  scheduleHealthRound,
} from '../health/monitor.ts';
import { tenantServiceReconciler } from '../services/reconciler.ts';
import { tenantServiceSecrets } from '../services/secrets.ts';
import {
  serviceRedisAccess,
  servicesRedis,
  servicesRedisNamespace,
  type ServicesRedis,
} from '../services/redis.ts';
import { registerBackups } from './backups.ts';
import { removeTenantServices, tenantServiceSpecSchema } from '../services/subscriptions.ts';
import { containerSpecFor, loadDeployment } from '../services/deploy-context.ts';
import { findResource } from '../orchestrator/resources.ts';
import { TENANT_SERVICE_KIND } from '../core/kinds.ts';
import { DomainError } from '../core/errors.ts';
import { usageReportsScheduleHandler, usageScheduleHandler } from '../usage/schedule.ts';
import { registerWebhooks } from './webhooks.ts';

/** Register the tenant lifecycle's reconcilers on an orchestrator. */
export function registerLifecycle(
  parts: OrchestratorParts,
  deps: {
    config: Config;
    db: Database;
    compute: ComputeDriver;
    /** How containers reach the API and the master database. */
    reach: ContainerReach;
    /** The master database's pool and URL: service databases are created on its server. */
    master: { pool: pg.Pool; url: string };
    /** The Redis for services (AIQSO_SERVICES_REDIS_URL), when configured. */
    redis?: ServicesRedis;
    box?: () => Promise<SecretBox>;
    log?: Logger;
  },
): void {
  const { config, db, compute } = deps;
  let boxPromise: Promise<SecretBox> | undefined;
  const box =
    deps.box ??
    (() => (boxPromise ??= loadSecretBox({ configured: config.masterKey, dataDir: config.dataDir })));
  const credentials = dashboardCredentials(db, box);
  const serviceSecrets = tenantServiceSecrets(db, box);
  parts.scheduleHandlers.purge = async () => {
    await purgeDue(db);
    await forgetVisitorMail(db);
  };
  parts.scheduleHandlers['pending-signups'] = async () => {
    await expirePendingSignups(db, config.pendingSignupHours);
  };
  const monitor = healthMonitor({
    db,
    url: deps.master.url,
    compute,
    log: deps.log ?? createLogger('silent'),
    intervalSeconds: config.health.intervalSeconds,
    timeoutSeconds: config.health.timeoutSeconds,
    failures: config.health.failures,
  });
  // A round's job only takes the round; its probes wait in this process, outside the worker's slots.
  parts.tasks[HEALTH_TASK] = monitor.task;
  parts.tasks[REPAIR_TASK] = repairTask({ db, compute, log: deps.log ?? createLogger('silent') });
  parts.onStart.push((q) => scheduleHealthRound(q, config.health.intervalSeconds * 1000, true));
  parts.onStop.push(() => monitor.stop());
  // The 'health' schedule is a safety net: it queues a round if none is (one is always, normally).
  parts.scheduleHandlers.health = () => scheduleHealthRound(db, config.health.intervalSeconds * 1000, true);
  parts.registry.register(
    tenantReconciler({
      db,
      compute,
      baseDomain: config.baseDomain,
      publicUrl: config.publicUrl,
      apiUrlForContainers: deps.reach.apiUrl,
      dashboardDir: path.join(REPO_ROOT, 'dashboard'),
      dashboardKey: (tenantId) => credentials.get(tenantId),
      revokeDashboardKey: (tenantId) => credentials.revoke(tenantId),
      removeServices: (tenantId) => removeTenantServices(db, tenantId),
      healthTimeoutMs: 60_000,
      placement: { driver: compute.kind, dataDir: config.dataDir, policy: config.hostCapacity },
    }),
  );
  const local = new URL(deps.master.url);
  parts.registry.register(
    tenantServiceReconciler({
      db,
      admin: deps.master.pool,
      compute,
      baseDomain: config.baseDomain,
      publicUrl: config.publicUrl,
      repoRoot: REPO_ROOT,
      dataDir: config.dataDir,
      dbReach: deps.reach.db,
      dbLocal: {
        host: local.hostname.replace(/^\[|\]$/g, '') || '127.0.0.1',
        port: Number(local.port || 5432),
      },
      rootSecret: (id) => serviceSecrets.root(id),
      redis: deps.redis,
      placement: { driver: compute.kind, dataDir: config.dataDir, policy: config.hostCapacity },
    }),
  );
  registerBackups(parts, {
    config,
    db,
    compute,
    box,
    dbLocal: {
      host: local.hostname.replace(/^\[|\]$/g, '') || '127.0.0.1',
      port: Number(local.port || 5432),
    },
    rootSecret: (id) => serviceSecrets.root(id),
    master: deps.master,
    // A restore re-creates a container that is gone exactly as the service's reconciler would.
    containerSpec: async (id) => {
      const resource = await findResource(db, { kind: TENANT_SERVICE_KIND, id });
      if (!resource) throw new DomainError('not_found', `tenant service ${id} has no resource`);
      const d = await loadDeployment(db, id, tenantServiceSpecSchema.parse(resource.spec));
      const root = await serviceSecrets.root(id);
      const redis =
        d.template.database.redis && deps.redis
          ? serviceRedisAccess(deps.redis, d.tenantId, d.template.key, root)
          : undefined;
      return containerSpecFor(
        d,
        {
          driver: compute.kind,
          repoRoot: REPO_ROOT,
          publicUrl: config.publicUrl,
          dbReach: deps.reach.db,
          root,
        },
        redis,
      );
    },
  });
  registerWebhooks(parts, {
    config,
    db,
    box,
    log: (deps.log ?? createLogger('silent')).child({ part: 'webhooks' }),
  });
}

/** Process stored Stripe events (Stripe's, or local billing mode's): each one's tenant transition and its effects. */
export function registerBilling(
  parts: OrchestratorParts,
  deps: { config: Config; db: Database; billing: BillingPort; log: Logger; plans?: Plan[] },
): void {
  const plans = deps.plans ?? loadPlans(PLANS_FILE);
  parts.inboxHandlers.stripe = async (eventId) => {
    const result = await processBillingEvent(
      {
        db: deps.db,
        billing: deps.billing,
        graceDays: deps.config.graceDays,
        onAction: tenantBillingEffect,
        plans,
      },
      eventId,
    );
    deps.log.info({ eventId, tenantId: result.tenantId, action: result.action }, 'stripe event processed');
  };
  parts.outboxHandlers.stripe = meterEventHandler(deps.billing);
}

/**
 * One process's orchestrator worker with every reconciler the platform has,
 * driving the configured compute driver, with orphan detection over its
 * containers, routes and service databases. `stop()` stops the worker and
 * releases the driver: containers keep running, except process containers
 * when this process owns the embedded database they use.
 */
export async function startPlatformWorker(config: Config, log: Logger, database: MasterDatabase) {
  // Service databases are made on this server: close the ones they must not reach.
  await wallDatabases(database.pool, log.child({ part: 'database' }));
  const compute = await createComputeDriver(config, database.db, log, {
    stopWorkloadsOnClose: database.mode === 'embedded' && database.ownsServer === true,
  });
  let gateway: HostGateway | undefined;
  let redis: ServicesRedis | undefined;
  try {
    const hostAddress = await compute.hostAddress();
    const reach = containerReach({
      hostAddress,
      http: config.http,
      databaseUrl: database.url,
      databaseListens: database.listens,
      servicesRedisUrl: config.servicesRedisUrl,
    });
    gateway = await startHostGateway(hostAddress, reach.forwards, log.child({ part: 'gateway' }));
    if (config.servicesRedisUrl && reach.redis)
      redis = servicesRedis({
        url: config.servicesRedisUrl,
        namespace: servicesRedisNamespace(config.baseDomain, databaseName(database.url)),
        reach: reach.redis,
        hostAddress,
      });
    const parts = orchestratorParts(config);
    registerLifecycle(parts, {
      config,
      db: database.db,
      compute,
      reach,
      master: { pool: database.pool, url: database.url },
      redis,
      log: log.child({ part: 'health' }),
    });
    const plans = loadPlans(PLANS_FILE);
    const billing = await createBillingPort(config, database.db, plans);
    registerBilling(parts, { config, db: database.db, billing, log, plans });
    parts.orphanSources.push(
      ...lifecycleOrphanSources({ compute, db: database.db, admin: database.pool, redis }),
    );
    parts.scheduleHandlers.certificates = certificateRenewalHandler(
      config,
      database.db,
      log.child({ part: 'certificates' }),
    );
    const usage = {
      db: database.db,
      admin: database.pool,
      compute,
      log: log.child({ part: 'usage' }),
      timeZone: config.timeZone,
      retention: config.usageRetention,
      plans: loadPlans(PLANS_FILE),
    };
    parts.scheduleHandlers.usage = usageScheduleHandler(usage);
    parts.scheduleHandlers['usage-reports'] = usageReportsScheduleHandler(usage);
    const worker = await startConfiguredWorker(config, log, database.url, parts);
    // Whatever changed while no control plane ran (a database endpoint that moved, containers that
    // died) is repaired now, not a resync period later.
    await worker.resyncNow().catch(async (err: unknown) => {
      await worker.stop();
      throw err;
    });
    return {
      worker,
      compute,
      reach,
      async stop() {
        await worker.stop();
        await redis?.close();
        await gateway?.close();
        await compute.close();
      },
    };
  } catch (err) {
    await redis?.close();
    await gateway?.close();
    await compute.close();
    throw err;
  }
}

/** The database a postgres:// URL names (its path; PostgreSQL's default, the user's name, when it names none). */
function databaseName(url: string): string {
  const u = new URL(url);
  return decodeURIComponent(u.pathname.replace(/^\//, '')) || decodeURIComponent(u.username) || 'postgres';
}
