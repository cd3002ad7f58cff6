import type { Config } from '../config/load.ts';
import { createApi, type ApiServer } from '../api/server.ts';
import { healthRoutes } from '../api/routes/health.ts';
import { localCheckoutRoutes } from '../api/routes/local-checkout.ts';
import { localPortalRoutes } from '../api/routes/local-portal.ts';
import { signupRoutes } from '../api/routes/signup.ts';
import { platformProvides } from '../catalog/runnable.ts';
import { stripeWebhookRoutes } from '../api/routes/stripe-webhook.ts';
import { tenantBillingRoutes } from '../api/routes/tenant-billing.ts';
import { tenantLifecycleRoutes } from '../api/routes/tenant-lifecycle.ts';
import { catalogRoutes } from '../api/routes/catalog.ts';
import { consoleRoutes } from '../api/console/routes.ts';
import { edgeSessionRoutes } from '../api/routes/edge-session.ts';
import { tenantServiceRoutes } from '../api/routes/tenant-services.ts';
import { tenantServiceLogRoutes } from '../api/routes/tenant-service-logs.ts';
import { backupRoutes } from '../api/routes/backups.ts';
import { tenantExportRoutes } from '../api/routes/tenant-exports.ts';
import { tenantStatusRoutes } from '../api/routes/tenant-status.ts';
import { tenantUsageRoutes } from '../api/routes/tenant-usage.ts';
import { webhookRoutes } from '../api/routes/webhooks.ts';
import { platformAdminRoutes } from '../api/routes/platform-admin.ts';
import { operationsRoutes } from '../api/routes/operations.ts';
import { loadSecretBox } from '../identity/master-key.ts';
import type { SecretBox } from '../identity/secrets.ts';
import { webhookPolicy } from './webhooks.ts';
import { backupEngine } from './backups.ts';
import { createTenantAccess } from '../identity/tenant-access.ts';
import { createSignupLimiter } from '../lifecycle/signup-limit.ts';
import { assertBillingModeAllowed, createBilling, type Billing } from '../billing/index.ts';
import { loadPlans, PLANS_FILE, type Plan } from '../catalog/plans.ts';
import type { MasterDatabase } from '../db/connect.ts';
import { installIdentity, type IdentityOptions } from './identity.ts';
import { openCheckedDatabase } from './database.ts';
import type { Logger } from '../observability/logger.ts';
import { createMetrics, type Metrics } from '../observability/metrics.ts';
import { VERSION } from '../version.ts';

/**
 * The platform app (API, portals, billing webhooks) and what an edge process
 * runs around it, apart from `platform.ts` so that an edge builds it without
 * loading the orchestrator and compute drivers.
 */
export interface ApiParts {
  config: Config;
  log: Logger;
  database: MasterDatabase;
  metrics: Metrics;
  billing: Billing;
  plans: Plan[];
  identity?: IdentityOptions;
}

