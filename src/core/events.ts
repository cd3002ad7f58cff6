import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * Platform events, as event webhooks deliver them (docs/webhooks.md). Each is
 * written in the transaction of the change it reports and delivered to every
 * endpoint whose patterns match its type.
 */
export const EVENT_TYPES = [
  'tenant.created',
  'tenant.activated',
  'tenant.suspended',
  'tenant.reactivated',
  'tenant.cancelled',
  'tenant.purged',
  'service.subscribed',
  'service.ready',
  'service.failed',
  'service.removed',
  'incident.opened',
  'incident.resolved',
  'backup.completed',
  'backup.failed',
  'usage.report',
] as const;
export type EventType = (typeof EVENT_TYPES)[number];

export const WEBHOOK_DELIVERY_STATUSES = ['pending', 'delivered', 'failed'] as const;
export type WebhookDeliveryStatus = (typeof WEBHOOK_DELIVERY_STATUSES)[number];

/** What an event's body says; `id` is stable across retries and redeliveries (the receiver's idempotency key). */
export interface EventBody {
  id: string;
  type: EventType;
  created: string;
  tenant: string | null;
  data: Record<string, unknown>;
}

/**
 * A problem with an endpoint's event patterns, or undefined: each is an event
 * type, a family with `*` (`tenant.*`) or `*` alone.
 */
export function eventPatternProblem(pattern: string): string | undefined {
  if (pattern === '*') return undefined;
  if (pattern.endsWith('.*')) {
    const family = pattern.slice(0, -2);
    if (EVENT_TYPES.some((t) => t.startsWith(`${family}.`))) return undefined;
    return `"${pattern}" matches no event; families are ${[...new Set(EVENT_TYPES.map((t) => `${t.split('.')[0]}.*`))].join(', ')}`;
  }
  if ((EVENT_TYPES as readonly string[]).includes(pattern)) return undefined;
  return `"${pattern}" is not an event; expected one of ${EVENT_TYPES.join(', ')}, a family such as tenant.* or *`;
}

export function eventMatches(patterns: readonly string[], type: string): boolean {
  return patterns.some(
    (p) => p === '*' || p === type || (p.endsWith('.*') && type.startsWith(p.slice(0, -1))),
  );
}

/** The signature header's name and value: Stripe's scheme, `t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">`. */
export const SIGNATURE_HEADER = 'AIQSO-Signature';

export function signatureFor(secret: string, body: string, timestamp: number): string {
  const v1 = createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex');
  return `t=${timestamp},v1=${v1}`;
}

/**
 * Whether `header` signs `body` with `secret` within `toleranceSeconds` of
 * `now` (seconds): what a receiver checks (docs/webhooks.md shows the same in
 * an n8n Code node).
 */
export function verifySignature(
  secret: string,
  body: string,
  header: string,
  now: number,
  toleranceSeconds = 300,
): boolean {
  const parts = new Map<string, string[]>();
  for (const item of header.split(',')) {
    const [k, v] = item.split('=', 2);
    if (!k || v === undefined) continue;
    parts.set(k.trim(), [...(parts.get(k.trim()) ?? []), v.trim()]);
  }
  const t = Number(parts.get('t')?.[0]);
  if (!Number.isInteger(t) || Math.abs(now - t) > toleranceSeconds) return false;
  const expected = Buffer.from(createHmac('sha256', secret).update(`${t}.${body}`).digest('hex'));
  return (parts.get('v1') ?? []).some((v) => {
    const got = Buffer.from(v);
    return got.length === expected.length && timingSafeEqual(got, expected);
  });
}
