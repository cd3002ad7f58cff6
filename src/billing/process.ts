import { emitTenantEvent } from '../events/emit.ts';
import { sql, type Transaction } from 'kysely';
import type { Plan } from '../catalog/plans.ts';
import { PAID_STATUSES, type BillingPort, type SubscriptionState } from '../core/billing.ts';
import { newId } from '../core/ids.ts';
import type { TenantStatus } from '../core/tenants.ts';
import type { DB } from '../db/tables.ts';
import type { Database } from '../db/database.ts';
import { appendAuditIn } from '../identity/audit.ts';
import { decideBillingAction, DEFAULT_DUNNING, type BillingAction, type DunningPolicy } from './decide.ts';
import { interpretEvent, type BillingEvent } from './events.ts';
import { planOfPrice } from './plans.ts';

export interface BillingProcessDeps {
  db: Database;
  billing: BillingPort;
  graceDays: number;
  policy?: DunningPolicy;
  /** The plans, to follow a subscription's price to its plan (a plan change). */
  plans?: Plan[];
  /** Effects of a tenant transition (e.g. queueing its reconcile), run in the same transaction. */
  onAction?: (trx: Transaction<DB>, tenantId: string, action: BillingAction) => Promise<void>;
}

export interface ProcessResult {
  eventId: string;
  tenantId: string | null;
  action: BillingAction;
  /** True when the event had already been processed (a redelivery or a second worker). */
  alreadyDone: boolean;
}

/** The subscription as it is now: events arrive in any order, so decisions use the current object. */
async function currentSubscription(
  event: BillingEvent,
  billing: BillingPort,
): Promise<SubscriptionState | undefined> {
  const id =
    event.kind === 'subscription_changed'
      ? event.subscription.id
      : event.kind === 'invoice_paid' || event.kind === 'invoice_payment_failed'
        ? event.subscriptionId
        : event.kind === 'checkout_completed'
          ? event.subscriptionId
          : null;
  if (!id) return undefined;
  return (
    (await billing.getSubscription(id)) ??
    (event.kind === 'subscription_changed' ? event.subscription : undefined)
  );
}

async function findTenantId(
  trx: Transaction<DB>,
  event: BillingEvent,
  sub: SubscriptionState | undefined,
): Promise<string | null> {
  if (event.kind === 'checkout_completed') return event.tenantId;
  if (sub) {
    const row = await trx
      .selectFrom('subscriptions')
      .select('tenant_id')
      .where('stripe_subscription_id', '=', sub.id)
      .executeTakeFirst();
    if (row) return row.tenant_id;
    if (sub.tenantId) return sub.tenantId;
    if (sub.customerId) {
      const t = await trx
        .selectFrom('tenants')
        .select('id')
        .where('stripe_customer_id', '=', sub.customerId)
        .executeTakeFirst();
      if (t) return t.id;
    }
  }
  return null;
}

async function recordSubscription(
  trx: Transaction<DB>,
  tenantId: string,
  sub: SubscriptionState,
  seenAt: Date,
) {
  await trx
    .insertInto('subscriptions')
    .values({
      id: newId('subscription'),
      tenant_id: tenantId,
      stripe_subscription_id: sub.id,
      stripe_customer_id: sub.customerId,
      stripe_price_id: sub.priceId,
      status: sub.status,
      current_period_end: sub.currentPeriodEnd,
      cancel_at_period_end: sub.cancelAtPeriodEnd,
      stripe_updated_at: seenAt,
    })
    .onConflict((oc) =>
      oc.column('stripe_subscription_id').doUpdateSet({
        status: sub.status,
        stripe_price_id: sub.priceId,
        current_period_end: sub.currentPeriodEnd,
        cancel_at_period_end: sub.cancelAtPeriodEnd,
        stripe_updated_at: sql`greatest(subscriptions.stripe_updated_at, ${seenAt})`,
        updated_at: sql`now()`,
      }),
    )
    .execute();
}

