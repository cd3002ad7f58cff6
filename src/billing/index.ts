import type { Config } from '../config/load.ts';
import { ConfigError } from '../config/load.ts';
import { randomBytes } from 'node:crypto';
import { loadOrCreateSecret } from '../config/generated-secrets.ts';
import type { BillingPort } from '../core/billing.ts';
import type { Plan } from '../catalog/plans.ts';
import type { Database } from '../db/database.ts';
import { LocalBilling } from './local.ts';

export interface Billing {
  port: BillingPort;
  /** Present in local billing mode: the stand-in checkout. */
  local?: LocalBilling;
  webhookSecret: string;
}

/**
 * The billing port AIQSO_BILLING picks: Stripe, or local billing mode (no
 * payment at all). Workers need only this: they read subscriptions as they
 * are now while processing events.
 */
export async function createBillingPort(config: Config, db: Database, plans: Plan[]): Promise<BillingPort> {
  if (config.billing.mode === 'local') return new LocalBilling({ db, publicUrl: config.publicUrl });
  const prices = new Map(plans.map((p) => [p.key, p.stripe_price_id ?? undefined]));
  // The Stripe SDK is loaded only in Stripe mode; config guarantees the key there.
  const { StripeBilling } = await import('./stripe.ts');
  return new StripeBilling({ secretKey: config.stripe.secretKey!, priceFor: (k) => prices.get(k) });
}

/**
 * Billing for a process that serves the API: the port, and the secret the
 * webhook verifies (in local mode generated into the data directory when
 * STRIPE_WEBHOOK_SECRET is unset, so tests and tools can sign events).
 */
export async function createBilling(config: Config, db: Database, plans: Plan[]): Promise<Billing> {
  const port = await createBillingPort(config, db, plans);
  if (!(port instanceof LocalBilling)) {
    // config guarantees the webhook secret in Stripe mode
    return { port, webhookSecret: config.stripe.webhookSecret! };
  }
  const webhookSecret =
    config.stripe.webhookSecret ??
    (await loadOrCreateSecret(
      config.dataDir,
      'stripe-webhook-secret',
      () => `whsec_${randomBytes(24).toString('hex')}`,
    ));
  return { port, local: port, webhookSecret };
}

/**
 * Local billing mode activates any tenant for free. On a base domain other
 * than localhost that is a platform taking real signups without payment, so it
 * must be chosen explicitly (AIQSO_BILLING=local), never fallen into because
 * STRIPE_SECRET_KEY is missing.
 */
export function assertBillingModeAllowed(config: Config): void {
  if (config.billing.mode !== 'local' || config.billing.explicit || config.baseDomain === 'localhost') return;
  throw new ConfigError(
    `AIQSO_BILLING: local billing mode (simulated payments: anyone can activate a tenant for free) is not used on ${config.baseDomain} unless chosen; set STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET for Stripe, or AIQSO_BILLING=local, got nothing`,
  );
}

/** The line `aiqso up` prints in local billing mode. */
export const LOCAL_BILLING_WARNING =
  'WARNING: local billing mode: payments are simulated and the checkout Pay button activates any tenant for free; set STRIPE_SECRET_KEY (and STRIPE_WEBHOOK_SECRET) for real payments.';
