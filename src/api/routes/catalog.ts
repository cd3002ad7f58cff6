import { z } from 'zod';
import type { DriverKind } from '../../core/compute.ts';
import { whyNotRunnable, type PlatformProvides } from '../../catalog/runnable.ts';
import { serviceTemplateSchema } from '../../catalog/schema.ts';
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

/**
 * The service catalog as offered: public, like the plans on the signup page
 * (it names what can be bought, nothing of any tenant). Read from the
 * `services` table, which start-up synchronises from the catalog files, and
 * filtered to what the configured compute driver runs and the platform
 * provides (`whyNotRunnable`).
 */
export function catalogRoutes(
  app: ApiServer,
  deps: { db: Database; driver: DriverKind; provides: PlatformProvides },
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
    async () => {
      const rows = await deps.db
        .selectFrom('services')
        .select('template')
        .where('active', '=', true)
        .orderBy('key')
        .execute();
      return {
        services: rows
          .map((r) => serviceTemplateSchema.parse(r.template))
          .filter((t) => whyNotRunnable(t, deps.driver, deps.provides) === null)
          .map((t) => {
            return {
              key: t.key,
              name: t.name,
              description: t.description,
              kind: t.kind,
              path: t.route.path,
              resources: t.resources,
            };
          }),
      };
    },
  );
}
