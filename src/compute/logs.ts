import path from 'node:path';
import type { Config } from '../config/load.ts';
import type { LogOptions, ServiceLogs } from '../core/compute.ts';
import { DomainError } from '../core/errors.ts';
import { lxcLogs } from './lxc/driver.ts';
import { processLogs } from './process/driver.ts';

export type LogReader = (name: string, options: LogOptions) => Promise<ServiceLogs>;

/**
 * Reads a container's logs the way the configured driver's `logs` does, from
 * the files on this host, without opening the driver (no relaunch, no bridge):
 * for the API and the CLI. Proxmox offers no way to read a container's files,
 * so its containers' logs are refused in words, never made up.
 */
export function logReader(config: Config): LogReader {
  switch (config.driver) {
    case 'process':
      return (name, options) => processLogs(path.join(config.dataDir, 'containers'), name, options);
    case 'lxc':
      return (name, options) => lxcLogs(config.lxc.path, name, options);
    case 'proxmox':
      return () =>
        Promise.reject(
          new DomainError(
            'conflict',
            "service logs are not available with the proxmox driver: Proxmox offers no way to read a container's files or output",
            { details: { driver: 'proxmox' } },
          ),
        );
  }
}
