import type { Kysely } from 'kysely';
import type { Plan } from '../catalog/plans.ts';
import type { BillingPort, PriceChange } from '../core/billing.ts';
import { badRequest, conflict, DomainError } from '../core/errors.ts';
import type { Database } from '../db/database.ts';
import type { DB } from '../db/tables.ts';
import { servicesCountingAgainstPlan } from '../services/subscriptions.ts';
import type { LocalBilling } from './local.ts';
import { planOfPrice, priceOfPlan } from './plans.ts';

/**
 * A tenant's billing as its owners see it (`GET /api/v1/tenants/{t}/billing`)
 * and changing its plan (`POST …/billing/plan`). A change is asked of the
 * billing (Stripe, or local billing mode) as a new price on the subscription;
 * the tenant's plan, and with it its limits, changes when the
 * `customer.subscription.updated` event that follows is processed
 * (process.ts), like every other billing change.
 */
export interface PlanChangeDeps {
  db: Database;
  plans: Plan[];
  billing: BillingPort;
  /** Local billing mode: the change is written with the checks, in one transaction. */
  local?: LocalBilling;
}

export interface PlanView {
  key: string;
  name: string;
  monthlyCents: number;
  currency: string;
  services: number;
  includes: { storage_gb?: number; requests?: number };
}

export interface BillingOverview {
  mode: 'stripe' | 'local';
  status: string;
  plan: PlanView;
  subscription: {
    status: string;
    currentPeriodEnd: string | null;
    cancelAtPeriodEnd: boolean;
    /** The plan the subscription's price is for when it is not the tenant's plan yet (a change on its way). */
    pendingPlan: string | null;
  } | null;
  servicesInUse: number;
  plans: PlanView[];
}

export const planView = (p: Plan): PlanView => ({
  key: p.key,
  name: p.name,
  monthlyCents: p.monthly_cents,
  currency: p.currency ?? 'usd',
  services: p.services,
  includes: { ...p.includes },
});

/** The tenant's live subscription as last recorded (the newest one not cancelled). */
async function liveSubscription(db: Kysely<DB>, tenantId: string) {
  return db
    .selectFrom('subscriptions')
    .select([
      'stripe_subscription_id',
      'stripe_price_id',
      'status',
      'current_period_end',
      'cancel_at_period_end',
    ])
    .where('tenant_id', '=', tenantId)
    .where('status', '!=', 'canceled')
    .where('stripe_subscription_id', 'is not', null)
    .orderBy('created_at', 'desc')
    .executeTakeFirst();
}

/** A plan the catalog does not have is named in a 400, with the ones it has. */
function planNamed(plans: Plan[], key: string): Plan {
  const plan = plans.find((p) => p.key === key);
  if (!plan) {
    throw badRequest(`plan: no plan "${key}"; expected one of ${plans.map((p) => p.key).join(', ')}`, {
      field: 'plan',
    });
  }
  return plan;
}

export async function billingOverview(
  db: Kysely<DB>,
  deps: { plans: Plan[]; mode: 'stripe' | 'local' },
  tenantId: string,
): Promise<BillingOverview> {
  const tenant = await db
    .selectFrom('tenants')
    .select(['plan', 'status'])
    .where('id', '=', tenantId)
    .executeTakeFirstOrThrow();
  const sub = await liveSubscription(db, tenantId);
  const current = deps.plans.find((p) => p.key === tenant.plan);
  const pending = sub ? planOfPrice(deps.plans, sub.stripe_price_id, deps.mode) : undefined;
  return {
    mode: deps.mode,
    status: tenant.status,
    plan: current
      ? planView(current)
      : { key: tenant.plan, name: tenant.plan, monthlyCents: 0, currency: 'usd', services: 0, includes: {} },
    subscription: sub
      ? {
          status: sub.status,
          currentPeriodEnd: sub.current_period_end?.toISOString() ?? null,
          cancelAtPeriodEnd: sub.cancel_at_period_end,
          pendingPlan: pending && pending.key !== tenant.plan ? pending.key : null,
        }
      : null,
    servicesInUse: await servicesCountingAgainstPlan(db, tenantId),
    plans: deps.plans.map(planView),
  };
}

export interface PlanChangeResult {
  from: string;
  plan: string;
  /** requested: the new price was asked for; already_requested: the subscription has it, nothing was sent. */
  state: PriceChange;
}

/**
 * What must hold for a tenant to move to `target`, checked with its row
 * locked: an active tenant (409), a subscription to change (409) and, for a
 * plan allowing fewer services, no more working services than it allows
 * (409 naming how many to unsubscribe first).
 */
async function checkPlanChange(trx: Kysely<DB>, tenantId: string, target: Plan) {
  const tenant = await trx
    .selectFrom('tenants')
    .select(['slug', 'status', 'plan'])
    .where('id', '=', tenantId)
    .forUpdate()
    .executeTakeFirstOrThrow();
  if (tenant.status !== 'active') {
    throw conflict(`${tenant.slug} is ${tenant.status}; only an active tenant can change its plan`, {
      status: tenant.status,
    });
  }
  const sub = await liveSubscription(trx, tenantId);
  if (!sub?.stripe_subscription_id) {
    throw conflict(`${tenant.slug} has no subscription to change; it was not signed up through checkout`);
  }
  const n = await servicesCountingAgainstPlan(trx, tenantId);
  if (n > target.services) {
    const over = n - target.services;
    throw conflict(
      `the ${target.name} plan allows ${target.services} services and ${tenant.slug} has ${n}; unsubscribe ${over} service${over === 1 ? '' : 's'} first`,
      { plan: target.key, limit: target.services, services: n, unsubscribe: over },
    );
  }
  return { from: tenant.plan, slug: tenant.slug, subscriptionId: sub.stripe_subscription_id };
}

/**
 * The tenant on `target` whose subscription has its price already is on the
 * same plan (409). On the plan with another price on the subscription (a
 * change not processed yet), asking for it changes the price back.
 */
function outcome(
  checked: { from: string; slug: string },
  target: Plan,
  state: PriceChange,
): PlanChangeResult {
  if (state === 'already_requested' && checked.from === target.key) {
    throw conflict(`${checked.slug} is on the ${target.name} plan already`, { plan: target.key });
  }
  return { from: checked.from, plan: target.key, state };
}

/**
 * Ask for `tenantId`'s plan to become `key`. Local billing mode writes the
 * subscription's new price and its `customer.subscription.updated` event in
 * the transaction that checked, so a crash leaves both or neither; Stripe
 * mode checks, then updates the subscription through Stripe's API, whose
 * webhook brings the event. Asking again before the event is processed
 * sends nothing new.
 */
export async function requestPlanChange(
  deps: PlanChangeDeps,
  tenantId: string,
  key: string,
): Promise<PlanChangeResult> {
  const target = planNamed(deps.plans, key);
  const price = priceOfPlan(target, deps.billing.mode);
  if (!price) {
    throw new DomainError(
      'conflict',
      `plan ${target.key} has no Stripe price configured (stripe_price_id in catalog/plans.yaml); an operator must set one`,
      { details: { plan: target.key } },
    );
  }
  const { local } = deps;
  if (local) {
    return deps.db.transaction().execute(async (trx) => {
      const checked = await checkPlanChange(trx, tenantId, target);
      return outcome(
        checked,
        target,
        await local.changePriceIn(trx, checked.subscriptionId, price, target.key),
      );
    });
  }
  const checked = await deps.db.transaction().execute((trx) => checkPlanChange(trx, tenantId, target));
  return outcome(checked, target, await deps.billing.changePrice(checked.subscriptionId, price, target.key));
}
