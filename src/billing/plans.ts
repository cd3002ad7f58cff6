import type { Plan } from '../catalog/plans.ts';

/**
 * Which price a plan is billed at, and which plan a subscription's price
 * means. In Stripe mode it is the plan's `stripe_price_id`; local billing
 * mode's subscriptions carry `price_local_<plan key>` (local.ts).
 */
export type BillingMode = 'stripe' | 'local';

const LOCAL_PRICE = 'price_local_';

export function priceOfPlan(plan: Plan, mode: BillingMode): string | undefined {
  return mode === 'local' ? `${LOCAL_PRICE}${plan.key}` : (plan.stripe_price_id ?? undefined);
}

export function planOfPrice(plans: Plan[], price: string | null, mode: BillingMode): Plan | undefined {
  if (!price) return undefined;
  return plans.find((p) => priceOfPlan(p, mode) === price);
}
