import type { Config } from '../config/load.ts';
import { PveClient } from './proxmox/client.ts';
import { createLogger } from '../observability/logger.ts';

/** What `aiqso doctor` prints for the proxmox driver (same shape as its other checks). */
export interface ProxmoxCheck {
  part: 'proxmox';
  status: 'ok' | 'missing' | 'failed' | 'not used';
  detail: string;
  fix?: string;
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
