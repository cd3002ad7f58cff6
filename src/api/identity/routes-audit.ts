import { z } from 'zod';
import type { ApiServer } from '../server.ts';
import { badRequest, DomainError, notFound } from '../../core/errors.ts';
import type { Database } from '../../db/database.ts';
import { queryAudit } from '../../identity/audit.ts';
import { describeReport, verifyAuditChain } from '../../identity/audit-verify.ts';
import { isPlatformAdmin, type Principal } from '../../identity/principal.ts';
import { runAsTenant } from '../../identity/tenant-access.ts';
import { principalOf } from './authenticate.ts';

const AuditQuery = z.object({
  tenant: z.string().max(80).optional(),
  actor: z.string().max(80).optional(),
  from: z.iso.datetime({ offset: true }).optional(),
  to: z.iso.datetime({ offset: true }).optional(),
  before: z
    .string()
    .regex(/^\d{1,19}$/, 'a row id')
    .optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
});

const AuditRow = z.object({
  id: z.string(),
  at: z.string(),
  actorType: z.string(),
  actorId: z.string().nullable(),
  tenantId: z.string().nullable(),
  action: z.string(),
  targetType: z.string().nullable(),
  targetId: z.string().nullable(),
  sourceIp: z.string().nullable(),
  result: z.string(),
  details: z.unknown(),
  hash: z.string(),
});

/** The tenant id a `tenant` filter (id or slug) names; admins may name any, owners only their own. */
async function tenantFilter(db: Database, principal: Principal, ref: string | undefined) {
  if (!isPlatformAdmin(principal)) {
    const own = principal.tenantId!;
    if (ref === undefined || ref === own) return own;
    const slug = await runAsTenant(db, own, (trx) =>
      trx.selectFrom('tenants').select('slug').where('id', '=', own).executeTakeFirst(),
    );
    if (ref === slug?.slug) return own;
    throw new DomainError('forbidden', 'you can read only your own tenant’s audit log');
  }
  if (ref === undefined) return undefined;
  const row = await db
    .selectFrom('tenants')
    .select('id')
    .where(ref.startsWith('ten_') ? 'id' : 'slug', '=', ref)
    .executeTakeFirst();
  // A purged tenant's rows stay in the log under its id, so an unknown id is still a valid filter.
  if (row) return row.id;
  if (ref.startsWith('ten_')) return ref;
  throw notFound(`tenant ${ref}`);
}

/**
 * The audit log, newest first: platform admins read everything and filter by
 * tenant (id or slug), actor and time; tenant owners read their own tenant's
 * rows only (under row-level security). Pages with `before` = the last id seen.
 */
export function auditRoutes(app: ApiServer, deps: { db: Database }): void {
  app.get(
    '/api/v1/audit',
    {
      config: { minRole: 'tenant_owner' },
      schema: {
        tags: ['audit'],
        summary:
          'Audit log, newest first; admins filter by tenant, actor and time, tenant owners see their own tenant; page with before=<next>',
        querystring: AuditQuery,
        response: { 200: z.object({ entries: z.array(AuditRow), next: z.string().nullable() }) },
      },
    },
    async (request) => {
      const principal = principalOf(request);
      const q = request.query;
      const from = q.from ? new Date(q.from) : undefined;
      const to = q.to ? new Date(q.to) : undefined;
      if (from && to && from >= to) throw badRequest('from must be before to', { field: 'from' });
      const tenantId = await tenantFilter(deps.db, principal, q.tenant);
      const filter = { tenantId, actorId: q.actor, from, to, beforeId: q.before, limit: q.limit };
      const rows = isPlatformAdmin(principal)
        ? await queryAudit(deps.db, filter)
        : await runAsTenant(deps.db, tenantId!, (trx) => queryAudit(trx, filter));
      return {
        entries: rows.map((r) => ({
          id: r.id,
          at: r.at.toISOString(),
          actorType: r.actor_type,
          actorId: r.actor_id,
          tenantId: r.tenant_id,
          action: r.action,
          targetType: r.target_type,
          targetId: r.target_id,
          sourceIp: r.source_ip,
          result: r.result,
          details: r.details,
          hash: r.hash,
        })),
        next: rows.length === q.limit ? rows[rows.length - 1]!.id : null,
      };
    },
  );

  app.get(
    '/api/v1/audit/verify',
    {
      config: { minRole: 'platform_admin' },
      schema: {
        tags: ['audit'],
        summary:
          "Check the audit chain as `aiqso audit verify` does (platform admins): every row's hash and link, that the chain ends at its head, and optionally that it passes `expect=<id>:<hash>` (a head kept outside the database). ok: false names the first bad row and why",
        querystring: z.object({
          expect: z
            .string()
            .regex(/^\d{1,19}:[0-9a-f]{64}$/, 'a head as verify prints it: <row id>:<64 hex digits>')
            .optional(),
        }),
        response: {
          200: z.object({
            ok: z.boolean(),
            rows: z.number(),
            head: z.object({ id: z.string().nullable(), hash: z.string(), rows: z.number() }),
            /** The head as `<id>:<hash>`, to keep outside the database and pass later as `expect`. */
            anchor: z.string().nullable(),
            firstBadId: z.string().nullable(),
            reason: z
              .enum([
                'content_changed',
                'address_changed',
                'link_broken',
                'truncated',
                'head_mismatch',
                'anchor_mismatch',
              ])
              .nullable(),
            message: z.string(),
          }),
        },
      },
    },
    async (request) => {
      const expect = request.query.expect?.split(':');
      const report = await verifyAuditChain(deps.db, {
        anchor: expect ? { id: expect[0]!, hash: expect[1]! } : undefined,
      });
      return {
        ok: report.ok,
        rows: report.rows,
        head: report.head,
        anchor: report.head.id ? `${report.head.id}:${report.head.hash}` : null,
        firstBadId: report.ok ? null : report.firstBadId,
        reason: report.ok ? null : report.reason,
        message: describeReport(report),
      };
    },
  );
}
