import { DomainError } from '../../core/errors.ts';
import { findTenant } from '../../db/tenants.ts';
import { tenantHealthStatus, type TenantHealthStatus } from '../../health/status.ts';
import { withDatabase, type CommandContext } from '../context.ts';
import { printJson, printTable } from '../output.ts';

const percent = (v: number | null) => (v === null ? '-' : `${v.toFixed(2)}%`);

/**
 * `aiqso status [<slug>] [--json]`: each active tenant's (or one tenant's)
 * dashboard and services with their health state, uptime over 24 h / 7 d /
 * 30 d and open incident. Exit 3 when the named tenant does not exist.
 */
export async function status(
  ctx: CommandContext,
  slug: string | undefined,
  options: { json?: boolean },
): Promise<void> {
  const views = await withDatabase(ctx, async ({ db }) => {
    let tenants: { id: string; slug: string }[];
    if (slug) {
      const tenant = await findTenant(db, slug);
      if (!tenant) throw new DomainError('not_found', `no tenant with slug or id "${slug}"`);
      tenants = [{ id: tenant.id, slug: tenant.slug }];
    } else {
      tenants = await db
        .selectFrom('tenants')
        .select(['id', 'slug'])
        .where('status', 'in', ['active', 'suspended'])
        .orderBy('slug')
        .execute();
    }
    const out: ({ tenant: string } & TenantHealthStatus)[] = [];
    for (const t of tenants) out.push({ tenant: t.slug, ...(await tenantHealthStatus(db, t.id)) });
    return out;
  });
  if (options.json) return printJson(views);
  const rows = views.flatMap((v) =>
    v.targets.map((t) => ({
      tenant: v.tenant,
      target: t.name,
      state: t.state,
      '24h': percent(t.uptime['24h']),
      '7d': percent(t.uptime['7d']),
      '30d': percent(t.uptime['30d']),
      incident: t.openIncident ? `${t.openIncident.id}: ${t.openIncident.reason}` : '-',
    })),
  );
  if (rows.length === 0) {
    process.stdout.write('Nothing probed yet.\n');
    return;
  }
  printTable(rows, ['tenant', 'target', 'state', '24h', '7d', '30d', 'incident']);
}
