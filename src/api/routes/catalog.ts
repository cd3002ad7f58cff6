import { z } from 'zod';
import type { DriverKind } from '../../core/compute.ts';
import { offeredPlans, offeredServices } from '../../catalog/offer.ts';
import type { Plan } from '../../catalog/plans.ts';
import type { PlatformProvides } from '../../catalog/runnable.ts';
import type { Database } from '../../db/database.ts';
import type { ApiServer } from '../server.ts';

const CatalogEntry = z.object({
  key: z.string(),
  name: z.string(),
  description: z.string(),
  kind: z.string(),
  path: z.string(),
  resources: z.object({
    memory_mb: z.number(),
    request_memory_mb: z.number().optional(),
    cores: z.number(),
    disk_gb: z.number(),
  }),
});

const PlanEntry = z.object({
  key: z.string(),
  name: z.string(),
  monthlyCents: z.number(),
  currency: z.string(),
  monthlyPrice: z.string(),
  services: z.number(),
  includes: z.object({ storageGb: z.number().optional(), requests: z.number().optional() }),
});

/**
 * The service catalog and the plans as offered: public, like the plans on the signup page
 * (it names what can be bought, nothing of any tenant). Read from the
 * `services` table, which start-up synchronises from the catalog files, and
 * filtered to what the configured compute driver runs and the platform
 * provides (`whyNotRunnable`);
 * the plans from `catalog/plans.yaml`. The front page shows the same
 * (`catalog/offer.ts`).
 */
export function catalogRoutes(
  app: ApiServer,
  deps: { db: Database; driver: DriverKind; provides: PlatformProvides; plans: Plan[] },
): void {
  app.get(
    '/api/v1/catalog',
    {
      config: { public: true },
      schema: {
        tags: ['services'],
        summary: 'The services a tenant can subscribe to',
        response: { 200: z.object({ services: z.array(CatalogEntry) }) },
      },
    },
    async () => ({
      services: (await offeredServices(deps.db, deps.driver, deps.provides)).map((t) => ({
        key: t.key,
        name: t.name,
        description: t.description,
        kind: t.kind,
        path: t.route.path,
        resources: t.resources,
      })),
    }),
  );

  app.get(
    '/api/v1/plans',
    {
      config: { public: true },
      schema: {
        tags: ['services'],
        summary: 'The plans a workspace can be bought on, with their price and what each includes',
        response: { 200: z.object({ plans: z.array(PlanEntry) }) },
      },
    },
    () => ({ plans: offeredPlans(deps.plans) }),
  );
}
