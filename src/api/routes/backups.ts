import { sql } from 'kysely';
import { z } from 'zod';
import {
  listBackups,
  requestServiceRestore,
  requestTenantRestore,
  startBackupRuns,
} from '../../backup/requests.ts';
import { BACKUP_RUN_KIND } from '../../backup/run.ts';
import type { Restic } from '../../backup/restic.ts';
import type { RepositoryKeys } from '../../backup/repositories.ts';
import { badRequest, conflict, DomainError } from '../../core/errors.ts';
import type { Database } from '../../db/database.ts';
import { principalOf } from '../identity/authenticate.ts';
import type { TenantAccess } from '../../identity/tenant-access.ts';
import type { ApiServer } from '../server.ts';

const Params = z.object({ tenant: z.string().min(1).max(80) });
const ServiceParams = Params.extend({ service: z.string().min(1).max(40) });
const BackupOut = z.object({
  id: z.string(),
  time: z.string(),
  service: z.string().nullable(),
  kind: z.string(),
  purpose: z.string(),
  run: z.string().nullable(),
  snapshot: z.string().nullable(),
  sizeBytes: z.number().nullable(),
  addedBytes: z.number().nullable(),
  durationMs: z.number().nullable(),
  rowCounts: z.record(z.string(), z.number()).nullable(),
  verified: z.boolean(),
  restoreMs: z.number().nullable(),
});

/** "Back up now": one manual run per tenant in this many minutes. */
export const MANUAL_BACKUP_MINUTES = 10;

/**
 * A tenant's backups: list them (owner), back up now (owner; one manual run
 * per MANUAL_BACKUP_MINUTES, counted in the database so every API process
 * shares the limit), restore a service (owner), restore the whole tenant
 * (platform admins). The runs and restores
 * themselves are resources the workers carry out; these answer 202.
 */
