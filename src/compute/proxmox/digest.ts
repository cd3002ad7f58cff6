import type { ContainerSpec } from '../../core/compute.ts';
import { configDigest } from '../../core/compute.ts';

/**
 * Which configuration a Proxmox container runs with, kept in its own config's
 * `description` (pure): `config=` the digest of the spec last written (what
 * the next start runs with), `applied=` the digest it was last started with by
 * the driver. Proxmox applies `env` when a container starts, so a config
 * written to a running container shows as `config` ≠ `applied` until a restart.
 */
export interface DescribedDigests {
  config?: string;
  applied?: string;
}

export function describe(spec: ContainerSpec, applied?: string): string {
  const words = [`aiqso tenant=${spec.tenantId}`, `role=${spec.role}`, `config=${configDigest(spec)}`];
  if (applied) words.push(`applied=${applied}`);
  return words.join(' ');
}

export function readDigests(description: string | undefined): DescribedDigests {
  const text = description ?? '';
  const config = /(?:^|\s)config=([0-9a-f]+)/.exec(text)?.[1];
  const applied = /(?:^|\s)applied=([0-9a-f]+)/.exec(text)?.[1];
  return { ...(config ? { config } : {}), ...(applied ? { applied } : {}) };
}

/** The description once a start applied its `config` digest. */
export function markApplied(description: string): string {
  const { config } = readDigests(description);
  if (!config) return description;
  return `${description.replace(/\s*applied=[0-9a-f]+/, '')} applied=${config}`;
}

/** `ContainerInfo.configDigest`: what runs (running) or what will run (stopped). */
export function reportedDigest(description: string | undefined, running: boolean): string | undefined {
  const d = readDigests(description);
  return running ? d.applied : d.config;
}
