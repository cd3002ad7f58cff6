import type { Kysely } from 'kysely';
import { sql } from 'kysely';
import { containerName, type ComputeDriver, type ContainerSpec } from '../../../src/core/compute.ts';
import { DomainError } from '../../../src/core/errors.ts';
import { newId } from '../../../src/core/ids.ts';
import type { OrphanSource, Reconciler } from '../../../src/core/reconcile.ts';
import type { DB } from '../../../src/db/tables.ts';
import { writeOutbox } from '../../../src/orchestrator/outbox.ts';

/**
 * A test reconciler shaped like the tenant reconciler to come: a container
 * (compute port), a route row, a welcome email through the outbox. Every
 * effect that is created is also logged in `test_calls`, in the same
 * transaction where it is a database row, so duplicates can be counted.
 */
export interface SiteSpec {
  slug: string;
  port: number;
  email: string;
}

export const SITE_KIND = 'site';

export const siteContainer = (id: string) => containerName(id, 'web');
export const siteHost = (slug: string) => `${slug}.sites.test`;

function containerSpec(id: string, spec: SiteSpec): ContainerSpec {
  return {
    name: siteContainer(id),
    tenantId: id,
    role: 'web',
    workload: { kind: 'app', dir: '/srv/site', entry: 'server.js' },
    resources: { memoryMb: 64, cores: 1, diskGb: 1 },
    port: spec.port,
    env: { SITE: spec.slug },
  };
}

export function siteReconciler(db: Kysely<DB>, compute: ComputeDriver): Reconciler<SiteSpec> {
  return {
    kind: SITE_KIND,
    parseSpec(raw) {
      const s = raw as Partial<SiteSpec>;
      if (typeof s.slug !== 'string' || typeof s.port !== 'number' || typeof s.email !== 'string')
        throw new DomainError('validation_failed', 'site spec needs slug, port and email');
      return s as SiteSpec;
    },
    owns: (r) => [
      { source: 'containers', name: siteContainer(r.id) },
      { source: 'routes', name: siteHost(r.spec.slug) },
    ],
    steps: [
      {
        name: 'container',
        async observe({ resource }) {
          const info = await compute.status(siteContainer(resource.id));
          if (info.state === 'missing') return 'missing';
          return info.state === 'running' && info.endpoint?.port === resource.spec.port ? 'ok' : 'drifted';
        },
        async apply({ resource }) {
          await compute.ensure(containerSpec(resource.id, resource.spec));
          await compute.start(siteContainer(resource.id));
        },
        async remove({ resource }) {
          await compute.destroy(siteContainer(resource.id));
        },
      },
      {
        name: 'route',
        async observe({ resource }) {
          const route = await db
            .selectFrom('routes')
            .select('upstream_port')
            .where('hostname', '=', siteHost(resource.spec.slug))
            .where('path_prefix', '=', '')
            .executeTakeFirst();
          if (!route) return 'missing';
          return route.upstream_port === resource.spec.port ? 'ok' : 'drifted';
        },
        async apply({ resource }, found) {
          const hostname = siteHost(resource.spec.slug);
          await db.transaction().execute(async (trx) => {
            if (found === 'missing') {
              await trx
                .insertInto('routes')
                .values({
                  id: newId('route'),
                  hostname,
                  upstream_host: '127.0.0.1',
                  upstream_port: resource.spec.port,
                })
                .execute();
            } else {
              await trx
                .updateTable('routes')
                .set({ upstream_port: resource.spec.port })
                .where('hostname', '=', hostname)
                .execute();
            }
            await sql`INSERT INTO test_calls (op, name, pid) VALUES (${`route-${found === 'missing' ? 'create' : 'update'}`}, ${hostname}, ${process.pid})`.execute(
              trx,
            );
          });
        },
        async remove({ resource }) {
          const hostname = siteHost(resource.spec.slug);
          await db.transaction().execute(async (trx) => {
            const { numDeletedRows } = await trx
              .deleteFrom('routes')
              .where('hostname', '=', hostname)
              .executeTakeFirst();
            if (numDeletedRows > 0n)
              await sql`INSERT INTO test_calls (op, name, pid) VALUES ('route-delete', ${hostname}, ${process.pid})`.execute(
                trx,
              );
          });
        },
      },
      {
        name: 'welcome-email',
        async observe({ resource }) {
          const row = await db
            .selectFrom('outbox')
            .select('id')
            .where('key', '=', `welcome:${resource.id}`)
            .executeTakeFirst();
          return row ? 'ok' : 'missing';
        },
        async apply({ resource }) {
          await db.transaction().execute((trx) =>
            writeOutbox(trx, {
              key: `welcome:${resource.id}`,
              kind: 'email',
              payload: {
                to: resource.spec.email,
                subject: `Welcome, ${resource.spec.slug}`,
                text: `Your site ${siteHost(resource.spec.slug)} is ready.`,
                template: 'welcome',
              },
            }),
          );
        },
      },
    ],
  };
}

/** Orphan sources over the recording driver's containers and the route table. */
export function siteOrphanSources(db: Kysely<DB>, compute: ComputeDriver): OrphanSource[] {
  return [
    {
      name: 'containers',
      list: async () => (await compute.list()).map((c) => c.name),
      remove: (name) => compute.destroy(name),
    },
    {
      name: 'routes',
      list: async () =>
        (
          await db.selectFrom('routes').select('hostname').where('hostname', 'like', '%.sites.test').execute()
        ).map((r) => r.hostname),
      remove: async (name) => {
        await db.deleteFrom('routes').where('hostname', '=', name).execute();
      },
    },
  ];
}
