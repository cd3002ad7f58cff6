import { sql } from 'kysely';
import { z } from 'zod';
import { offeredPlans } from '../../catalog/offer.ts';
import type { Plan } from '../../catalog/plans.ts';
import { whyNotRunnable, type PlatformProvides } from '../../catalog/runnable.ts';
import { serviceTemplateSchema } from '../../catalog/schema.ts';
import type { Config } from '../../config/load.ts';
import { settingsView } from '../../config/masked.ts';
import { BACKUP_RUN_KIND } from '../../backup/run.ts';
import type { DriverKind } from '../../core/compute.ts';
import { ROLES } from '../../core/identity.ts';
import type { Database } from '../../db/database.ts';
import { requireRole } from '../../identity/principal.ts';
import { principalOf } from '../identity/authenticate.ts';
import type { ApiServer } from '../server.ts';

const UserOut = z.object({
  id: z.string(),
  email: z.string(),
  role: z.string(),
  tenantId: z.string().nullable(),
  tenant: z.string().nullable(),
  totp: z.boolean(),
  lastSignInAt: z.string().nullable(),
  createdAt: z.string(),
});

const UsersQuery = z
  .object({
    q: z.string().trim().max(100).optional(),
    tenant: z.string().trim().min(1).max(80).optional(),
    role: z.enum(ROLES).optional(),
    totp: z.enum(['on', 'off']).optional(),
    limit: z.coerce.number().int().min(1).max(200).default(50),
    offset: z.coerce.number().int().min(0).max(1_000_000).default(0),
  })
  .strict();

const PlanOut = z.object({
  key: z.string(),
  name: z.string(),
  monthlyCents: z.number(),
  currency: z.string(),
  monthlyPrice: z.string(),
  services: z.number(),
  includes: z.object({ storageGb: z.number().optional(), requests: z.number().optional() }),
});

const ServiceOut = z.object({
  key: z.string(),
  name: z.string(),
  description: z.string(),
  kind: z.string(),
  path: z.string(),
  active: z.boolean(),
  resources: z.object({
    memoryMb: z.number(),
    requestMemoryMb: z.number(),
    cores: z.number(),
    diskGb: z.number(),
  }),
  runnable: z.boolean(),
  whyNotRunnable: z.string().nullable(),
});

const BackupsQuery = z
  .object({
    tenant: z.string().trim().min(1).max(80).optional(),
    limit: z.coerce.number().int().min(1).max(200).default(50),
  })
  .strict();

const RunOut = z.object({
  run: z.string(),
  tenantId: z.string().nullable(),
  tenant: z.string().nullable(),
  purpose: z.string(),
  status: z.enum(['running', 'done', 'failed']),
  error: z.string().nullable(),
  startedAt: z.string(),
  finishedAt: z.string().nullable(),
  snapshots: z.number(),
  failedSnapshots: z.number(),
  verifiedSnapshots: z.number(),
  sizeBytes: z.number().nullable(),
  addedBytes: z.number().nullable(),
  durationMs: z.number().nullable(),
});

const VerificationOut = z.object({
  id: z.string(),
  tenantId: z.string(),
  tenant: z.string().nullable(),
  status: z.enum(['passed', 'failed']),
  error: z.string().nullable(),
  rtoMs: z.number().nullable(),
  readDataPercent: z.number(),
  snapshots: z.number(),
  startedAt: z.string(),
  finishedAt: z.string(),
});

const SettingOut = z.object({
  name: z.string(),
  group: z.string(),
  value: z.string().nullable(),
  default: z.string().nullable(),
  set: z.boolean(),
  secret: z.enum(['value', 'credentials']).nullable(),
  meaning: z.string(),
});

const iso = (d: Date | string | null) => (d === null ? null : new Date(d).toISOString());
const num = (v: string | number | bigint | null) => (v === null ? null : Number(v));

/**
 * The operator's views across the platform (platform admins only): users of
 * every tenant and the admins, with their two-factor state and last sign-in;
 * the plans and every catalog entry with whether this platform can run it;
 * recent backup runs and verifications across tenants, failures first; the
 * effective configuration with secrets masked. The operator console's
 * Users, Plans and catalog, Backups and Configuration pages read these.
 */
