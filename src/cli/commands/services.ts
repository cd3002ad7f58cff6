import os from 'node:os';
import { loadPlans, PLANS_FILE } from '../../catalog/plans.ts';
import { DomainError } from '../../core/errors.ts';
import { findTenant } from '../../db/tenants.ts';
import { appendAudit } from '../../identity/audit.ts';
import { MAX_LOG_LINES } from '../../core/compute.ts';
import { readServiceLogs, serviceLogTarget } from '../../services/logs.ts';
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

/**
 * A service's output as a terminal shows it: control characters (escape
 * sequences a service could use to rewrite the operator's screen) are shown
 * as `\xNN`, tabs kept.
 */
export function terminalSafe(line: string): string {
  return line.replace(
    // eslint-disable-next-line no-control-regex
    /[\x00-\x08\x0a-\x1f\x7f\x9b]/g,
    (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`,
  );
}

/**
 * `aiqso services logs <tenant> <service> [--lines N] [--follow]`: the last
 * lines of a tenant service's own output, read from the container's files on
 * this host (as `GET …/services/{service}/logs`), and with `--follow` what it
 * writes next until Ctrl-C. Exit 2 when the service has no container (not
 * deployed, removed) or the driver cannot read logs (proxmox), 3 when there is
 * no such tenant or service.
 */
export async function servicesLogs(
  ctx: CommandContext,
  tenantRef: string,
  key: string,
  options: { lines?: string; follow?: boolean; json?: boolean },
): Promise<void> {
  const lines = options.lines === undefined ? 100 : Number(options.lines);
  if (options.lines !== undefined && !/^\d+$/.test(options.lines))
    throw new DomainError('bad_request', `--lines must be a whole number from 0 to ${MAX_LOG_LINES}`);
  if (options.follow && options.json)
    throw new DomainError('bad_request', '--json cannot be combined with --follow');
  const target = await withDatabase(ctx, async ({ db }) => {
    const tenant = await findTenant(db, tenantRef);
    if (!tenant) throw new DomainError('not_found', `no tenant with slug or id "${tenantRef}"`);
    return serviceLogTarget(db, tenant.id, key);
  });
  const { logReader } = await import('../../compute/logs.ts');
  const ac = new AbortController();
  const logs = await readServiceLogs(logReader(ctx.config), target, key, {
    lines,
    ...(options.follow ? { follow: true, signal: ac.signal } : {}),
  });
  if (options.json) return printJson({ service: key, lines: logs.lines, truncated: logs.truncated });
  const print = (batch: string[]) => {
    if (batch.length) process.stdout.write(`${batch.map(terminalSafe).join('\n')}\n`);
  };
  print(logs.lines);
  if (!logs.follow) return;
  const stop = () => ac.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    for await (const batch of logs.follow) print(batch);
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
}
