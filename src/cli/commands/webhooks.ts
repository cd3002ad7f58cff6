import { DomainError } from '../../core/errors.ts';
import { findTenant } from '../../db/tenants.ts';
import {
  createEndpoint,
  findDelivery,
  listDeliveries,
  listEndpoints,
  redeliver,
  removeEndpoint,
  type Owner,
} from '../../events/endpoints.ts';
import { loadSecretBox } from '../../identity/master-key.ts';
import { webhookPolicy } from '../../platform/webhooks.ts';
import { withDatabase, type CommandContext } from '../context.ts';
import { printJson, printTable } from '../output.ts';

/**
 * `aiqso webhooks add|list|remove|deliveries|redeliver`: the operator's event
 * webhooks (and, with --tenant, a tenant's own). Exit 2 for a refused URL or
 * event list, 3 for no such endpoint, delivery or tenant.
 */
async function ownerFor(db: Parameters<typeof findTenant>[0], tenant?: string): Promise<Owner> {
  if (!tenant) return { tenantId: null };
  const found = await findTenant(db, tenant);
  if (!found) throw new DomainError('not_found', `no tenant with slug or id "${tenant}"`);
  return { tenantId: found.id };
}

export async function webhooksAdd(
  ctx: CommandContext,
  url: string,
  options: { events: string; description?: string; tenant?: string; json?: boolean },
): Promise<void> {
  const box = await loadSecretBox({ configured: ctx.config.masterKey, dataDir: ctx.config.dataDir });
  const created = await withDatabase(ctx, async ({ db }) =>
    createEndpoint(db, box, webhookPolicy(ctx.config), await ownerFor(db, options.tenant), {
      url,
      events: options.events.split(','),
      description: options.description,
    }),
  );
  if (options.json) return printJson(created);
  printTable([{ ...created.endpoint, events: created.endpoint.events.join(',') }], ['id', 'url', 'events']);
  process.stdout.write(
    `\nSigning secret (shown only now; verify AIQSO-Signature with it):\n${created.secret}\n`,
  );
}

export async function webhooksList(ctx: CommandContext, options: { json?: boolean }): Promise<void> {
  const endpoints = await withDatabase(ctx, ({ db }) => listEndpoints(db, 'all'));
  if (options.json) return printJson({ endpoints });
  printTable(
    endpoints.map((e) => ({ ...e, tenant: e.tenant ?? '(operator)', events: e.events.join(',') })),
    ['id', 'tenant', 'url', 'events', 'createdAt'],
  );
}

export async function webhooksRemove(ctx: CommandContext, id: string): Promise<void> {
  await withDatabase(ctx, ({ db }) => removeEndpoint(db, 'all', id));
  process.stdout.write(`removed ${id}\n`);
}

export async function webhooksDeliveries(
  ctx: CommandContext,
  options: { endpoint?: string; limit?: string; json?: boolean },
): Promise<void> {
  const limit = options.limit === undefined ? 50 : Number(options.limit);
  if (!Number.isInteger(limit) || limit < 1 || limit > 1000)
    throw new DomainError('bad_request', '--limit: expected a whole number from 1 to 1000');
  const deliveries = await withDatabase(ctx, ({ db }) =>
    listDeliveries(db, 'all', { endpoint: options.endpoint, limit }),
  );
  if (options.json) return printJson({ deliveries });
  printTable(
    deliveries.map((d) => {
      const last = d.history.at(-1);
      return {
        ...d,
        durationMs: last?.durationMs ?? null,
        answer: last ? (last.error ?? `${last.status} ${last.excerpt ?? ''}`.trim()).slice(0, 60) : null,
      };
    }),
    ['id', 'endpoint', 'type', 'status', 'attempts', 'lastStatus', 'durationMs', 'answer', 'createdAt'],
  );
}

export async function webhooksRedeliver(ctx: CommandContext, id: string): Promise<void> {
  await withDatabase(ctx, async ({ db }) => {
    const found = await findDelivery(db, 'all', id);
    if (!found) throw new DomainError('not_found', `no webhook delivery ${id}`);
    await redeliver(db, found.id);
  });
  process.stdout.write(`delivery ${id} queued again; the workers deliver it now\n`);
}
