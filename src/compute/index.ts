import path from 'node:path';
import type { Config } from '../config/load.ts';
import type { ComputeDriver } from '../core/compute.ts';
import type { Database } from '../db/database.ts';
import type { Logger } from '../observability/logger.ts';
import { LxcDriver } from './lxc/driver.ts';
import { ProcessDriver } from './process/driver.ts';
import { ProxmoxDriver } from './proxmox/driver.ts';

/**
 * The compute driver AIQSO_DRIVER names, built from the parsed configuration.
 * The process driver re-adopts (or relaunches) its running containers as it
 * opens; call `close()` on shutdown — containers keep running.
 */
export async function createComputeDriver(config: Config, db: Database, log: Logger): Promise<ComputeDriver> {
  const logger = log.child({ part: 'compute', driver: config.driver });
  switch (config.driver) {
    case 'process':
      return ProcessDriver.open({ root: path.join(config.dataDir, 'containers'), log: logger });
    case 'lxc':
      return new LxcDriver({
        db,
        log: logger,
        lxcPath: config.lxc.path,
        bridge: config.lxc.bridge,
        subnet: config.lxc.subnet,
        egress: config.egress,
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
        bridge: p.bridge,
        subnet: p.subnet,
        vmidRange: p.vmidRange,
        egress: config.egress,
      });
    }
  }
}
