import type { Config } from '../config/load.ts';
import { PveClient } from './proxmox/client.ts';
import { createLogger } from '../observability/logger.ts';
import { checkLxcIsolation } from './lxc/doctor.ts';
import { checkProxmoxIsolation } from './proxmox/doctor.ts';
import type { DoctorCheck } from './shared/doctor-check.ts';

/** What `aiqso doctor` prints for the proxmox driver. */
export interface ProxmoxCheck extends DoctorCheck {
  part: 'proxmox';
}

/** The walls around tenant containers the configured driver keeps: what is in force, and why not where not. */
export async function checkIsolation(config: Config): Promise<DoctorCheck[]> {
  switch (config.driver) {
    case 'process':
      return [
        {
          part: 'isolation',
          status: 'not used',
          detail:
            'AIQSO_DRIVER=process runs workloads as host processes, not walled from each other or the host',
          fix: 'AIQSO_DRIVER=lxc or proxmox for tenants in containers',
        },
      ];
    case 'lxc':
      return checkLxcIsolation(config);
    case 'proxmox':
      return checkProxmoxIsolation(config);
  }
}

/** Reach the cluster with the configured URL, trust and token: GET /version. */
export async function checkProxmox(config: Config): Promise<ProxmoxCheck> {
  if (config.driver !== 'proxmox')
    return { part: 'proxmox', status: 'not used', detail: `AIQSO_DRIVER=${config.driver}` };
  const p = config.proxmox;
  if (!p) {
    return {
      part: 'proxmox',
      status: 'missing',
      detail: 'no cluster configured',
      fix: 'set PROXMOX_URL, PROXMOX_TOKEN_ID and PROXMOX_TOKEN_SECRET',
    };
  }
  const api = new PveClient({ ...p, log: createLogger('silent'), lockAttempts: 1 });
  try {
    const v = await api.call<{ version: string }>('GET', '/version');
    return {
      part: 'proxmox',
      status: 'ok',
      detail: `${p.url} reachable, Proxmox VE ${v.version}, token accepted`,
    };
  } catch (err) {
    return {
      part: 'proxmox',
      status: 'failed',
      detail: (err as Error).message,
      fix: 'check PROXMOX_URL, PROXMOX_CA_FILE or PROXMOX_FINGERPRINT, and the API token',
    };
  } finally {
    await api.close();
  }
}
