import { open } from 'node:fs/promises';
import { z } from 'zod';
import { EXPORT_TTL_DAYS, exportDownloadPath, requestTenantExport } from '../../backup/export.ts';
import { conflict, DomainError, notFound } from '../../core/errors.ts';
import type { Database } from '../../db/database.ts';
import { appendAudit } from '../../identity/audit.ts';
import { requireTenantsOwnUser, type TenantAccess } from '../../identity/tenant-access.ts';
import { principalOf } from '../identity/authenticate.ts';
import type { ApiServer } from '../server.ts';

const Params = z.object({ tenant: z.string().min(1).max(80) });
const ExportParams = Params.extend({
  export: z.string().regex(/^exp_[0-9a-z]{26}$/, 'expected an export id (exp_…)'),
});
const ExportOut = z.object({
  id: z.string(),
  status: z.enum(['building', 'ready', 'failed', 'expired']),
  sizeBytes: z.number().nullable(),
  sha256: z.string().nullable(),
  requestedAt: z.string(),
  finishedAt: z.string().nullable(),
  expiresAt: z.string(),
  error: z.string().nullable(),
  /** Where a signed-in owner downloads it, while it is ready. */
  download: z.string().nullable(),
});

/** Tenants whose data can be exported: any not yet purged (a cancelled one during its grace period too). */
const EXPORTABLE = ['provisioning', 'active', 'suspended', 'failed', 'cancelled'];

/**
 * The owner's "Export my data" (GDPR Art. 20): ask for an export (owner or
 * platform admin; 202, built by a worker from a fresh snapshot, one at a time
 * per tenant), list them, download one. The download answers only a signed-in
 * owner of the export's own tenant, with a session (not an API key, not a
 * platform admin): the mailed link is no credential by itself, so a mail read,
 * forwarded or prefetched by a scanner gives nothing; role, tenant and expiry
 * are checked on every download, and each download is audited.
 */
