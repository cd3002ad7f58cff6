import path from 'node:path';
import { platformPorts, type Config } from '../config/load.ts';
import type { ComputeDriver } from '../core/compute.ts';
import type { Database } from '../db/database.ts';
import type { Logger } from '../observability/logger.ts';
import { ensureBridge } from './lxc/bridge.ts';
import { LxcDriver } from './lxc/driver.ts';
import { ProcessDriver } from './process/driver.ts';
import { ProxmoxDriver } from './proxmox/driver.ts';
import { parseSubnet } from './shared/subnet.ts';

/**
 * The compute driver AIQSO_DRIVER names, built from the parsed configuration.
 * The process driver re-adopts (or relaunches) its running containers as it
 * opens; call `close()` on shutdown — containers keep running, except the
 * process driver's with `stopWorkloadsOnClose` (`aiqso up` with the embedded
 * database it started: its workloads live as long as that database).
 */
export async function createComputeDriver(
  config: Config,
  db: Database,
  log: Logger,
  options: { stopWorkloadsOnClose?: boolean } = {},
): Promise<ComputeDriver> {
  const logger = log.child({ part: 'compute', driver: config.driver });
  switch (config.driver) {
    case 'process':
      return ProcessDriver.open({
        root: path.join(config.dataDir, 'containers'),
        log: logger,
        stopWorkloadsOnClose: options.stopWorkloadsOnClose,
        reservedPorts: platformPorts(config),
      });
    case 'lxc':
      return new LxcDriver({
        db,
        log: logger,
        lxcPath: config.lxc.path,
        bridge: config.lxc.bridge,
        subnet: config.lxc.subnet,
        egress: config.egress,
        registriesConf: config.lxc.registriesConf,
      });
    case 'proxmox': {
      const p = config.proxmox;
      // loadConfig already refuses AIQSO_DRIVER=proxmox without the PROXMOX_* settings.
      if (!p)
        throw new Error('AIQSO_DRIVER=proxmox needs PROXMOX_URL, PROXMOX_TOKEN_ID and PROXMOX_TOKEN_SECRET');
      return new ProxmoxDriver({
        db,
        log: logger,
        api: {
          url: p.url,
          tokenId: p.tokenId,
          tokenSecret: p.tokenSecret,
          caFile: p.caFile,
          fingerprint: p.fingerprint,
        },
        storage: p.storage,
        backupStorage: p.backupStorage,
        templateStorage: p.templateStorage,
        workDir: path.join(config.dataDir, 'proxmox-apps'),
        bridge: p.bridge,
        subnet: p.subnet,
        vmidRange: p.vmidRange,
        egress: config.egress,
      });
    }
  }
}

/**
 * Addresses of this host that containers reach it at and that exist before
 * any container does, for the embedded PostgreSQL to listen on, so that
 * containers reach their databases whether the control plane runs or not.
 * The lxc driver's bridge is made here if missing (as the driver would);
 * process containers use loopback; Proxmox guests reach the control plane
 * through the host gateway (compute/gateway.ts).
 */
export async function containerFacingAddresses(config: Config): Promise<string[]> {
  if (config.driver !== 'lxc') return [];
  const subnet = parseSubnet(config.lxc.subnet);
  await ensureBridge(config.lxc.bridge, subnet);
  return [subnet.gateway];
}
