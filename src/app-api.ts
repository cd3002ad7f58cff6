import type { Config } from './config/load.ts';
import { createApi, type ApiServer } from './api/server.ts';
import { healthRoutes } from './api/routes/health.ts';
import { localCheckoutRoutes } from './api/routes/local-checkout.ts';
import { signupRoutes } from './api/routes/signup.ts';
import { stripeWebhookRoutes } from './api/routes/stripe-webhook.ts';
import { tenantLifecycleRoutes } from './api/routes/tenant-lifecycle.ts';
import { catalogRoutes } from './api/routes/catalog.ts';
import { tenantServiceRoutes } from './api/routes/tenant-services.ts';
import { createTenantAccess } from './identity/tenant-access.ts';
import { createBilling, type Billing } from './billing/index.ts';
import { processBillingEvent } from './billing/process.ts';
import { tenantBillingEffect } from './lifecycle/billing-effect.ts';
import { loadPlans, PLANS_FILE, type Plan } from './catalog/plans.ts';
import type { MasterDatabase } from './db/connect.ts';
import { installIdentity, type IdentityOptions } from './identity/wire.ts';
import { openCheckedDatabase } from './open-database.ts';
import type { Logger } from './observability/logger.ts';
import { createMetrics, type Metrics } from './observability/metrics.ts';
import type { Platform } from './app.ts';
import { VERSION } from './version.ts';

/**
 * Wiring of the platform app (API, portals, billing webhooks), apart from
 * app.ts so that an edge process builds it without loading the orchestrator
 * and compute drivers.
 */
export interface ApiParts {
  config: Config;
  log: Logger;
  database: MasterDatabase;
  metrics: Metrics;
  billing: Billing;
  /** Called once a new Stripe event is safely in the inbox. */
  onStripeEvent: (eventId: string) => Promise<void>;
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
  });
  await stripeWebhookRoutes(api, {
    db: database.db,
    webhookSecret: billing.webhookSecret,
    onStored: parts.onStripeEvent,
  });
  if (billing.local) localCheckoutRoutes(api, billing.local);
  signupRoutes(api, {
    db: database.db,
    billing: billing.port,
    plans: parts.plans,
    publicUrl: config.publicUrl,
    baseDomain: config.baseDomain,
  });
  await installIdentity(api, { config, db: database.db, log }, parts.identity);
  const access = createTenantAccess(database.db);
  tenantLifecycleRoutes(api, {
    db: database.db,
    access,
    graceDays: config.graceDays,
    dataDir: config.dataDir,
  });
  catalogRoutes(api, { db: database.db });
  tenantServiceRoutes(api, { db: database.db, access, plans: parts.plans, config });
  return api;
}

/** Billing that delivers local-mode events to `api`'s own webhook route (bound once the API exists). */
async function billingFor(
  config: Config,
  database: MasterDatabase,
  plans: Plan[],
  target: () => ApiServer | undefined,
) {
  return createBilling(config, database.db, plans, async ({ payload, signature }) => {
    const api = target();
    if (!api) throw new Error('the API is not ready to receive billing events');
    const res = await api.inject({
      method: 'POST',
      url: '/webhooks/stripe',
      payload,
      headers: { 'content-type': 'application/json', 'stripe-signature': signature },
    });
    if (res.statusCode !== 200) throw new Error(`local billing event refused: ${res.statusCode} ${res.body}`);
  });
}

/**
 * The API with its billing wired: local-mode billing events go to this API's
 * own webhook route, and stored events are processed right after the answer.
 */
export async function assembleApi(
  config: Config,
  log: Logger,
  database: MasterDatabase,
  metrics: Metrics,
  options: { identity?: IdentityOptions } = {},
): Promise<{ api: ApiServer; billing: Billing }> {
  const bound: { api?: ApiServer } = {};
  const plans = loadPlans(PLANS_FILE);
  const billing = await billingFor(config, database, plans, () => bound.api);
  const onStripeEvent = async (eventId: string) => {
    const result = await processBillingEvent(
      { db: database.db, billing: billing.port, graceDays: config.graceDays, onAction: tenantBillingEffect },
      eventId,
    );
    log.info({ eventId, tenantId: result.tenantId, action: result.action }, 'stripe event processed');
  };
  const api = await buildApi({
    config,
    log,
    database,
    metrics,
    billing,
    onStripeEvent,
    plans,
    identity: options.identity,
  });
  await api.ready();
  bound.api = api;
  return { api, billing };
}

/**
 * What an edge process needs (`aiqso edge`): the master database and the
 * platform app it serves on the base domain. No orchestrator worker and no
 * catalog sync: workers and `aiqso up` do those.
 */
export type EdgePlatform = Omit<Platform, 'worker'>;

export async function createEdgePlatform(config: Config, log: Logger): Promise<EdgePlatform> {
  // As the forwarding edge: migrations only when a numbered one is pending, so an edge on a current
  // database loads no migration code (graphile-worker's runner updates its own schema when a worker starts).
  const database = await openCheckedDatabase(config, log, { migrate: 'when-behind' });
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