export function platformAdminRoutes(
  app: ApiServer,
  deps: { db: Database; config: Config; driver: DriverKind; provides: PlatformProvides; plans: Plan[] },
): void {
  const { db } = deps;

  app.get(
    '/api/v1/platform/users',
    {
      config: { minRole: 'platform_admin' },
      schema: {
        tags: ['auth'],
        summary:
          'Every user (admins): platform admins and tenant users, by e-mail; `q` searches the e-mail, `tenant` (slug or id), `role`, `totp` (on or off) filter; with the last sign-in',
        querystring: UsersQuery,
        response: {
          200: z.object({
            users: z.array(UserOut),
            total: z.number(),
            limit: z.number(),
            offset: z.number(),
          }),
        },
      },
    },
    async (request) => {
      requireRole(principalOf(request), 'platform_admin');
      const { q, tenant, role, totp, limit, offset } = request.query;
      let query = db
        .selectFrom('users as u')
        .leftJoin('tenants as t', 't.id', 'u.tenant_id')
        .leftJoin('user_totp as x', 'x.user_id', 'u.id');
      if (q) {
        const pattern = `%${q.toLowerCase().replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
        query = query.where(sql<boolean>`u.email LIKE ${pattern}`);
      }
      if (tenant) query = query.where((eb) => eb.or([eb('t.slug', '=', tenant), eb('t.id', '=', tenant)]));
      if (role) query = query.where('u.role', '=', role);
      if (totp === 'on') query = query.where('x.enabled_at', 'is not', null);
      if (totp === 'off') query = query.where('x.enabled_at', 'is', null);
      const counted = await query.select(sql<string>`count(*)`.as('total')).executeTakeFirst();
      const rows = await query
        .select([
          'u.id',
          'u.email',
          'u.role',
          'u.tenant_id',
          't.slug',
          'u.created_at',
          'x.enabled_at',
          // A sign-in starts a session family; refreshes add to it.
          sql<Date | null>`(SELECT max(f.first) FROM (SELECT min(s.created_at) AS first FROM sessions s WHERE s.user_id = u.id GROUP BY s.family) f)`.as(
            'last_sign_in',
          ),
        ])
        .orderBy('u.email')
        .orderBy('u.id')
        .limit(limit)
        .offset(offset)
        .execute();
      return {
        users: rows.map((r) => ({
          id: r.id,
          email: r.email,
          role: r.role,
          tenantId: r.tenant_id,
          tenant: r.slug,
          totp: r.enabled_at !== null,
          lastSignInAt: iso(r.last_sign_in),
          createdAt: iso(r.created_at)!,
        })),
        total: Number(counted?.total ?? 0),
        limit,
        offset,
      };
    },
  );

  app.get(
    '/api/v1/platform/catalog',
    {
      config: { minRole: 'platform_admin' },
      schema: {
        tags: ['services'],
        summary:
          'The plans and every catalog entry (admins), also those this platform cannot run, with the reason; read from the catalog files as synchronised at start-up',
        response: {
          200: z.object({ driver: z.string(), plans: z.array(PlanOut), services: z.array(ServiceOut) }),
        },
      },
    },
    async (request) => {
      requireRole(principalOf(request), 'platform_admin');
      const rows = await db.selectFrom('services').select(['template', 'active']).orderBy('key').execute();
      return {
        driver: deps.driver,
        plans: offeredPlans(deps.plans),
        services: rows.map((r) => {
          const t = serviceTemplateSchema.parse(r.template);
          const why = whyNotRunnable(t, deps.driver, deps.provides);
          return {
            key: t.key,
            name: t.name,
            description: t.description,
            kind: t.kind,
            path: t.route.path,
            active: r.active,
            resources: {
              memoryMb: t.resources.memory_mb,
              requestMemoryMb: t.resources.request_memory_mb ?? t.resources.memory_mb,
              cores: t.resources.cores,
              diskGb: t.resources.disk_gb,
            },
            runnable: why === null,
            whyNotRunnable: why,
          };
        }),
      };
    },
  );

  app.get(
    '/api/v1/platform/backups',
    {
      config: { minRole: 'platform_admin' },
      schema: {
        tags: ['backups'],
        summary:
          "Recent backup runs and verifications across tenants (admins), failures first, then running, then newest: a run's snapshots, size, added bytes, duration and how many are verified; `tenant` (slug or id) narrows, `limit` 1–200 each",
        querystring: BackupsQuery,
        response: {
          200: z.object({ runs: z.array(RunOut), verifications: z.array(VerificationOut) }),
        },
      },
    },
    async (request) => {
      requireRole(principalOf(request), 'platform_admin');
      const { tenant, limit } = request.query;
      const runs = await db
        .selectFrom('resources as r')
        .leftJoin('tenants as t', 't.id', 'r.tenant_id')
        .select([
          'r.id',
          'r.tenant_id',
          't.slug',
          'r.phase',
          'r.last_error',
          'r.created_at',
          'r.updated_at',
          sql<string>`coalesce(r.spec->>'purpose', 'scheduled')`.as('purpose'),
          sql<string>`(SELECT count(*) FROM backups b WHERE b.run_id = r.id AND b.status = 'done')`.as(
            'snapshots',
          ),
          sql<string>`(SELECT count(*) FROM backups b WHERE b.run_id = r.id AND b.status = 'failed')`.as(
            'failed',
          ),
          sql<string>`(SELECT count(*) FROM backups b WHERE b.run_id = r.id AND b.verified_at IS NOT NULL)`.as(
            'verified',
          ),
          sql<
            string | null
          >`(SELECT sum(b.size_bytes) FROM backups b WHERE b.run_id = r.id AND b.status = 'done')`.as('size'),
          sql<
            string | null
          >`(SELECT sum(b.added_bytes) FROM backups b WHERE b.run_id = r.id AND b.status = 'done')`.as(
            'added',
          ),
          sql<
            string | null
          >`(SELECT sum(b.duration_ms) FROM backups b WHERE b.run_id = r.id AND b.status = 'done')`.as(
            'duration',
          ),
        ])
        .where('r.kind', '=', BACKUP_RUN_KIND)
        .$if(tenant !== undefined, (qb) =>
          qb.where((eb) => eb.or([eb('t.slug', '=', tenant!), eb('t.id', '=', tenant!)])),
        )
        .orderBy(sql`CASE r.phase WHEN 'failed' THEN 0 WHEN 'ready' THEN 2 ELSE 1 END`)
        .orderBy('r.created_at', 'desc')
        .orderBy('r.id', 'desc')
        .limit(limit)
        .execute();
      const verifications = await db
        .selectFrom('backup_verifications as v')
        .leftJoin('tenants as t', 't.id', 'v.tenant_id')
        .select([
          'v.id',
          'v.tenant_id',
          't.slug',
          'v.status',
          'v.error',
          'v.rto_ms',
          'v.read_data_percent',
          sql<number>`jsonb_array_length(v.snapshots)`.as('snapshots'),
          'v.started_at',
          'v.finished_at',
        ])
        .$if(tenant !== undefined, (qb) =>
          qb.where((eb) => eb.or([eb('t.slug', '=', tenant!), eb('t.id', '=', tenant!)])),
        )
        .orderBy(sql`CASE v.status WHEN 'failed' THEN 0 ELSE 1 END`)
        .orderBy('v.finished_at', 'desc')
        .orderBy('v.id', 'desc')
        .limit(limit)
        .execute();
      return {
        runs: runs.map((r) => ({
          run: r.id,
          tenantId: r.tenant_id,
          tenant: r.slug,
          purpose: r.purpose,
          status:
            r.phase === 'failed'
              ? ('failed' as const)
              : r.phase === 'ready' || r.phase === 'deleted'
                ? ('done' as const)
                : ('running' as const),
          error: r.last_error,
          startedAt: iso(r.created_at)!,
          finishedAt: r.phase === 'ready' || r.phase === 'failed' ? iso(r.updated_at) : null,
          snapshots: Number(r.snapshots),
          failedSnapshots: Number(r.failed),
          verifiedSnapshots: Number(r.verified),
          sizeBytes: num(r.size),
          addedBytes: num(r.added),
          durationMs: num(r.duration),
        })),
        verifications: verifications.map((v) => ({
          id: v.id,
          tenantId: v.tenant_id,
          tenant: v.slug,
          status: v.status,
          error: v.error,
          rtoMs: v.rto_ms,
          readDataPercent: v.read_data_percent,
          snapshots: Number(v.snapshots),
          startedAt: iso(v.started_at)!,
          finishedAt: iso(v.finished_at)!,
        })),
      };
    },
  );

  app.get(
    '/api/v1/platform/config',
    {
      config: { minRole: 'platform_admin' },
      schema: {
        tags: ['platform'],
        summary:
          "The effective configuration (admins): every setting with its value, default and meaning; a secret's value is never sent (only whether it is set), a password inside a URL is masked",
        response: { 200: z.object({ settings: z.array(SettingOut) }) },
      },
    },
    (request) => {
      requireRole(principalOf(request), 'platform_admin');
      return { settings: settingsView(deps.config) };
    },
  );
}
