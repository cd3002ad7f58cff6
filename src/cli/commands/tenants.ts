import { DomainError } from '../../core/errors.ts';
import type { Database } from '../../db/database.ts';
import { findTenant, listTenants } from '../../db/tenants.ts';
import { startPurge } from '../../lifecycle/purge.ts';
import type { TenantStatus } from '../../db/tables.ts';
import { withDatabase, type CommandContext } from '../context.ts';
import { printJson, printTable } from '../output.ts';

const STATUSES: TenantStatus[] = [
  'pending_payment',
  'provisioning',
  'active',
  'suspended',
  'cancelled',
  'purged',
  'failed',
];

export async function tenantsList(
  ctx: CommandContext,
  options: { json?: boolean; status?: string },
): Promise<void> {
  if (options.status && !STATUSES.includes(options.status as TenantStatus)) {
    throw new DomainError(
      'bad_request',
      `--status: expected one of ${STATUSES.join(', ')}, got "${options.status}"`,
    );
  }
  const tenants = await withDatabase(ctx, ({ db }) =>
    listTenants(db, { status: options.status as TenantStatus | undefined }),
  );
  if (options.json) return printJson(tenants);
  if (tenants.length === 0) {
    process.stdout.write('No tenants.\n');
    return;
  }
  printTable(tenants as unknown as Record<string, unknown>[], [
    'id',
    'slug',
    'company',
    'plan',
    'status',
    'createdAt',
  ]);
}

export async function tenantsShow(
  ctx: CommandContext,
  slug: string,
  options: { json?: boolean },
): Promise<void> {
  const found = await withDatabase(ctx, async ({ db }) => {
    const t = await findTenant(db, slug);
    return t && { ...t, history: await tenantHistory(db, t.id) };
  });
  if (!found) throw new DomainError('not_found', `no tenant with slug or id "${slug}"`);
  const tenant = found;
  if (options.json) return printJson(tenant);
  const out: string[] = [
    `${tenant.company} (${tenant.slug})`,
    `  id        ${tenant.id}`,
    `  status    ${tenant.status}${tenant.statusReason ? ` — ${tenant.statusReason}` : ''}`,
    `  plan      ${tenant.plan}`,
    `  created   ${tenant.createdAt.toISOString()}`,
  ];
  if (tenant.purgeAfter) out.push(`  purge at  ${tenant.purgeAfter.toISOString()}`);
  out.push('  services');
  if (tenant.services.length === 0) out.push('    (none)');
  for (const s of tenant.services)
    out.push(`    ${s.key.padEnd(20)} ${s.status}${s.statusReason ? ` — ${s.statusReason}` : ''}`);
  for (const r of tenant.resources) {
    out.push(`  ${r.kind} ${r.id}: ${r.phase}${r.lastError ? ` — ${r.lastError}` : ''}`);
    for (const step of r.steps) {
      const err = step.lastError ? ` — ${step.lastError}` : '';
      out.push(`    ${step.state.padEnd(8)} ${step.name} (attempts ${step.attempts})${err}`);
    }
  }
  out.push('  history');
  for (const h of tenant.history)
    out.push(
      `    ${h.at.toISOString()} ${h.action.padEnd(22)} ${h.actor}${h.reason ? ` — ${h.reason}` : ''}`,
    );
  process.stdout.write(`${out.join('\n')}\n`);
}

/** The tenant's transitions from the audit log (signup, billing, activation, cancellation, purge…). */
async function tenantHistory(db: Database, tenantId: string) {
  const rows = await db
    .selectFrom('audit_log')
    .select(['at', 'action', 'actor_type', 'actor_id', 'result', 'details'])
    .where('tenant_id', '=', tenantId)
    .where('action', 'like', 'tenant.%')
    .orderBy('id')
    .execute();
  return rows.map((r) => {
    const details = (r.details ?? {}) as { reason?: unknown };
    return {
      at: r.at,
      action: r.action,
      actor: r.actor_id ? `${r.actor_type} ${r.actor_id}` : r.actor_type,
      result: r.result,
      reason: typeof details.reason === 'string' ? details.reason : null,
    };
  });
}

/**
 * `aiqso tenants purge <slug>`: purge a cancelled tenant (its grace period
 * over, or `--now`). A running worker does the removal; this waits for it.
 */
export async function tenantsPurge(
  ctx: CommandContext,
  slug: string,
  options: { now?: boolean; json?: boolean },
) {
  const result = await withDatabase(ctx, async ({ db }) => {
    const tenant = await findTenant(db, slug);
    if (!tenant) throw new DomainError('not_found', `no tenant with slug or id "${slug}"`);
    await startPurge(db, tenant.id, { ignoreGrace: options.now });
    for (let i = 0; i < 600; i++) {
      const row = await db
        .selectFrom('tenants')
        .select('status')
        .where('id', '=', tenant.id)
        .executeTakeFirstOrThrow();
      if (row.status === 'purged') return { slug: tenant.slug, status: 'purged' as const };
      await new Promise((r) => setTimeout(r, 100));
    }
    return { slug: tenant.slug, status: 'queued' as const };
  });
  if (options.json) return printJson(result);
  process.stdout.write(
    result.status === 'purged'
      ? `${result.slug} purged: containers, routes and stored data removed (see the audit log).\n`
      : `${result.slug}: purge queued; a running worker (aiqso up or aiqso worker) will finish it.\n`,
  );
}
