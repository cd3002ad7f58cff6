import { statfs } from 'node:fs/promises';
import os from 'node:os';
import { sql, type Kysely } from 'kysely';
import { newId } from '../core/ids.ts';
import type { Claim, HostCapacity, HostUsage } from '../core/services.ts';
import type { DB } from '../db/tables.ts';
import { TENANT_KIND, TENANT_SERVICE_KIND } from '../core/kinds.ts';

/** What a tenant's dashboard container claims (the tenant reconciler deploys it with these limits). */
export const DASHBOARD_CLAIM: Claim = { memory_mb: 128, cores: 1, disk_gb: 1 };

export interface HostRow extends HostCapacity {
  id: string;
}

/** This machine, as a `hosts` row: its memory, CPUs, and the size of the file system holding the data dir. */
async function thisMachine(driver: 'process' | 'lxc' | 'proxmox', dataDir: string) {
  const fs = await statfs(dataDir).catch(() => undefined);
  const diskGb = fs ? Math.floor((fs.blocks * fs.bsize) / 1024 ** 3) : 1;
  return {
    id: newId('host'),
    name: os.hostname() || 'localhost',
    driver,
    address: '127.0.0.1',
    memory_mb: Math.max(1, Math.floor(os.totalmem() / 1024 ** 2)),
    cores: Math.max(1, os.cpus().length),
    disk_gb: Math.max(1, diskGb),
  };
}

/**
 * The host new containers go on, locked (FOR UPDATE) until the caller's
 * transaction ends, so two subscriptions never both take the last free
 * memory. The host with the most memory among the configured driver's
 * non-draining hosts; when the platform has no host row yet, this machine is
 * recorded as one (the process and lxc drivers run containers here).
 */
export async function lockPlacementHost(
  trx: Kysely<DB>,
  options: { driver: 'process' | 'lxc' | 'proxmox'; dataDir: string },
): Promise<HostRow> {
  const pick = () =>
    trx
      .selectFrom('hosts')
      .select(['id', 'name', 'memory_mb', 'disk_gb', 'max_containers'])
      .where('driver', '=', options.driver)
      .where('draining', '=', false)
      .orderBy('memory_mb', 'desc')
      .orderBy('id')
      .limit(1)
      .forUpdate()
      .executeTakeFirst();
  const found = await pick();
  if (found) return found;
  await trx
    .insertInto('hosts')
    .values(await thisMachine(options.driver, options.dataDir))
    .onConflict((oc) => oc.column('name').doNothing())
    .execute();
  const host = await pick();
  if (!host)
    throw new Error(`no usable ${options.driver} host (this machine's row is draining or another driver's)`);
  return host;
}

/**
 * What the containers on `hostId` claim: every tenant dashboard and every
 * tenant service whose resource is not deleted (a stopped or failed one keeps
 * its claim until it is removed). Tenants without a host are on the only one.
 */
export async function hostUsage(trx: Kysely<DB>, hostId: string, exceptId?: string): Promise<HostUsage> {
  const { rows } = await sql<{ memory_mb: number; disk_gb: number; containers: number }>`
    SELECT coalesce(sum(CASE WHEN r.kind = ${TENANT_KIND} THEN ${DASHBOARD_CLAIM.memory_mb}
                             ELSE (r.spec -> 'resources' ->> 'memory_mb')::int END), 0)::int AS memory_mb,
           coalesce(sum(CASE WHEN r.kind = ${TENANT_KIND} THEN ${DASHBOARD_CLAIM.disk_gb}
                             ELSE (r.spec -> 'resources' ->> 'disk_gb')::int END), 0)::int AS disk_gb,
           count(*)::int AS containers
      FROM resources r LEFT JOIN tenants t ON t.id = r.tenant_id
     WHERE r.kind IN (${TENANT_KIND}, ${TENANT_SERVICE_KIND})
       AND r.phase <> 'deleted'
       AND r.id <> ${exceptId ?? ''}
       AND (t.host_id IS NULL OR t.host_id = ${hostId})`.execute(trx);
  return rows[0]!;
}