export function backupRoutes(
  app: ApiServer,
  deps: { db: Database; access: TenantAccess; engine: () => { restic: Restic; keys: RepositoryKeys } },
): void {
  const { db, access } = deps;
  const ownerOf = (request: Parameters<typeof principalOf>[0], tenant: string) =>
    access.forTenant(principalOf(request), tenant, 'tenant_owner', ({ tenantId }) =>
      Promise.resolve(tenantId),
    );

  app.get(
    '/api/v1/tenants/:tenant/backups',
    {
      config: { minRole: 'tenant_owner' },
      schema: {
        tags: ['backups'],
        summary:
          "The tenant's snapshots, newest first: time, service, kind, size, added bytes, duration, verified",
        params: Params,
        response: { 200: z.object({ backups: z.array(BackupOut) }) },
      },
    },
    async (request) =>
      access.forTenant(
        principalOf(request),
        request.params.tenant,
        'tenant_owner',
        async ({ trx, tenantId }) => ({
          backups: (await listBackups(trx, tenantId)).map((b) => ({ ...b, time: b.time.toISOString() })),
        }),
      ),
  );

  app.post(
    '/api/v1/tenants/:tenant/backups',
    {
      config: { minRole: 'tenant_owner', auditAction: 'tenant.backup.run' },
      schema: {
        tags: ['backups'],
        summary: `Back up now: every service's database and data; 202 with the run, 429 within ${MANUAL_BACKUP_MINUTES} minutes of the last one`,
        params: Params,
        response: { 202: z.object({ run: z.string() }) },
      },
    },
    async (request, reply) => {
      const tenantId = await ownerOf(request, request.params.tenant);
      request.audit = { tenantId, targetType: 'tenant', targetId: tenantId };
      const tenant = await db
        .selectFrom('tenants')
        .select('status')
        .where('id', '=', tenantId)
        .executeTakeFirstOrThrow();
      if (!['provisioning', 'active', 'suspended', 'failed'].includes(tenant.status))
        throw conflict(`the tenant is ${tenant.status}; it has nothing to back up`);
      const [run] = await db.transaction().execute(async (trx) => {
        // One request at a time per tenant decides whether the last manual run is recent.
        await sql`SELECT pg_advisory_xact_lock(hashtext(${`backup-now:${tenantId}`}))`.execute(trx);
        const recent = await trx
          .selectFrom('resources')
          .select('created_at')
          .where('kind', '=', BACKUP_RUN_KIND)
          .where('tenant_id', '=', tenantId)
          .where(sql<boolean>`spec->>'purpose' = 'manual'`)
          .where('created_at', '>', sql<Date>`now() - make_interval(mins => ${MANUAL_BACKUP_MINUTES})`)
          .executeTakeFirst();
        if (recent)
          throw new DomainError(
            'rate_limited',
            `a backup was started at ${recent.created_at.toISOString()}; back up again after ${MANUAL_BACKUP_MINUTES} minutes`,
          );
        return startBackupRuns(trx, [{ id: tenantId }], { purpose: 'manual' });
      });
      return reply.status(202).send({ run: run! });
    },
  );

  app.post(
    '/api/v1/tenants/:tenant/services/:service/restore',
    {
      config: { minRole: 'tenant_owner', auditAction: 'tenant.service.restore' },
      schema: {
        tags: ['backups'],
        summary:
          "Restore a service's database to a snapshot (the latest, one by id, or the newest at or before `at`): a safety snapshot first, then the service stopped, restored, started and health-checked; 202 with the restore",
        params: ServiceParams,
        body: z
          .object({
            snapshot: z
              .string()
              .regex(/^[0-9a-f]{8,64}$/, 'expected a snapshot id (8 to 64 hex digits)')
              .optional(),
            at: z.iso.datetime({ offset: true }).optional(),
          })
          .strict()
          .refine((b) => !(b.snapshot && b.at), 'give snapshot or at, not both')
          .optional(),
        response: { 202: z.object({ restore: z.string(), snapshot: z.string(), time: z.string() }) },
      },
    },
    async (request, reply) => {
      const tenantId = await ownerOf(request, request.params.tenant);
      request.audit = { tenantId, targetType: 'service', targetId: request.params.service };
      const body = request.body ?? {};
      const started = await requestServiceRestore(db, deps.engine(), {
        tenantId,
        service: request.params.service,
        snapshot: body.snapshot,
        at: body.at ? new Date(body.at) : undefined,
        requestedBy: `${principalOf(request).kind}:${principalOf(request).id}`,
      });
      return reply
        .status(202)
        .send({ restore: started.restoreId, snapshot: started.snapshot, time: started.time.toISOString() });
    },
  );

  app.post(
    '/api/v1/tenants/:tenant/restore',
    {
      config: { minRole: 'platform_admin', auditAction: 'tenant.restore' },
      schema: {
        tags: ['backups'],
        summary:
          'Restore a whole tenant (platform admins), as `aiqso restore tenant`: every deployed service, database and data, to its newest snapshot at or before `at` (the newest without), also when its containers and databases are gone; all checked before any is queued; 202 with the restores',
        params: Params,
        body: z
          .object({
            at: z.iso.datetime({ offset: true }).optional(),
            // Named so that it is refused with the reason, not as an unknown key.
            snapshot: z.unknown().optional(),
          })
          .strict()
          .nullish(),
        response: {
          202: z.object({
            restores: z.array(
              z.object({
                service: z.string(),
                restore: z.string(),
                snapshot: z.string(),
                dataSnapshot: z.string().nullable(),
                time: z.string(),
              }),
            ),
          }),
        },
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      const tenantId = await access.forTenant(principal, request.params.tenant, 'platform_admin', (s) =>
        Promise.resolve(s.tenantId),
      );
      request.audit = { tenantId, targetType: 'tenant', targetId: tenantId };
      const body = request.body ?? {};
      if (body.snapshot !== undefined)
        throw badRequest(
          'body.snapshot: a tenant restore takes `at` (each service goes back to its newest snapshot at or before it); to put one service back to one snapshot, POST /api/v1/tenants/{tenant}/services/{service}/restore',
          { fields: [{ field: 'body.snapshot', message: 'not taken by a tenant restore; use at' }] },
        );
      const started = await requestTenantRestore(db, deps.engine(), {
        tenantId,
        at: body.at ? new Date(body.at) : undefined,
        requestedBy: `${principal.kind}:${principal.id}`,
      });
      return reply.status(202).send({
        restores: started.restores.map((r) => ({
          service: r.service,
          restore: r.restoreId,
          snapshot: r.snapshot,
          dataSnapshot: r.dataSnapshot,
          time: r.time.toISOString(),
        })),
      });
    },
  );
}
