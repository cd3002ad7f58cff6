import type { Database } from './database.ts';
import type { TenantStatus } from '../core/tenants.ts';
import type { StepStatus } from './tables.ts';

export interface TenantSummary {
  id: string;
  slug: string;
  /** null once the tenant is purged. */
  company: string | null;
  plan: string;
  status: TenantStatus;
  statusReason: string | null;
  createdAt: Date;
}

export interface TenantDetail extends TenantSummary {
  hostId: string | null;
  cancelledAt: Date | null;
  purgeAfter: Date | null;
  services: { key: string; status: string; statusReason: string | null }[];
  resources: { kind: string; id: string; phase: string; lastError: string | null; steps: StepStatus[] }[];
}

const SUMMARY = ['id', 'slug', 'company', 'plan', 'status', 'status_reason', 'created_at'] as const;

function summary(row: {
  id: string;
  slug: string;
  company: string | null;
  plan: string;
  status: TenantStatus;
  status_reason: string | null;
  created_at: Date;
}): TenantSummary {
  return {
    id: row.id,
    slug: row.slug,
    company: row.company,
    plan: row.plan,
    status: row.status,
    statusReason: row.status_reason,
    createdAt: row.created_at,
  };
}

export async function listTenants(
  db: Database,
  filter: { status?: TenantStatus } = {},
): Promise<TenantSummary[]> {
  let query = db.selectFrom('tenants').select(SUMMARY).orderBy('id');
  if (filter.status) query = query.where('status', '=', filter.status);
  return (await query.execute()).map(summary);
}

/** One page of tenants for an operator: newest first, by status and a search of slug and company. */
export async function searchTenants(
  db: Database,
  filter: { q?: string; status?: TenantStatus; limit: number; offset: number },
): Promise<{ tenants: TenantSummary[]; total: number }> {
  let query = db.selectFrom('tenants');
  if (filter.status) query = query.where('status', '=', filter.status);
  if (filter.q) {
    const pattern = `%${filter.q.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
    query = query.where((eb) => eb.or([eb('slug', 'ilike', pattern), eb('company', 'ilike', pattern)]));
  }
  const [rows, count] = await Promise.all([
    query
      .select(SUMMARY)
      .orderBy('created_at', 'desc')
      .orderBy('id')
      .limit(filter.limit)
      .offset(filter.offset)
      .execute(),
    query.select((eb) => eb.fn.countAll<string>().as('n')).executeTakeFirstOrThrow(),
  ]);
  return { tenants: rows.map(summary), total: Number(count.n) };
}

/** A tenant by id (`ten_…`) or slug, with its services and reconcile status. */
export async function findTenant(db: Database, idOrSlug: string): Promise<TenantDetail | undefined> {
  const column = idOrSlug.startsWith('ten_') ? 'id' : 'slug';
  const row = await db
    .selectFrom('tenants')
    .select([...SUMMARY, 'host_id', 'cancelled_at', 'purge_after'])
    .where(column, '=', idOrSlug)
    .executeTakeFirst();
  if (!row) return undefined;
  const [services, resources] = await Promise.all([
    db
      .selectFrom('tenant_services as ts')
      .innerJoin('services as s', 's.id', 'ts.service_id')
      .select(['s.key', 'ts.status', 'ts.status_reason'])
      .where('ts.tenant_id', '=', row.id)
      .orderBy('s.key')
      .execute(),
    db
      .selectFrom('resources')
      .select(['kind', 'id', 'phase', 'last_error', 'steps'])
      .where('tenant_id', '=', row.id)
      .orderBy('kind')
      .orderBy('id')
      .execute(),
  ]);
  return {
    ...summary(row),
    hostId: row.host_id,
    cancelledAt: row.cancelled_at,
    purgeAfter: row.purge_after,
    services: services.map((s) => ({ key: s.key, status: s.status, statusReason: s.status_reason })),
    resources: resources.map((r) => ({
      kind: r.kind,
      id: r.id,
      phase: r.phase,
      lastError: r.last_error,
      steps: r.steps,
    })),
  };
}
