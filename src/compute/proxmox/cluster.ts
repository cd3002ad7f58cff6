import type { Database } from '../../db/database.ts';
import type { Logger } from '../../observability/logger.ts';
import type { PveClient } from './client.ts';
import type { GuestRegistry } from './guests.ts';

/** A guest as `/cluster/resources` lists it. */
export interface VmResource {
  vmid: number;
  node: string;
  name?: string;
  status: string;
  template?: number;
  lock?: string;
}

/**
 * What creating, exporting and importing a guest (`create.ts`, `backup.ts`)
 * use of the Proxmox driver: its API client, its VMID registry, the guests on
 * the cluster, and the settings they need.
 */
export interface ProxmoxCluster {
  readonly api: Pick<PveClient, 'call' | 'task'>;
  readonly registry: Pick<GuestRegistry, 'allocate'>;
  readonly options: {
    readonly db: Database;
    readonly log: Logger;
    /** Storage for full clones and restores. */
    readonly storage: string;
    /** Storage vzdump writes backups to. */
    readonly backupStorage: string;
  };
  vms(): Promise<VmResource[]>;
  /** The guest behind `name`, or undefined when it does not exist (yet). */
  find(name: string): Promise<(VmResource & { port: number }) | undefined>;
}
