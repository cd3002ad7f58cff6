/**
 * Tenant services: a tenant's subscription to a catalog service (a
 * **template**), deployed as its own container, database and route. This file
 * holds the pure decisions (capacity, plan limits, URLs); no I/O.
 */

/**
 * The resources a container claims on its host, in the catalog's units. As in
 * Kubernetes, memory has a *request* and a *limit*, apart: the request is what
 * placement counts against the host, the limit (`memory_mb`) is the cgroup's
 * maximum (memory.max on lxc). Without a request, the limit is the request.
 */
export interface Claim {
  /** The limit: the most the container may use. */
  memory_mb: number;
  /** The request: what placement counts; at most `memory_mb`. */
  request_memory_mb?: number;
  cores: number;
  /** The disk the container may fill. */
  disk_gb: number;
  /** The disk placement counts, in MB; at most `disk_gb`. Without it, `disk_gb` is counted. */
  request_disk_mb?: number;
}

/** What placement counts of a claim's memory. */
export function memoryRequest(claim: Pick<Claim, 'memory_mb' | 'request_memory_mb'>): number {
  return Math.min(claim.memory_mb, claim.request_memory_mb ?? claim.memory_mb);
}

/** What placement counts of a claim's disk, in GB (a fraction for a request in MB). */
export function diskRequestGb(claim: Pick<Claim, 'disk_gb' | 'request_disk_mb'>): number {
  return Math.min(claim.disk_gb, (claim.request_disk_mb ?? claim.disk_gb * 1024) / 1024);
}

/** A disk size for a person: whole GB, or MB below one GB. */
function gbText(gb: number): string {
  return gb >= 1 || gb === 0 ? `${Math.floor(gb)} GB` : `${Math.ceil(gb * 1024)} MB`;
}

export interface HostCapacity {
  name: string;
  memory_mb: number;
  disk_gb: number;
  /** The host's CPUs, where its model records them. */
  cores?: number | null;
  max_containers: number | null;
}

/**
 * What placement may promise on a host: its memory less `reserveMb` (the
 * host's own OS and platform), times `overcommit` (1: never more than it has).
 */
export interface HostPolicy {
  reserveMb: number;
  overcommit: number;
}

export const NO_RESERVE: HostPolicy = { reserveMb: 0, overcommit: 1 };

/** The memory requests a host may hold under `policy`. */
export function allocatableMemoryMb(host: Pick<HostCapacity, 'memory_mb'>, policy: HostPolicy): number {
  return Math.max(0, Math.floor((host.memory_mb - policy.reserveMb) * policy.overcommit));
}

export interface HostUsage {
  /** The sum of the memory requests of the host's containers. */
  memory_mb: number;
  /** The sum of their disk requests, in GB (fractions: a dashboard counts a few MB). */
  disk_gb: number;
  containers: number;
}

/**
 * Whether `host` has room for `need` on top of what its containers already
 * claim. Memory requests and disk are reserved in full (stopped containers
 * keep their claim, so a restart never finds the host full), against the
 * host's allocatable memory (see `HostPolicy`); a limit larger than the
 * host's memory, or more cores than the host has, never fits; cores are
 * otherwise shared, as every driver lets containers share CPUs. Returns the
 * refusal message, or null.
 */
export function capacityRefusal(
  host: HostCapacity,
  used: HostUsage,
  need: Claim,
  service: string,
  policy: HostPolicy = NO_RESERVE,
): string | null {
  if (need.memory_mb > host.memory_mb) {
    return `host ${host.name} has ${host.memory_mb} MB of memory in all; ${service} may use up to ${need.memory_mb} MB`;
  }
  if (host.cores && need.cores > host.cores) {
    return `host ${host.name} has ${host.cores} CPUs; ${service} needs ${need.cores}`;
  }
  const request = memoryRequest(need);
  const freeMemory = allocatableMemoryMb(host, policy) - used.memory_mb;
  if (request > freeMemory) {
    return `host ${host.name} has ${Math.max(0, freeMemory)} MB of memory free; ${service} needs ${request} MB`;
  }
  const freeDisk = host.disk_gb - used.disk_gb;
  const disk = diskRequestGb(need);
  if (disk > freeDisk) {
    return `host ${host.name} has ${gbText(Math.max(0, freeDisk))} of disk free; ${service} needs ${gbText(disk)}`;
  }
  if (host.max_containers !== null && used.containers >= host.max_containers) {
    return `host ${host.name} already runs its maximum of ${host.max_containers} containers; ${service} needs one more`;
  }
  return null;
}

/** A tenant's workspace origin: `<scheme>://<slug>.<base>[:port]`, from the platform's public URL. */
export function tenantUrl(publicUrl: string, slug: string): string {
  return publicUrl.replace('://', `://${slug}.`);
}

/** The service's public URL: `<scheme>://<slug>.<base>[:port]/<path>/`. */
export function serviceUrl(publicUrl: string, slug: string, routePath: string): string {
  return `${tenantUrl(publicUrl, slug)}${routePath}/`;
}

/** A tenant service's status, as `tenant_services.status` records it. */
export const TENANT_SERVICE_STATUSES = [
  'pending',
  'deploying',
  'active',
  'degraded',
  'stopped',
  'removing',
  'removed',
  'failed',
] as const;
export type TenantServiceStatus = (typeof TENANT_SERVICE_STATUSES)[number];
