import type { DriverKind } from '../core/compute.ts';
import type { Database } from '../db/database.ts';
import type { Plan } from './plans.ts';
import { whyNotRunnable, type PlatformProvides } from './runnable.ts';
import { serviceTemplateSchema, type ServiceTemplate } from './schema.ts';

/**
 * What the platform offers, as the API (`GET /api/v1/plans`,
 * `GET /api/v1/catalog`) and the front page both show it: one function each,
 * so a page never offers what the API would not.
 */

export interface OfferedPlan {
  key: string;
  name: string;
  monthlyCents: number;
  /** ISO 4217, lowercase as Stripe writes it. */
  currency: string;
  /** Price as people read it: "$49" a month. */
  monthlyPrice: string;
  services: number;
  includes: { storageGb?: number; requests?: number };
}

/** The price of `cents` in `currency`, without decimals when whole ("$49", "$49.50"). */
export function formatPrice(cents: number, currency: string): string {
  const whole = cents % 100 === 0;
  return new Intl.NumberFormat('en', {
    style: 'currency',
    currency: currency.toUpperCase(),
    minimumFractionDigits: whole ? 0 : 2,
    maximumFractionDigits: 2,
  }).format(cents / 100);
}

export function offeredPlans(plans: Plan[]): OfferedPlan[] {
  return plans.map((p) => {
    const currency = p.currency ?? 'usd';
    return {
      key: p.key,
      name: p.name,
      monthlyCents: p.monthly_cents,
      currency,
      monthlyPrice: formatPrice(p.monthly_cents, currency),
      services: p.services,
      includes: {
        ...(p.includes?.storage_gb !== undefined ? { storageGb: p.includes.storage_gb } : {}),
        ...(p.includes?.requests !== undefined ? { requests: p.includes.requests } : {}),
      },
    };
  });
}

/** What a plan includes, as lines a person reads ("2 services", "10 GB storage a month"…). */
export function planFeatures(plan: OfferedPlan): string[] {
  const lines = [`Up to ${plan.services} service${plan.services === 1 ? '' : 's'}`];
  if (plan.includes.storageGb !== undefined) lines.push(`${plan.includes.storageGb} GB storage included`);
  if (plan.includes.requests !== undefined) {
    lines.push(`${new Intl.NumberFormat('en').format(plan.includes.requests)} requests a month included`);
  }
  lines.push('Your own address, dashboard and database per service');
  return lines;
}

/**
 * The services a tenant can subscribe to: the active catalog entries (which
 * start-up synchronises from the catalog files) that the configured compute
 * driver can run and the platform provides for (`whyNotRunnable`), by key.
 */
export async function offeredServices(
  db: Database,
  driver: DriverKind,
  provides: PlatformProvides,
): Promise<ServiceTemplate[]> {
  const rows = await db
    .selectFrom('services')
    .select('template')
    .where('active', '=', true)
    .orderBy('key')
    .execute();
  return rows
    .map((r) => serviceTemplateSchema.parse(r.template))
    .filter((t) => whyNotRunnable(t, driver, provides) === null);
}
