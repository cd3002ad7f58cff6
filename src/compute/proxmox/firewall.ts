import type { Egress } from '../lxc/netpolicy.ts';
import type { Subnet } from '../shared/subnet.ts';
import type { PveClient } from './client.ts';

/**
 * The walls of a Proxmox container, the lxc driver's policy in pve-firewall's
 * terms: its own firewall on, both policies DROP, its MAC and configured IP
 * only (macfilter, ipfilter), no IPv6 neighbour discovery, router adverts or
 * DHCP. In: the workload port from the gateway (where the control plane and
 * its edge answer), nothing from other containers. Out: the host ports the
 * container was given at the gateway; with egress `nat`, anything beyond the
 * bridge's subnet too. pve-firewall admits replies to allowed connections by
 * itself. Rendered purely (`firewallPlan`), applied by `applyGuestFirewall`.
 */

export interface FirewallRule {
  type: 'in' | 'out';
  action: 'ACCEPT' | 'DROP';
  proto?: 'tcp';
  dport?: string;
  source?: string;
  dest?: string;
  comment: string;
  enable: 1;
}

export interface FirewallPlan {
  options: Record<string, string | number>;
  /** In the order pve-firewall evaluates them (position 0 first). */
  rules: FirewallRule[];
}

export function firewallPlan(p: {
  subnet: Subnet;
  port: number;
  hostPorts: number[];
  egress: Egress;
}): FirewallPlan {
  const gw = p.subnet.gateway;
  const rule = (r: Omit<FirewallRule, 'enable'>): FirewallRule => ({ ...r, enable: 1 });
  return {
    options: {
      enable: 1,
      policy_in: 'DROP',
      policy_out: 'DROP',
      macfilter: 1,
      ipfilter: 1,
      ndp: 0,
      radv: 0,
      dhcp: 0,
    },
    rules: [
      rule({
        type: 'in',
        action: 'ACCEPT',
        proto: 'tcp',
        dport: String(p.port),
        source: gw,
        comment: 'aiqso: the workload, from the gateway',
      }),
      ...[...new Set(p.hostPorts)]
        .sort((a, b) => a - b)
        .map((port) =>
          rule({
            type: 'out',
            action: 'ACCEPT',
            proto: 'tcp',
            dport: String(port),
            dest: gw,
            comment: 'aiqso: a host port this container needs',
          }),
        ),
      ...(p.egress === 'nat'
        ? [
            rule({ type: 'out', action: 'DROP', dest: p.subnet.cidr, comment: 'aiqso: no other container' }),
            rule({ type: 'out', action: 'ACCEPT', comment: 'aiqso: egress beyond the bridge' }),
          ]
        : []),
    ],
  };
}

const RULE_KEYS = ['type', 'action', 'proto', 'dport', 'source', 'dest', 'comment', 'enable'] as const;

/** A rule as the API lists it, reduced to what a plan sets. */
function comparable(rule: Record<string, string | number | undefined>): string {
  return JSON.stringify(RULE_KEYS.map((k) => (rule[k] === undefined ? null : String(rule[k]))));
}

/**
 * Bring a guest's firewall to the plan: options first (enabled, DROP: closed
 * while the rules change), then, when the list differs in any way, every
 * rule removed and the plan's added. The platform owns the whole list, so a
 * rule a template or an operator added does not survive.
 */
export async function applyGuestFirewall(
  api: PveClient,
  guestPath: string,
  plan: FirewallPlan,
): Promise<void> {
  const fw = `${guestPath}/firewall`;
  const options = await api.call<Record<string, string | number | undefined>>('GET', `${fw}/options`);
  if (Object.entries(plan.options).some(([k, v]) => String(options[k]) !== String(v)))
    await api.call('PUT', `${fw}/options`, plan.options);
  const rules = await api.call<Record<string, string | number | undefined>[]>('GET', `${fw}/rules`);
  const same =
    rules.length === plan.rules.length &&
    rules.every((r, i) => comparable(r) === comparable({ ...plan.rules[i] }));
  if (same) return;
  for (let pos = rules.length - 1; pos >= 0; pos--) await api.call('DELETE', `${fw}/rules/${pos}`);
  // A new rule goes to the top of the list: add the last first.
  for (const r of [...plan.rules].reverse()) await api.call('POST', `${fw}/rules`, { ...r });
}
