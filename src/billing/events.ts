import { z } from 'zod';
import type { SubscriptionState } from '../core/billing.ts';

/**
 * The Stripe events the platform acts on, reduced to the fields it reads.
 * Schemas are lenient about everything else (Stripe adds fields freely) and
 * accept both the older top-level `invoice.subscription` and the newer
 * `invoice.parent.subscription_details.subscription`.
 */
export type BillingEvent =
  | {
      kind: 'checkout_completed';
      eventId: string;
      created: Date;
      tenantId: string;
      customerId: string | null;
      subscriptionId: string | null;
      paid: boolean;
    }
  | {
      kind: 'subscription_changed';
      eventId: string;
      created: Date;
      subscription: SubscriptionState;
      deleted: boolean;
    }
  | {
      kind: 'invoice_paid';
      eventId: string;
      created: Date;
      subscriptionId: string;
      customerId: string | null;
    }
  | {
      kind: 'invoice_payment_failed';
      eventId: string;
      created: Date;
      subscriptionId: string;
      attemptCount: number;
      /** Stripe will not retry: `next_payment_attempt` is null. */
      finalAttempt: boolean;
    }
  | { kind: 'ignored'; eventId: string; created: Date; type: string };

const id = z.string().min(1);
const expandable = z.union([id, z.object({ id }).transform((o) => o.id)]);

const envelope = z.object({
  id: z.string().startsWith('evt_'),
  object: z.literal('event'),
  type: z.string(),
  created: z.number().int(),
  data: z.object({ object: z.record(z.string(), z.unknown()) }),
});

const checkoutSession = z.object({
  id,
  client_reference_id: z.string().startsWith('ten_', 'client_reference_id: expected a tenant id'),
  customer: expandable.nullable().optional(),
  subscription: expandable.nullable().optional(),
  payment_status: z.string(),
});

export const subscriptionObject = z.object({
  id: z.string().startsWith('sub_'),
  customer: expandable.nullable().optional(),
  status: z.string(),
  cancel_at_period_end: z.boolean().optional().default(false),
  current_period_end: z.number().int().nullable().optional(),
  metadata: z.record(z.string(), z.string()).nullable().optional(),
  items: z
    .object({
      data: z.array(
        z.object({
          price: z.object({ id }).nullable().optional(),
          current_period_end: z.number().int().nullable().optional(),
        }),
      ),
    })
    .optional(),
});

const invoice = z.object({
  id,
  customer: expandable.nullable().optional(),
  subscription: expandable.nullable().optional(),
  parent: z
    .object({ subscription_details: z.object({ subscription: expandable.nullable() }).nullable().optional() })
    .nullable()
    .optional(),
  attempt_count: z.number().int().default(0),
  next_payment_attempt: z.number().int().nullable().optional(),
});

export function toSubscriptionState(raw: z.infer<typeof subscriptionObject>): SubscriptionState {
  const item = raw.items?.data[0];
  const periodEnd = raw.current_period_end ?? item?.current_period_end ?? null;
  return {
    id: raw.id,
    customerId: raw.customer ?? null,
    status: raw.status,
    priceId: item?.price?.id ?? null,
    cancelAtPeriodEnd: raw.cancel_at_period_end,
    currentPeriodEnd: periodEnd ? new Date(periodEnd * 1000) : null,
    tenantId: raw.metadata?.tenant_id ?? null,
  };
}

export class MalformedEvent extends Error {}

function parse<T extends z.ZodType>(schema: T, value: unknown, what: string): z.infer<T> {
  const result = schema.safeParse(value);
  if (!result.success) {
    const issue = result.error.issues[0];
    throw new MalformedEvent(`${what}: ${issue?.path.join('.') || 'object'}: ${issue?.message ?? 'invalid'}`);
  }
  return result.data;
}

/** Interpret a verified Stripe event. Throws MalformedEvent when a handled type lacks what we need. */
export function interpretEvent(raw: unknown): BillingEvent {
  const event = parse(envelope, raw, 'event');
  const base = { eventId: event.id, created: new Date(event.created * 1000) };
  const object = event.data.object;
  switch (event.type) {
    case 'checkout.session.completed': {
      const s = parse(checkoutSession, object, event.type);
      return {
        kind: 'checkout_completed',
        ...base,
        tenantId: s.client_reference_id,
        customerId: s.customer ?? null,
        subscriptionId: s.subscription ?? null,
        paid: s.payment_status === 'paid' || s.payment_status === 'no_payment_required',
      };
    }
    case 'customer.subscription.created':
    case 'customer.subscription.updated':
    case 'customer.subscription.deleted':
      return {
        kind: 'subscription_changed',
        ...base,
        subscription: toSubscriptionState(parse(subscriptionObject, object, event.type)),
        deleted: event.type === 'customer.subscription.deleted',
      };
    case 'invoice.paid':
    case 'invoice.payment_failed': {
      const inv = parse(invoice, object, event.type);
      const subscriptionId = inv.parent?.subscription_details?.subscription ?? inv.subscription;
      if (!subscriptionId) return { kind: 'ignored', ...base, type: `${event.type} (no subscription)` };
      if (event.type === 'invoice.paid') {
        return { kind: 'invoice_paid', ...base, subscriptionId, customerId: inv.customer ?? null };
      }
      return {
        kind: 'invoice_payment_failed',
        ...base,
        subscriptionId,
        attemptCount: inv.attempt_count,
        finalAttempt: inv.next_payment_attempt == null,
      };
    }
    default:
      return { kind: 'ignored', ...base, type: event.type };
  }
}
