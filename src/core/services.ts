/**
 * Tenant services: a tenant's subscription to a catalog service (a
 * **template**), deployed as its own container, database and route. This file
 * holds the pure decisions (capacity, plan limits, URLs); no I/O.
 */

/** The resources a container claims on its host, in the catalog's units. */
export interface Claim {
  memory_mb: number;
  cores: number;
  disk_gb: number;
}

export interface HostCapacity {
  name: string;
  memory_mb: number;
  disk_gb: number;
  max_containers: number | null;
}

export interface HostUsage {
  memory_mb: number;
  disk_gb: number;
  containers: number;
}

/**
 * Whether `host` has room for `need` on top of what its containers already
 * claim. Memory and disk are reserved in full (stopped containers keep their
 * claim, so a restart never finds the host full); cores are shared, as every
 * driver lets containers share CPUs. Returns the refusal message, or null.
 */
export function capacityRefusal(
  host: HostCapacity,
  used: HostUsage,
  need: Claim,
  service: string,
): string | null {
  const freeMemory = host.memory_mb - used.memory_mb;
  if (need.memory_mb > freeMemory) {
    return `host ${host.name} has ${Math.max(0, freeMemory)} MB of memory free; ${service} needs ${need.memory_mb} MB`;
  }
  const freeDisk = host.disk_gb - used.disk_gb;
  if (need.disk_gb > freeDisk) {
    return `host ${host.name} has ${Math.max(0, freeDisk)} GB of disk free; ${service} needs ${need.disk_gb} GB`;
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
