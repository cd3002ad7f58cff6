import type { Kysely } from 'kysely';
import type { LogOptions, ServiceLogs } from '../core/compute.ts';
import { conflict, DomainError, notFound } from '../core/errors.ts';
import type { DB } from '../db/tables.ts';

/** A tenant service's container, as its logs are read from it. */
export interface LogTarget {
  name: string;
  status: string;
}

/**
 * The container of the tenant's service `key` (its latest subscription), or
 * why its logs cannot be read: no such service (not_found), removed, or no
 * container yet (conflict).
 */
export async function serviceLogTarget(db: Kysely<DB>, tenantId: string, key: string): Promise<LogTarget> {
  const row = await db
    .selectFrom('tenant_services as ts')
    .innerJoin('services as s', 's.id', 'ts.service_id')
    .select(['ts.status', 'ts.container_name', 'ts.removed_at'])
    .where('ts.tenant_id', '=', tenantId)
    .where('s.key', '=', key)
    .orderBy('ts.created_at', 'desc')
    .limit(1)
    .executeTakeFirst();
  if (!row) throw notFound(`service ${key} of this tenant`);
  if (row.status === 'removed')
    throw conflict(
      `service ${key} was removed${row.removed_at ? ` on ${row.removed_at.toISOString()}` : ''}: its container and its logs are gone`,
      { status: row.status },
    );
  if (!row.container_name)
    throw conflict(`service ${key} has no container yet (it is ${row.status}); its logs start once it runs`, {
      status: row.status,
    });
  return { name: row.container_name, status: row.status };
}

/** Read `target`'s logs with `reader`; a container the reader does not find is refused with the reason. */
export async function readServiceLogs(
  reader: (name: string, options: LogOptions) => Promise<ServiceLogs>,
  target: LogTarget,
  key: string,
  options: LogOptions,
): Promise<ServiceLogs> {
  try {
    return await reader(target.name, options);
  } catch (err) {
    if (err instanceof DomainError && err.code === 'not_found')
      throw conflict(
        target.status === 'pending' || target.status === 'deploying'
          ? `service ${key} has no container yet (it is ${target.status}); its logs start once it runs`
          : `service ${key}'s container is not on this host (it is ${target.status}): its logs cannot be read here`,
        { status: target.status },
      );
    throw err;
  }
}
