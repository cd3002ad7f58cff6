import type { Config } from '../../config/load.ts';
import { isManagedName } from '../../core/compute.ts';
import { createLogger } from '../../observability/logger.ts';
import type { DoctorCheck } from '../shared/doctor-check.ts';
import { PveClient } from './client.ts';

/**
 * The walls of the platform's Proxmox containers as `aiqso doctor` reports
 * them, read through the API: unprivileged guests, each one's firewall, the
 * datacenter firewall that makes guest firewalls count, and egress.
 */

interface Guest {
  vmid: number;
  node: string;
  name?: string;
  type: string;
  template?: number;
}

const NEXT_ENSURE =
  'the driver walls and converts a guest at its next ensure of it (a resources change, for one)';

export async function checkProxmoxIsolation(config: Config): Promise<DoctorCheck[]> {
  const p = config.proxmox;
  if (!p) return [];
  const api = new PveClient({ ...p, log: createLogger('silent'), lockAttempts: 1 });
  try {
    const guests = (await api.call<Guest[]>('GET', '/cluster/resources', { type: 'vm' })).filter(
      (g) => g.type === 'lxc' && g.name && isManagedName(g.name) && g.template !== 1,
    );
    const privileged: string[] = [];
    const open: string[] = [];
    for (const g of guests) {
      const base = `/nodes/${g.node}/lxc/${g.vmid}`;
      const cfg = await api.call<{ unprivileged?: number; net0?: string }>('GET', `${base}/config`);
      const fw = await api.call<{ enable?: number }>('GET', `${base}/firewall/options`);
      if (Number(cfg.unprivileged) !== 1) privileged.push(g.name!);
      if (Number(fw.enable) !== 1 || !/(^|,)firewall=1(,|$)/.test(cfg.net0 ?? '')) open.push(g.name!);
    }
    const cluster = await api.call<{ enable?: number }>('GET', '/cluster/firewall/options');
    const n = guests.length;
    return [
      privileged.length
        ? {
            part: 'isolation: unprivileged',
            status: 'failed',
            detail: `${privileged.length} of ${n} container(s) privileged (made by an older version), e.g. ${privileged[0]}`,
            fix: `${NEXT_ENSURE}: a backup restored in place as unprivileged`,
          }
        : {
            part: 'isolation: unprivileged',
            status: 'ok',
            detail: `${n} container(s), all unprivileged; clones are made only of unprivileged templates`,
          },
      Number(cluster.enable) !== 1
        ? {
            part: 'isolation: firewall',
            status: 'failed',
            detail: 'the datacenter firewall is off, so no container firewall is enforced',
            fix: 'enable it under Datacenter → Firewall → Options (let the cluster’s own management traffic in first)',
          }
        : open.length
          ? {
              part: 'isolation: firewall',
              status: 'failed',
              detail: `${open.length} of ${n} container(s) without their firewall on, e.g. ${open[0]}`,
              fix: NEXT_ENSURE,
            }
          : {
              part: 'isolation: firewall',
              status: 'ok',
              detail:
                `datacenter firewall on; ${n} container(s) with their own: DROP both ways, their MAC and address only, ` +
                'the workload port from the gateway, their host ports out',
            },
      {
        part: 'isolation: egress',
        status: 'ok',
        detail:
          config.egress === 'nat'
            ? 'AIQSO_EGRESS=nat: container firewalls let traffic beyond the bridge out (routing it is the cluster’s)'
            : 'AIQSO_EGRESS=none: container firewalls let nothing out but their host ports',
      },
    ];
  } catch (err) {
    return [
      {
        part: 'isolation',
        status: 'failed',
        detail: `cannot read the containers' settings: ${(err as Error).message}`,
        fix: 'see the proxmox line above',
      },
    ];
  } finally {
    await api.close();
  }
}