export function tenantExportRoutes(
  app: ApiServer,
  deps: { db: Database; access: TenantAccess; ttlMs?: number },
): void {
  const { db, access } = deps;
  const ttlMs = deps.ttlMs ?? EXPORT_TTL_DAYS * 86_400_000;

  app.post(
    '/api/v1/tenants/:tenant/exports',
    {
      config: { minRole: 'tenant_owner', auditAction: 'tenant.export' },
      schema: {
        tags: ['backups'],
        summary: `Export my data: one archive of every service's database (dump and CSV per table), its files and the tenant's records, built from a fresh snapshot; 202 with the export, 409 while another is being built. The owner is mailed a download link, valid ${EXPORT_TTL_DAYS} days`,
        params: Params,
        response: { 202: z.object({ export: z.object({ id: z.string(), expiresAt: z.string() }) }) },
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      const tenantId = await access.forTenant(principal, request.params.tenant, 'tenant_owner', (s) =>
        Promise.resolve(s.tenantId),
      );
      request.audit = { tenantId, targetType: 'tenant', targetId: tenantId };
      const tenant = await db
        .selectFrom('tenants')
        .select('status')
        .where('id', '=', tenantId)
        .executeTakeFirstOrThrow();
      if (!EXPORTABLE.includes(tenant.status))
        throw conflict(`the tenant is ${tenant.status}; it has no data left to export`, {
          status: tenant.status,
        });
      const { exportId, expiresAt } = await requestTenantExport(db, {
        tenantId,
        requestedBy: `${principal.kind}:${principal.id}`,
        ttlMs,
        notify: true,
      });
      request.audit = { tenantId, targetType: 'export', targetId: exportId };
      return reply.status(202).send({ export: { id: exportId, expiresAt: expiresAt.toISOString() } });
    },
  );

  app.get(
    '/api/v1/tenants/:tenant/exports',
    {
      config: { minRole: 'tenant_owner' },
      schema: {
        tags: ['backups'],
        summary:
          "The tenant's data exports, newest first: status, size, sha256, expiry and, while ready, the download path",
        params: Params,
        response: { 200: z.object({ exports: z.array(ExportOut) }) },
      },
    },
    async (request) =>
      access.forTenant(
        principalOf(request),
        request.params.tenant,
        'tenant_owner',
        async ({ trx, tenantId }) => {
          const { slug } = await trx
            .selectFrom('tenants')
            .select('slug')
            .where('id', '=', tenantId)
            .executeTakeFirstOrThrow();
          const rows = await trx
            .selectFrom('tenant_exports')
            .selectAll()
            .where('tenant_id', '=', tenantId)
            .orderBy('created_at', 'desc')
            .orderBy('id', 'desc')
            .limit(100)
            .execute();
          const now = Date.now();
          return {
            exports: rows.map((r) => {
              // Past its expiry it is expired, whether or not retention has deleted the file yet.
              const status = r.expires_at.getTime() <= now ? 'expired' : r.status;
              return {
                id: r.id,
                status,
                sizeBytes: r.size_bytes === null ? null : Number(r.size_bytes),
                sha256: r.sha256,
                requestedAt: r.created_at.toISOString(),
                finishedAt: r.finished_at?.toISOString() ?? null,
                expiresAt: r.expires_at.toISOString(),
                error: r.error,
                download: status === 'ready' ? exportDownloadPath(slug, r.id) : null,
              };
            }),
          };
        },
      ),
  );

  app.get(
    '/api/v1/tenants/:tenant/exports/:export/download',
    {
      config: { minRole: 'tenant_owner' },
      schema: {
        tags: ['backups'],
        summary:
          "Download an export's archive (application/gzip): a signed-in owner of the tenant only (no API key, no platform admin); 410 once it expired, 409 while it is being built",
        params: ExportParams,
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      let tenantId: string | null = principal.tenantId;
      const audit = (result: 'success' | 'failure' | 'denied', details: Record<string, unknown>) =>
        appendAudit(db, {
          actorType: principal.kind === 'api_key' ? 'api_key' : 'user',
          actorId: principal.id,
          tenantId,
          action: 'tenant.export.download',
          targetType: 'export',
          targetId: request.params.export,
          sourceIp: request.ip,
          result,
          details: { requestId: request.id, ...details },
        });
      try {
        const found = await access.forTenant(principal, request.params.tenant, 'tenant_owner', async (s) => {
          tenantId = s.tenantId;
          requireTenantsOwnUser(principal, s.tenantId, {
            apiKey:
              "an export is downloaded by a signed-in owner of its tenant, not with an API key (it holds all of the tenant's data)",
            operator:
              'an export is downloaded by a signed-in owner of its tenant only; an operator takes the archive on the host (aiqso tenants export)',
          });
          const row = await s.trx
            .selectFrom('tenant_exports as e')
            .innerJoin('tenants as t', 't.id', 'e.tenant_id')
            .select([
              'e.id',
              'e.status',
              'e.file',
              'e.size_bytes',
              'e.sha256',
              'e.expires_at',
              'e.error',
              't.slug',
            ])
            .where('e.id', '=', request.params.export)
            .where('e.tenant_id', '=', s.tenantId)
            .executeTakeFirst();
          if (!row) throw notFound(`export ${request.params.export}`);
          return row;
        });
        const expiredAt = found.expires_at.toISOString();
        if (found.status === 'expired' || found.expires_at.getTime() <= Date.now())
          throw new DomainError(
            'gone',
            `export ${found.id} expired at ${expiredAt} and its archive is deleted; ask for a new export`,
          );
        if (found.status === 'building')
          throw conflict(`export ${found.id} is still being built; you get a mail when it is ready`);
        if (found.status === 'failed' || !found.file)
          throw conflict(`export ${found.id} failed (${found.error ?? 'no archive'}); ask for a new export`);
        const file = await open(found.file, 'r').catch(() => {
          throw new DomainError(
            'gone',
            `export ${found.id}'s archive is no longer here; ask for a new export`,
          );
        });
        const { size } = await file.stat();
        await audit('success', { bytes: size, sha256: found.sha256 });
        const date = new Date().toISOString().slice(0, 10);
        return reply
          .header('content-type', 'application/gzip')
          .header('content-length', String(size))
          .header('content-disposition', `attachment; filename="${found.slug}-export-${date}.tar.gz"`)
          .header('cache-control', 'no-store')
          .send(file.createReadStream());
      } catch (err) {
        if (err instanceof DomainError)
          await audit(err.status === 401 || err.status === 403 ? 'denied' : 'failure', {
            status: err.status,
            error: err.message,
          });
        throw err;
      }
    },
  );
}