export async function buildApi(parts: ApiParts): Promise<ApiServer> {
  const { config, log, database, metrics, billing } = parts;
  const api = await createApi({ logger: log, metrics, version: VERSION, publicUrl: config.publicUrl });
  healthRoutes(api, {
    version: VERSION,
    pingDatabase: async () => {
      await database.pool.query('SELECT 1');
    },
    metricsText: () => metrics.registry.metrics(),
    metricsContentType: metrics.registry.contentType,
    metricsToken: config.metricsToken,
  });
  await stripeWebhookRoutes(api, { db: database.db, webhookSecret: billing.webhookSecret });
  if (billing.local) {
    localCheckoutRoutes(api, billing.local);
    localPortalRoutes(api, { billing: billing.local, plans: parts.plans });
  }
  signupRoutes(api, {
    db: database.db,
    billing: billing.port,
    plans: parts.plans,
    publicUrl: config.publicUrl,
    baseDomain: config.baseDomain,
    driver: config.driver,
    provides: platformProvides(config),
    limiter: await signupLimiter(api, config, log, parts.identity?.rateLimitNamespace),
  });
  const identity = await installIdentity(api, { config, db: database.db, log }, parts.identity);
  edgeSessionRoutes(api, { db: database.db, tokens: identity.tokens });
  consoleRoutes(api, {
    secureCookies: config.publicUrl.startsWith('https:'),
    publicUrl: config.publicUrl,
  });
  const access = createTenantAccess(database.db);
  tenantLifecycleRoutes(api, {
    db: database.db,
    access,
    graceDays: config.graceDays,
    dataDir: config.dataDir,
    billing: billing.port,
    log,
  });
  catalogRoutes(api, {
    db: database.db,
    driver: config.driver,
    provides: platformProvides(config),
    plans: parts.plans,
  });
  tenantServiceRoutes(api, { db: database.db, access, plans: parts.plans, config });
  tenantServiceLogRoutes(api, { access, config });
  let engine: ReturnType<typeof backupEngine> | undefined;
  backupRoutes(api, {
    db: database.db,
    access,
    engine: () => (engine ??= backupEngine(config, database.db)),
  });
  tenantExportRoutes(api, { db: database.db, access });
  tenantStatusRoutes(api, { access });
  tenantUsageRoutes(api, { access, config, db: database.db });
  platformAdminRoutes(api, {
    db: database.db,
    config,
    driver: config.driver,
    provides: platformProvides(config),
    plans: parts.plans,
  });
  tenantBillingRoutes(api, {
    db: database.db,
    access,
    plans: parts.plans,
    billing,
    publicUrl: config.publicUrl,
  });
  operationsRoutes(api, { db: database.db, config, plans: parts.plans, log });
  let box: Promise<SecretBox> | undefined;
  webhookRoutes(api, {
    db: database.db,
    access,
    box: () => (box ??= loadSecretBox({ configured: config.masterKey, dataDir: config.dataDir })),
    policy: webhookPolicy(config),
  });
  return api;
}

/** The per-address signup limit, counted in Redis when configured (ioredis loads only then). */
async function signupLimiter(api: ApiServer, config: Config, log: Logger, namespace?: string) {
  if (config.signupRatePerIp === 0) return undefined;
  const redis = config.redisUrl
    ? new (await import('ioredis')).Redis(config.redisUrl, { maxRetriesPerRequest: 1 })
    : undefined;
  redis?.on('error', (err) => log.warn({ err }, 'redis error (signup limit)'));
  api.addHook('onClose', async () => {
    await redis?.quit().catch(() => undefined);
  });
  return createSignupLimiter({ perHour: config.signupRatePerIp, redis, namespace });
}

/**
 * The API with its billing wired. Billing events (Stripe's, and local billing
 * mode's) are stored in the inbox here and processed by workers.
 */
export async function assembleApi(
  config: Config,
  log: Logger,
  database: MasterDatabase,
  metrics: Metrics,
  options: { identity?: IdentityOptions } = {},
): Promise<{ api: ApiServer; billing: Billing }> {
  const plans = loadPlans(PLANS_FILE);
  const billing = await createBilling(config, database.db, plans);
  const api = await buildApi({ config, log, database, metrics, billing, plans, identity: options.identity });
  await api.ready();
  return { api, billing };
}

/**
 * What an edge process needs (`aiqso edge`): the master database and the
 * platform app it serves on the base domain. No orchestrator worker and no
 * catalog sync: workers and `aiqso up` do those.
 */
export interface EdgePlatform {
  config: Config;
  log: Logger;
  database: MasterDatabase;
  metrics: Metrics;
  billing: Billing;
  api: ApiServer;
  close(): Promise<void>;
}

export async function createEdgePlatform(
  config: Config,
  log: Logger,
  options: { databaseListen?: string[] } = {},
): Promise<EdgePlatform> {
  // Before anything starts: this process would serve the checkout's Pay button.
  assertBillingModeAllowed(config);
  // As the forwarding edge: migrations only when a numbered one is pending, so an edge on a current
  // database loads no migration code (graphile-worker's runner updates its own schema when a worker starts).
  const database = await openCheckedDatabase(config, log, {
    migrate: 'when-behind',
    listen: options.databaseListen,
  });
  const metrics = createMetrics();
  try {
    const { api, billing } = await assembleApi(config, log, database, metrics);
    return {
      config,
      log,
      database,
      metrics,
      billing,
      api,
      async close() {
        await api.close();
        await database.close();
      },
    };
  } catch (err) {
    await database.close();
    throw err;
  }
}
