import { statfs } from 'node:fs/promises';
import os from 'node:os';
import { sql, type Kysely } from 'kysely';
import type { AddressRoom, ComputeDriver, DriverKind } from '../core/compute.ts';
import { newId } from '../core/ids.ts';
import type { ResourceRef } from '../core/reconcile.ts';
import { notFound } from '../core/errors.ts';
import {
  allocatableMemoryMb,
  diskRequestGb,
  capacityRefusal,
  memoryRequest,
  type Claim,
  type HostCapacity,
  type HostPolicy,
  type HostUsage,
} from '../core/services.ts';
import { writeOutbox } from '../orchestrator/outbox.ts';
import { requestReconcile } from '../orchestrator/queue.ts';
import type { DB } from '../db/tables.ts';
import { TENANT_KIND, TENANT_SERVICE_KIND } from '../core/kinds.ts';

/** The memory an idle dashboard is counted for by placement (measured: see DASHBOARD_CLAIM). */
export const DASHBOARD_REQUEST_MB = 32;

/**
 * The disk a dashboard is counted for by placement, in MB. Measured: a dashboard
 * container on lxc is an overlay over the shared template whose own layer held
 * 88 KB after it went live (`du -sh <lxc path>/<container>`, 1,000 tenants on
 * one host, 7 Dec 2026); its app is bind-mounted read-only and it keeps no
 * data, so what grows is its log. The 1 GB limit counted in full stopped a
 * 252 GB host at 251 tenants.
 */
export const DASHBOARD_DISK_REQUEST_MB = 64;

/**
 * What a tenant's dashboard container claims (the tenant reconciler deploys it
 * with these limits). The request is from measurement: an idle dashboard's
 * cgroup memory.current on lxc (see docs/drivers.md, "Requests and limits"),
 * with headroom; the limit is what it may grow to under load.
 */
export const DASHBOARD_CLAIM: Claim = {
  memory_mb: 128,
  request_memory_mb: DASHBOARD_REQUEST_MB,
  cores: 1,
  disk_gb: 1,
  request_disk_mb: DASHBOARD_DISK_REQUEST_MB,
};

export interface HostRow extends HostCapacity {
  id: string;
  /** Since when something waits for room on it (one alert per shortage); null: nothing waits. */
  capacity_short_since: Date | null;
}

/** Where placement looks for a host, and what it may promise on it (unset: no reserve, no overcommit). */
export interface PlacementOptions {
  driver: DriverKind;
  dataDir: string;
  policy?: HostPolicy;
}

