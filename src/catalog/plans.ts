import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { z } from 'zod';

/** A Stripe meter's `event_name`: at most 100 characters. */
const METER_EVENT_NAME = /^[A-Za-z0-9_.:-]{1,100}$/;

/**
 * A plan a tenant pays for: its price, how many services it may run and,
 * optionally, what it includes each month. Included amounts are what the
 * owner is warned about (at 80% and 100%) and measured against in the
 * monthly report; nothing is cut off when they are passed.
 */
export const planSchema = z.object({
  key: z.string().regex(/^[a-z][a-z0-9-]{0,30}$/, 'expected a lowercase key'),
  name: z.string().min(1),
  monthly_cents: z.number().int().min(0),
  /** ISO 4217 code of the price, lowercase as Stripe writes it; `usd` when absent. */
  currency: z
    .string()
    .regex(/^[a-z]{3}$/, 'expected a three-letter currency code such as usd or eur')
    .optional(),
  services: z.number().int().min(0),
  stripe_price_id: z.string().startsWith('price_').nullable(),
  includes: z
    .strictObject({
      /** Disk of the containers plus the service databases, in GB (10^9 bytes), averaged over the month. */
      storage_gb: z.number().positive().optional(),
      /** Requests through the edge in the month. */
      requests: z.number().int().positive().optional(),
    })
    .optional(),
  /**
   * Amounts reported to Stripe as Billing meter events, hour by hour: the
   * usage metric and the `event_name` of the Stripe meter that prices it.
   */
  meters: z
    .strictObject({
      requests: z.string().regex(METER_EVENT_NAME, 'expected a Stripe meter event name').optional(),
      mails_sent: z.string().regex(METER_EVENT_NAME, 'expected a Stripe meter event name').optional(),
    })
    .optional(),
});

export type Plan = z.infer<typeof planSchema>;

const fileSchema = z.object({ plans: z.array(planSchema).min(1) });

/** Read and validate the plans file; a bad file names itself and the field. */
export function loadPlans(file: string): Plan[] {
  let doc: unknown;
  try {
    doc = parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new Error(`${file}: ${(err as Error).message.split('\n')[0]}`, { cause: err });
  }
  const result = fileSchema.safeParse(doc);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    throw new Error(`${file}: ${issue.path.join('.')}: ${issue.message}`);
  }
  const keys = new Set<string>();
  for (const plan of result.data.plans) {
    if (keys.has(plan.key)) throw new Error(`${file}: plan "${plan.key}" appears twice`);
    keys.add(plan.key);
  }
  return result.data.plans;
}

/** The plans file shipped with the platform. */
export const PLANS_FILE = new URL('../../catalog/plans.yaml', import.meta.url).pathname;