/** How each billing transition reads in the audit log. */
const AUDIT_ACTION = {
  provision: 'tenant.provisioning',
  suspend: 'tenant.suspended',
  reactivate: 'tenant.reactivated',
  cancel: 'tenant.cancelled',
} as const;

/** The event each billing transition emits; a provisioned tenant's is `tenant.activated`, once it runs. */
const EVENT_FOR = {
  provision: undefined,
  suspend: 'tenant.suspended',
  reactivate: 'tenant.reactivated',
  cancel: 'tenant.cancelled',
} as const;

/** Who caused a transition, for its audit row. */
export interface TransitionCause {
  actorType: 'system' | 'operator' | 'user';
  actorId?: string | null;
  /** The status the tenant leaves. */
  from: TenantStatus;
  details?: Record<string, unknown>;
}

/**
 * Write a billing transition onto the tenant row, run `effect` (what follows
 * from it, reading the new status), and record it in the audit log, in the
 * caller's transaction (operators reuse it to cancel). The audit row comes
 * last: it holds the audit chain's lock until the caller commits.
 */
export async function applyTenantAction(
  trx: Transaction<DB>,
  tenantId: string,
  action: BillingAction,
  graceDays: number,
  cause: TransitionCause,
  effect?: (trx: Transaction<DB>, tenantId: string, action: BillingAction) => Promise<void>,
): Promise<void> {
  await writeTransition(trx, tenantId, action, graceDays);
  if (action.action === 'none') return;
  const event = EVENT_FOR[action.action];
  if (event) await emitTenantEvent(trx, event, tenantId, { from: cause.from });
  await effect?.(trx, tenantId, action);
  await appendAuditIn(trx, {
    actorType: cause.actorType,
    actorId: cause.actorId ?? null,
    tenantId,
    action: AUDIT_ACTION[action.action],
    targetType: 'tenant',
    targetId: tenantId,
    result: 'success',
    details: { from: cause.from, reason: 'reason' in action ? action.reason : null, ...cause.details },
  });
}

async function writeTransition(
  trx: Transaction<DB>,
  tenantId: string,
  action: BillingAction,
  graceDays: number,
): Promise<void> {
  const now = sql<Date>`now()`;
  switch (action.action) {
    case 'provision':
      await trx
        .updateTable('tenants')
        .set({
          status: 'provisioning',
          status_reason: null,
          cancelled_at: null,
          purge_after: null,
          updated_at: now,
        })
        .where('id', '=', tenantId)
        .execute();
      return;
    case 'suspend':
      await trx
        .updateTable('tenants')
        .set({ status: 'suspended', status_reason: action.reason, updated_at: now })
        .where('id', '=', tenantId)
        .execute();
      return;
    case 'reactivate':
      await trx
        .updateTable('tenants')
        .set({ status: 'active', status_reason: null, updated_at: now })
        .where('id', '=', tenantId)
        .execute();
      return;
    case 'cancel':
      await trx
        .updateTable('tenants')
        .set({
          status: 'cancelled',
          status_reason: action.reason,
          cancelled_at: now,
          purge_after: sql<Date>`now() + make_interval(secs => ${graceDays * 86_400})`,
          updated_at: now,
        })
        .where('id', '=', tenantId)
        .execute();
      return;
    case 'none':
      return;
  }
}

/**
 * A subscription event makes the tenant's plan the one the subscription's
 * price is for, as the subscription is now (so any delivery order ends on
 * the last price): a plan change asked for through the API, or made in
 * Stripe's dashboard. Only a paying subscription moves the plan, and never
 * on a tenant that is gone; a price no plan has changes nothing.
 */