/** This machine, as a `hosts` row: its memory, CPUs, and the size of the file system holding the data dir. */
async function thisMachine(driver: DriverKind, dataDir: string) {
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
export async function lockPlacementHost(trx: Kysely<DB>, options: PlacementOptions): Promise<HostRow> {
  const pick = () =>
    trx
      .selectFrom('hosts')
      .select(['id', 'name', 'memory_mb', 'disk_gb', 'cores', 'max_containers', 'capacity_short_since'])
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
 * What the containers on `hostId` claim: every placed tenant dashboard and
 * every tenant service whose resource is not deleted (a stopped or failed one
 * keeps its claim until it is removed). Memory counts each one's request (a
 * service without one: its limit). A tenant still waiting for placement
 * (no host yet, its dashboard not created) claims nothing.
 */
export async function hostUsage(
  trx: Kysely<DB>,
  hostId: string,
  exceptId?: string,
): Promise<HostUsage & { cores: number }> {
  const { rows } = await sql<{ memory_mb: number; disk_gb: number; cores: number; containers: number }>`
    SELECT coalesce(sum(CASE WHEN r.kind = ${TENANT_KIND} THEN ${memoryRequest(DASHBOARD_CLAIM)}
                             ELSE least((r.spec -> 'resources' ->> 'memory_mb')::int,
                                        coalesce((r.spec -> 'resources' ->> 'request_memory_mb')::int,
                                                 (r.spec -> 'resources' ->> 'memory_mb')::int)) END), 0)::int AS memory_mb,
           coalesce(sum(CASE WHEN r.kind = ${TENANT_KIND} THEN ${diskRequestGb(DASHBOARD_CLAIM)}::float8
                             ELSE (r.spec -> 'resources' ->> 'disk_gb')::float8 END), 0)::float8 AS disk_gb,
           coalesce(sum(CASE WHEN r.kind = ${TENANT_KIND} THEN ${DASHBOARD_CLAIM.cores}
                             ELSE coalesce((r.spec -> 'resources' ->> 'cores')::numeric, 0) END), 0)::float8 AS cores,
           count(*)::int AS containers
      FROM resources r LEFT JOIN tenants t ON t.id = r.tenant_id
     WHERE r.kind IN (${TENANT_KIND}, ${TENANT_SERVICE_KIND})
       AND r.phase <> 'deleted'
       AND t.status <> 'purged'
       AND r.id <> ${exceptId ?? ''}
       AND (t.host_id = ${hostId}
            -- Before placement recorded hosts, a live tenant's containers were on the only host; a tenant
            -- that is still provisioning without a host waits for placement and has no container yet.
            OR (t.host_id IS NULL AND NOT (r.kind = ${TENANT_KIND} AND t.status = 'provisioning')))`.execute(
    trx,
  );
  return rows[0]!;
}

/** How a step waiting for room says so in its status (`waitingFor`): the reason follows. */
export const CAPACITY_WAIT = 'capacity: ';

/** How soon a resource waiting for room looks again by itself (it is also woken when room frees). */
export const CAPACITY_POLL = { minMs: 1000, maxMs: 30_000 };

/** Resources (other than `except`) whose status shows a step waiting for room on a host. */
async function capacityWaiters(db: Kysely<DB>, except?: ResourceRef): Promise<ResourceRef[]> {
  const { rows } = await sql<ResourceRef>`
    SELECT r.kind, r.id FROM resources r
     WHERE r.phase <> 'deleted' AND NOT r.deleted
       AND NOT (r.kind = ${except?.kind ?? ''} AND r.id = ${except?.id ?? ''})
       AND EXISTS (SELECT 1 FROM jsonb_array_elements(r.steps) s
                    WHERE s ->> 'state' = 'waiting' AND starts_with(s ->> 'waitingFor', ${CAPACITY_WAIT}))
     ORDER BY r.created_at, r.id`.execute(db);
  return rows;
}

/**
 * Room freed (a tenant purged, a service removed, a host added or changed):
 * reconcile every resource waiting for room now, rather than at its next
 * look. Returns how many were woken.
 */
export async function wakeCapacityWaiters(db: Kysely<DB>): Promise<number> {
  const waiters = await capacityWaiters(db);
  for (const ref of waiters) await requestReconcile(db, ref, { reason: 'capacity freed' });
  return waiters.length;
}

/**
 * Tenants waiting for room ahead of `resource` (arrival order: when each began to wait, then id),
 * not placed yet: their dashboards claim nothing on a host until placed, so placement keeps room
 * for them. `since`: when `resource` itself began to wait (null: it has not, it arrives now).
 */
async function tenantsAhead(
  db: Kysely<DB>,
  resource: ResourceRef,
  since: Date | null,
): Promise<{ id: string; slug: string }[]> {
  const { rows } = await sql<{ id: string; slug: string }>`
    SELECT r.id, t.slug FROM resources r
      JOIN tenants t ON t.id = r.id
      CROSS JOIN LATERAL (
        SELECT min((s ->> 'waitingSince')::timestamptz) AS since FROM jsonb_array_elements(r.steps) s
         WHERE s ->> 'state' = 'waiting' AND starts_with(s ->> 'waitingFor', ${CAPACITY_WAIT})) w
     WHERE r.kind = ${TENANT_KIND} AND r.phase <> 'deleted' AND NOT r.deleted
       AND t.host_id IS NULL AND t.status NOT IN ('cancelled', 'purged')
       AND w.since IS NOT NULL
       AND NOT (r.kind = ${resource.kind} AND r.id = ${resource.id})
       AND (${since}::timestamptz IS NULL OR (w.since, r.id) < (${since}::timestamptz, ${resource.id}))
     ORDER BY w.since, r.id`.execute(db);
  return rows;
}

export interface PlaceRequest {
  /** The resource being placed (its own claim is not counted against it). */
  resource: ResourceRef;
  /**
   * When this resource began to wait for room (the step's `waitingSince`), or null on its first try.
   * Tenants waiting since earlier are placed first (arrival order).
   */
  waitingSince?: Date | null;
  need: Claim;
  /** What is placed, for the refusal: `the dashboard`, a service key. */
  what: string;
  /** Who waits, for the operator's alert: `tenant acme`. */
  owner: string;
  /** The driver's free container addresses (ComputeDriver.addressRoom); none: addresses are not short. */
  addressRoom?: () => Promise<AddressRoom | undefined>;
  /** Record the placement (in the host-locked transaction). */
  onPlaced?: (trx: Kysely<DB>, host: HostRow) => Promise<void>;
}

/**
 * Place a container, or say why not: on the placement host (locked), its
 * claim against the host's allocatable memory, disk, CPUs and container
 * count, and a free address. Waiters are placed in arrival order: tenants
 * that began waiting earlier keep the room they fit into (in their order), and
 * this one gets what is left; an earlier one too large for the room left does
 * not block a smaller one behind it. Once placed, the next tenant in line is
 * woken, so room freed for several is filled one after the other at once.
 * A refusal is a wait, not a failure: the first
 * refusal on a host with nothing else waiting alerts the operators once
 * (outbox `alert`, naming what is short), and the host is marked short until
 * nothing waits for room on it any more. Returns the refusal, or null once placed.
 */
export async function placeOrRefuse(
  db: Kysely<DB>,
  options: PlacementOptions,
  req: PlaceRequest,
): Promise<string | null> {
  const room = await req.addressRoom?.();
  const addressRefusal = room ? noAddressLeft(room) : null;
  return db.transaction().execute(async (trx) => {
    const host = await lockPlacementHost(trx, options);
    const used = await hostUsage(trx, host.id, req.resource.id);
    const ahead = await tenantsAhead(trx, req.resource, req.waitingSince ?? null);
    // The room the tenants ahead fit into, in their order, is theirs: memory, disk, a container
    // slot and an address each, while there are addresses left.
    let kept: HostUsage = used;
    let keptFor = 0;
    let addressesLeft = room ? room.free : Infinity;
    let firstKept: { id: string } | undefined;
    for (const tenant of ahead) {
      if (addressesLeft <= 0) break;
      if (capacityRefusal(host, kept, DASHBOARD_CLAIM, 'the dashboard', options.policy) !== null) continue;
      firstKept ??= tenant;
      kept = {
        memory_mb: kept.memory_mb + memoryRequest(DASHBOARD_CLAIM),
        disk_gb: kept.disk_gb + diskRequestGb(DASHBOARD_CLAIM),
        containers: kept.containers + 1,
      };
      keptFor++;
      addressesLeft--;
    }
    const keptRefusal =
      capacityRefusal(host, kept, req.need, req.what, options.policy) !== null
        ? `host ${host.name} has room for ${req.what}, kept for ${keptFor} tenant(s) waiting longer`
        : addressesLeft <= 0
          ? `network ${room!.network} has ${room!.free} free container address(es), kept for ${keptFor} tenant(s) waiting longer`
          : null;
    const refusal =
      addressRefusal ?? capacityRefusal(host, used, req.need, req.what, options.policy) ?? keptRefusal;
    const shortSince = host.capacity_short_since;
    if (refusal) {
      // Room is kept for a tenant ahead: it looks now rather than at its next poll.
      if (firstKept && !addressRefusal)
        await requestReconcile(trx, { kind: TENANT_KIND, id: firstKept.id }, { reason: 'room kept for it' });
      if (shortSince === null) {
        const since = new Date();
        await trx
          .updateTable('hosts')
          .set({ capacity_short_since: since })
          .where('id', '=', host.id)
          .execute();
        await writeOutbox(trx, {
          key: `alert:capacity:${host.id}:${since.toISOString()}`,
          kind: 'alert',
          payload: {
            subject: `capacity: host ${host.name} is full; ${req.owner} waits`,
            text:
              `${req.owner} cannot be placed: ${refusal}.\n\n` +
              `It waits (it is not failed) and is placed by itself as soon as there is room: free some ` +
              `(purge a tenant, remove a service, lower a request), add a host, or change AIQSO_HOST_RESERVE_MB / ` +
              `AIQSO_HOST_OVERCOMMIT. This is the only alert until nothing waits for room on ${host.name} any more.\n`,
            host: host.name,
            short: refusal,
            resource: req.resource,
          },
        });
      }
      return refusal;
    }
    await req.onPlaced?.(trx, host);
    // The next in line looks now (it may fit in what is left), not at its next poll. On a first try
    // everyone waiting is ahead, so that is the list read above.
    const [next] = req.waitingSince ? await tenantsAhead(trx, req.resource, null) : ahead;
    if (next) await requestReconcile(trx, { kind: TENANT_KIND, id: next.id }, { reason: 'placed in turn' });
    if (shortSince !== null && (await capacityWaiters(trx, req.resource)).length === 0)
      await trx.updateTable('hosts').set({ capacity_short_since: null }).where('id', '=', host.id).execute();
    return null;
  });
}

/** Why one more container gets no address, or null (see ComputeDriver.addressRoom). */
function noAddressLeft(room: AddressRoom): string | null {
  if (room.free > 0) return null;
  return `network ${room.network} has no free container address (all ${room.size} are taken)`;
}

/** Why the driver cannot give one more container an address, or null. */
export async function addressRefusal(compute: ComputeDriver): Promise<string | null> {
  const room = await compute.addressRoom?.();
  return room ? noAddressLeft(room) : null;
}

/** A host as the operators see it: what it has, what placement may promise, what its containers claim. */
export interface HostOverview {
  id: string;
  name: string;
  driver: DriverKind;
  address: string | null;
  /** A draining host takes no new containers; those on it stay. */
  draining: boolean;
  /** Since when something has waited for room on it; null when nothing waits. */
  capacityShortSince: Date | null;
  memory: { totalMb: number; allocatableMb: number; requestedMb: number };
  /** CPUs are shared between containers: the requested cores may exceed the host's. */
  cpu: { cores: number; requestedCores: number };
  disk: { totalGb: number; requestedGb: number };
  containers: { count: number; max: number | null };
}

/** Every host with its capacity and what its containers claim (`GET /api/v1/hosts`), by name. */
export async function hostsOverview(db: Kysely<DB>, policy: HostPolicy): Promise<HostOverview[]> {
  const hosts = await db.selectFrom('hosts').selectAll().orderBy('name').execute();
  const out: HostOverview[] = [];
  for (const h of hosts) {
    const used = await hostUsage(db, h.id);
    out.push({
      id: h.id,
      name: h.name,
      driver: h.driver,
      address: h.address,
      draining: h.draining,
      capacityShortSince: h.capacity_short_since,
      memory: {
        totalMb: h.memory_mb,
        allocatableMb: allocatableMemoryMb(h, policy),
        requestedMb: used.memory_mb,
      },
      cpu: { cores: h.cores, requestedCores: used.cores },
      disk: { totalGb: h.disk_gb, requestedGb: Math.round(used.disk_gb * 10) / 10 },
      containers: { count: used.containers, max: h.max_containers },
    });
  }
  return out;
}

/**
 * Drain a host (placement puts no new container on it; those on it stay and
 * run) or take it back into placement. `ref` is the host's id or name.
 * Undraining makes room: whatever waits for room looks again at once.
 * Returns the host's name and whether anything changed.
 */
export async function setHostDraining(
  db: Kysely<DB>,
  ref: string,
  draining: boolean,
): Promise<{ id: string; name: string; draining: boolean; changed: boolean }> {
  const host = await db
    .selectFrom('hosts')
    .select(['id', 'name', 'draining'])
    .where((eb) => eb.or([eb('id', '=', ref), eb('name', '=', ref)]))
    .executeTakeFirst();
  if (!host) throw notFound(`host ${ref}`);
  // Only the request that flips it says it changed (two operators at once: one of them).
  const flipped = await db
    .updateTable('hosts')
    .set({ draining })
    .where('id', '=', host.id)
    .where('draining', '=', !draining)
    .returning('id')
    .executeTakeFirst();
  if (flipped && !draining) await wakeCapacityWaiters(db);
  return { id: host.id, name: host.name, draining, changed: flipped !== undefined };
}
