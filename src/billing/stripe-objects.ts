import { createHmac } from 'node:crypto';
import { createRequire } from 'node:module';
import { monotonicFactory } from 'ulid';

/**
 * Stripe-format objects and signed events, built on Stripe's published
 * fixtures so they carry every field real ones do. Local billing mode writes
 * these into the inbox; tests also sign them and send them to the webhook, as
 * Stripe would.
 */
const shapes = createRequire(import.meta.url)('./stripe-shapes.json') as Record<
  string,
  Record<string, unknown>
>;
const ulid = monotonicFactory();

export const localId = (prefix: string): string => `${prefix}_local${ulid().toLowerCase()}`;

export function stripeObject(
  kind: 'checkout.session' | 'subscription' | 'invoice' | 'customer' | 'billing_portal.session',
  fields: Record<string, unknown>,
): Record<string, unknown> {
  return { ...structuredClone(shapes[kind]), livemode: false, created: nowSeconds(), ...fields };
}

export function stripeEvent(type: string, object: Record<string, unknown>, created = nowSeconds()) {
  return {
    ...structuredClone(shapes.event),
    id: localId('evt'),
    type,
    created,
    livemode: false,
    api_version: '2025-09-30.clover',
    data: { object },
  };
}

export interface SignedPayload {
  payload: string;
  signature: string;
}

/**
 * Sign a payload exactly as Stripe does: `t=<unix seconds>,v1=<hex HMAC-SHA256
 * of "<t>.<payload>" keyed by the webhook secret>` (what the SDK's
 * `webhooks.generateTestHeaderString` makes; a test checks the two agree).
 * Done here rather than by the SDK so that signing does not load it.
 * `timestamp` lets tests make stale and future-dated events.
 */
export function signPayload(payload: string, secret: string, timestamp = nowSeconds()): SignedPayload {
  const v1 = createHmac('sha256', secret).update(`${timestamp}.${payload}`, 'utf8').digest('hex');
  return { payload, signature: `t=${timestamp},v1=${v1}` };
}

export const nowSeconds = (): number => Math.floor(Date.now() / 1000);
