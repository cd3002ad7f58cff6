import os from 'node:os';
import { loadPlans, PLANS_FILE } from '../../catalog/plans.ts';
import { DomainError } from '../../core/errors.ts';
import { findTenant } from '../../db/tenants.ts';
import { appendAudit } from '../../identity/audit.ts';
import { retryService } from '../../services/retry.ts';
import { listTenantServices } from '../../services/subscriptions.ts';
import { withDatabase, type CommandContext } from '../context.ts';
import { printJson } from '../output.ts';

/** The operating-system user who ran the command, for the audit log. */
function operator(): string | null {
  try {
    return os.userInfo().username;
  } catch {
    return null;
  }
}

/**
 * `aiqso services retry <tenant> <service>`: what `POST
 * /api/v1/tenants/{tenant}/services/{service}/retry` does, as an operator.
 * Audited, refusals too. Exit 2 when the service has not failed (or the plan
 * is full), 3 when there is no such tenant or service.
 */
export async function servicesRetry(
  ctx: CommandContext,
  tenantRef: string,
  key: string,
  options: { json?: boolean },
): Promise<void> {
  const view = await withDatabase(ctx, async ({ db }) => {
    const tenant = await findTenant(db, tenantRef);
    if (!tenant) throw new DomainError('not_found', `no tenant with slug or id "${tenantRef}"`);
    const audit = (result: 'success' | 'failure', details: Record<string, unknown>) =>
      appendAudit(db, {
        actorType: 'operator',
        actorId: operator(),
        tenantId: tenant.id,
        action: 'tenant.service.retry',
        targetType: 'service',
        targetId: key,
        result,
        details: { via: 'cli', ...details },
      });
    try {
      await retryService(db, loadPlans(PLANS_FILE), tenant.id, key);
    } catch (err) {
      if (err instanceof DomainError && err.blame === 'caller')
        await audit('failure', { error: err.message });
      throw err;
    }
    await audit('success', {});
    const [service] = await listTenantServices(db, tenant.id, ctx.config.publicUrl, key);
    return service!;
  });
  if (options.json) return printJson(view);
  process.stdout.write(`${tenantRef} ${key}: deploying again (status ${view.status}).\n`);
}
