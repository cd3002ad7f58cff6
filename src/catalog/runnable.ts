import { proxmoxImageRefusal, type DriverKind } from '../core/compute.ts';
import type { ServiceTemplate } from './schema.ts';

/**
 * What each compute driver runs, by catalog kind. The process driver runs
 * only `app` services (Node.js apps shipped with the platform); lxc runs
 * apps, clones of a prepared template container and OCI images; Proxmox
 * runs apps (uploaded as OCI archives), clones of a template VMID and OCI
 * images the cluster pulls (init commands and a working directory through
 * the image's shell), except an image whose command is replaced without its
 * entrypoint.
 */
export const DRIVER_RUNS: Record<DriverKind, readonly ServiceTemplate['kind'][]> = {
  process: ['app'],
  lxc: ['app', 'clone', 'image'],
  proxmox: ['app', 'clone', 'image'],
};

/** What the platform provides besides compute: a Redis for services (AIQSO_SERVICES_REDIS_URL). */
export interface PlatformProvides {
  redis: boolean;
}

/** What this configuration provides for services. */
export function platformProvides(config: { servicesRedisUrl?: string }): PlatformProvides {
  return { redis: config.servicesRedisUrl !== undefined };
}

/**
 * Why `driver` cannot run the service, or null when it can. The one rule for
 * what the catalog offers and what a subscription accepts: a service that
 * cannot run here is never offered.
 */
export function whyNotRunnable(
  t: ServiceTemplate,
  driver: DriverKind,
  provides: PlatformProvides = { redis: false },
): string | null {
  if (!DRIVER_RUNS[driver].includes(t.kind)) {
    return `${t.key} is an ${t.kind} service; the ${driver} driver runs only ${DRIVER_RUNS[driver].join(', ')} services`;
  }
  if (t.database.redis && !provides.redis) {
    return `${t.key} needs a Redis user of its own, and this platform has no Redis for services (AIQSO_SERVICES_REDIS_URL is not set)`;
  }
  if (t.kind === 'clone' && (driver === 'proxmox' ? t.template.proxmox : t.template.lxc) === undefined) {
    return `${t.key} has no template container for the ${driver} driver`;
  }
  if (t.kind === 'image' && driver === 'proxmox') {
    const refusal = proxmoxImageRefusal(t);
    if (refusal) return `${t.key} cannot run on the proxmox driver: ${refusal}`;
  }
  return null;
}
