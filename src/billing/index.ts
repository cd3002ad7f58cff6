import type { Config } from '../config/load.ts';
import { randomBytes } from 'node:crypto';
import { loadOrCreateSecret } from '../config/generated-secrets.ts';
import type { BillingPort } from '../core/billing.ts';
import type { Plan } from '../catalog/plans.ts';
import type { Database } from '../db/database.ts';
import { LocalBilling, type WebhookDelivery } from './local.ts';

export interface Billing {
  port: BillingPort;
  /** Present in local billing mode: the stand-in checkout. */
  local?: LocalBilling;
  webhookSecret: string;
}

/** Stripe when STRIPE_SECRET_KEY is set; local billing mode (with a generated webhook secret) otherwise. */
export async function createBilling(
  config: Config,
  db: Database,
  plans: Plan[],
  deliver: WebhookDelivery,
): Promise<Billing> {
  if (config.stripe.secretKey) {
    // config guarantees the webhook secret in Stripe mode
    const webhookSecret = config.stripe.webhookSecret!;
    const prices = new Map(plans.map((p) => [p.key, p.stripe_price_id ?? undefined]));
    // The Stripe SDK is loaded only in Stripe mode.
    const { StripeBilling } = await import('./stripe.ts');
    return {
      port: new StripeBilling({ secretKey: config.stripe.secretKey, priceFor: (k) => prices.get(k) }),
      webhookSecret,
    };
  }
  const webhookSecret =
    config.stripe.webhookSecret ??
    (await loadOrCreateSecret(
      config.dataDir,
      'stripe-webhook-secret',
      () => `whsec_${randomBytes(24).toString('hex')}`,
    ));
  const local = new LocalBilling({ db, publicUrl: config.publicUrl, webhookSecret, deliver });
  return { port: local, local, webhookSecret };
}
