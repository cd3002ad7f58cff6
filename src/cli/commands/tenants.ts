import os from 'node:os';
import { DomainError } from '../../core/errors.ts';
import type { Database } from '../../db/database.ts';
import { appendAudit } from '../../identity/audit.ts';
import { cancelTenant } from '../../lifecycle/cancel.ts';
import { findTenant, listTenants } from '../../db/tenants.ts';
import { startPurge } from '../../lifecycle/purge.ts';
import { TENANT_STATUSES, type TenantStatus } from '../../core/tenants.ts';
import { withDatabase, type CommandContext } from '../context.ts';
import { printJson, printTable } from '../output.ts';

const STATUSES: readonly string[] = TENANT_STATUSES;

export async function tenantsList(
  ctx: CommandContext,
  options: { json?: boolean; status?: string },
): Promise<void> {
  if (options.status && !STATUSES.includes(options.status)) {
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
    `${tenant.company ?? '(purged)'} (${tenant.slug})`,
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
      const err = step.lastError
        ? ` — ${step.lastError}`
        : step.state === 'running' && step.progress
          ? ` — ${step.progress}`
          : '';
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

/** Who ran the command, for the audit log: the operating-system user. */
function operator(): string | null {
  try {
    return os.userInfo().username;
  } catch {
    return null;
  }
}

async function auditOperator(
  db: Database,
  action: string,
  tenantId: string,
  details: Record<string, unknown>,
  result: 'success' | 'failure' = 'success',
) {
  await appendAudit(db, {
    actorType: 'operator',
    actorId: operator(),
    tenantId,
    action,
    targetType: 'tenant',
    targetId: tenantId,
    result,
    details: { via: 'cli', ...details },
  });
}

/** Run an operator's action on a tenant; a refusal is audited too, then reported. */
async function refusalsAudited<T>(db: Database, action: string, tenantId: string, fn: () => Promise<T>) {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof DomainError && err.blame === 'caller')
      await auditOperator(db, action, tenantId, { error: err.message }, 'failure');
    throw err;
  }
}

async function requireTenant(db: Database, slug: string) {
  const tenant = await findTenant(db, slug);
  if (!tenant) throw new DomainError('not_found', `no tenant with slug or id "${slug}"`);
  return tenant;
}

/**
 * `aiqso tenants cancel <slug>`: what a Stripe subscription deletion does —
 * cancelled, routes suspended at once, purge after AIQSO_GRACE_DAYS.
 * Idempotent: an already cancelled tenant keeps its purge date.
 */
export async function tenantsCancel(ctx: CommandContext, slug: string, options: { json?: boolean }) {
  const outcome = await withDatabase(ctx, async ({ db }) => {
    const tenant = await requireTenant(db, slug);
    const result = await refusalsAudited(db, 'tenant.cancel', tenant.id, () =>
      cancelTenant(db, tenant.id, { graceDays: ctx.config.graceDays }),
    );
    if (result.changed)
      await auditOperator(db, 'tenant.cancel', tenant.id, { purgeAfter: result.purgeAfter });
    return result;
  });
  if (options.json) return printJson(outcome);
  const when = outcome.purgeAfter?.toISOString() ?? 'unknown';
  process.stdout.write(
    outcome.changed
      ? `${outcome.slug} cancelled: its routes are suspended now; purge after ${when} (or aiqso tenants purge ${outcome.slug} --now).\n` +
          (outcome.liveSubscriptions.length
            ? `Stripe was not called: cancel ${outcome.liveSubscriptions.join(', ')} there too, or it keeps billing.\n`
            : '')
      : `${outcome.slug} was already cancelled; purge after ${when}.\n`,
  );
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
    const tenant = await requireTenant(db, slug);
    const wasPurged = tenant.status === 'purged';
    await refusalsAudited(db, 'tenant.purge', tenant.id, () =>
      startPurge(db, tenant.id, { ignoreGrace: options.now, dataDir: ctx.config.dataDir }),
    );
    if (!wasPurged) await auditOperator(db, 'tenant.purge', tenant.id, { now: options.now === true });
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