async function followPlan(
  trx: Transaction<DB>,
  deps: BillingProcessDeps,
  tenantId: string,
  tenant: { status: TenantStatus; plan: string },
  sub: SubscriptionState,
  eventId: string,
): Promise<void> {
  if (!deps.plans || !PAID_STATUSES.has(sub.status)) return;
  if (tenant.status === 'cancelled' || tenant.status === 'purged') return;
  const plan = planOfPrice(deps.plans, sub.priceId, deps.billing.mode);
  if (!plan || plan.key === tenant.plan) return;
  await trx
    .updateTable('tenants')
    .set({ plan: plan.key, updated_at: sql`now()` })
    .where('id', '=', tenantId)
    .execute();
  await appendAuditIn(trx, {
    actorType: 'system',
    actorId: null,
    tenantId,
    action: 'tenant.plan_changed',
    targetType: 'tenant',
    targetId: tenantId,
    result: 'success',
    details: { from: tenant.plan, to: plan.key, event: eventId, subscription: sub.id },
  });
}

/**
 * Process one stored Stripe event: find its tenant, bring the subscription
 * record up to date, decide and apply the tenant's transition, and mark the
 * event processed — all in one transaction holding the tenant's row lock, so
 * concurrent workers and redeliveries cannot apply an event twice.
 */
export async function processBillingEvent(deps: BillingProcessDeps, eventId: string): Promise<ProcessResult> {
  const stored = await deps.db
    .selectFrom('inbox')
    .select(['payload', 'processed_at'])
    .where('id', '=', eventId)
    .executeTakeFirst();
  if (!stored) throw new Error(`inbox has no event ${eventId}`);
  const event = interpretEvent(stored.payload);
  const sub = await currentSubscription(event, deps.billing);
  return deps.db.transaction().execute(async (trx) => {
    const locked = await trx
      .selectFrom('inbox')
      .select('processed_at')
      .where('id', '=', eventId)
      .forUpdate()
      .executeTakeFirstOrThrow();
    const tenantId = await findTenantId(trx, event, sub);
    if (locked.processed_at)
      return { eventId, tenantId, action: { action: 'none', why: 'already processed' }, alreadyDone: true };
    let action: BillingAction = { action: 'none', why: 'no tenant for this event' };
    let apply: (() => Promise<void>) | undefined;
    if (tenantId) {
      const tenant = await trx
        .selectFrom('tenants')
        .select(['status', 'status_reason', 'plan'])
        .where('id', '=', tenantId)
        .forUpdate()
        .executeTakeFirst();
      if (tenant) {
        if (event.kind === 'checkout_completed' && event.customerId) {
          await trx
            .updateTable('tenants')
            .set({ stripe_customer_id: event.customerId })
            .where('id', '=', tenantId)
            .where('stripe_customer_id', 'is', null)
            .execute();
        }
        if (sub) await recordSubscription(trx, tenantId, sub, event.created);
        const current =
          event.kind === 'subscription_changed' && sub ? { ...event, subscription: sub } : event;
        const decided = decideBillingAction(
          current,
          { status: tenant.status, statusReason: tenant.status_reason },
          deps.policy ?? DEFAULT_DUNNING,
        );
        action = decided;
        apply = async () => {
          await applyTenantAction(
            trx,
            tenantId,
            decided,
            deps.graceDays,
            { actorType: 'system', from: tenant.status, details: { event: eventId, kind: event.kind } },
            deps.onAction,
          );
          if (current.kind === 'subscription_changed' && !current.deleted && sub) {
            await followPlan(trx, deps, tenantId, tenant, sub, eventId);
          }
        };
      } else {
        action = { action: 'none', why: `tenant ${tenantId} does not exist` };
      }
    }
    await trx
      .updateTable('inbox')
      .set({
        processed_at: sql`now()`,
        attempts: sql`attempts + 1`,
        last_error: action.action === 'none' ? action.why : null,
      })
      .where('id', '=', eventId)
      .execute();
    // Last: its audit rows hold the audit chain's lock until this transaction commits.
    await apply?.();
    return { eventId, tenantId, action, alreadyDone: false };
  });
}
