import { createHash } from 'node:crypto';
import type { Subnet } from '../shared/subnet.ts';
import { macFor } from './config.ts';

/**
 * The network walls of the lxc driver's bridge, rendered as one nftables
 * script (pure, tested by value; `firewall.ts` applies it with `nft -f`).
 *
 * - `bridge` table, on every frame a container port sends: its own MAC, and
 *   IPv4 or ARP from its own address only (no spoofing, no IPv6, no VLAN
 *   tags); nothing is bridged from a container port to another port, so
 *   containers never see each other at layer 2, whatever the protocol.
 * - `inet` table, on what reaches the host from the bridge: replies, and new
 *   TCP connections only to the bridge address on the ports each container
 *   was given (its database, the API); nothing routed back into the bridge;
 *   to anywhere else only with egress `nat` (masqueraded).
 *
 * Both tables are named after the bridge and replaced whole in one
 * transaction, so two bridges (two platforms, parallel test runs) never touch
 * each other's rules. Container ports are told apart from the bridge's other
 * ports by their name (`vethName`): a prefix of this bridge, a suffix of the
 * container (this kernel offers no bridge-name match in the bridge family).
 */

export type Egress = 'none' | 'nat';

export interface PolicyMember {
  /** Container name: its port name and MAC derive from it. */
  name: string;
  ip: string;
  /** TCP ports on the bridge address this container may open. */
  hostPorts: number[];
}

export interface NetworkPolicy {
  bridge: string;
  subnet: Subnet;
  /** Gateways of narrower networks adopted on an upgrade, still used by containers not yet restarted. */
  formerGateways?: string[];
  egress: Egress;
  members: PolicyMember[];
}

const hex = (text: string, n: number) => createHash('sha256').update(text).digest('hex').slice(0, n);

/** `aiqso_<bridge>`: the name of both tables. */
export function tableName(bridge: string): string {
  return `aiqso_${bridge.replace(/[^A-Za-z0-9_]/g, '_')}`;
}

/** The first 7 characters of every container port on `bridge`. */
export function portPrefix(bridge: string): string {
  return `a${hex(`bridge:${bridge}`, 6)}`;
}

/** The host end of a container's veth (`lxc.net.0.veth.pair`): 15 characters, the kernel's limit. */
export function vethName(bridge: string, container: string): string {
  return `${portPrefix(bridge)}${hex(`container:${container}`, 8)}`;
}

const elements = (items: string[]) => (items.length ? ` elements = { ${items.join(', ')} };` : '');

/** A member's elements of each set: its port and MAC, its port and address, its address and host ports. */
const macElement = (bridge: string, m: PolicyMember) => `"${vethName(bridge, m.name)}" . ${macFor(m.name)}`;
const addrElement = (bridge: string, m: PolicyMember) => `"${vethName(bridge, m.name)}" . ${m.ip}`;
const reachElements = (m: PolicyMember) =>
  [...new Set(m.hostPorts)].sort((a, b) => a - b).map((port) => `${m.ip} . ${port}`);

function bridgeTable(p: NetworkPolicy): string[] {
  const ports = `"${portPrefix(p.bridge)}*"`;
  const macs = p.members.map((m) => macElement(p.bridge, m));
  const addrs = p.members.map((m) => addrElement(p.bridge, m));
  return [
    `table bridge ${tableName(p.bridge)} {`,
    `  set macs { type ifname . ether_addr;${elements(macs)} }`,
    `  set addrs { type ifname . ipv4_addr;${elements(addrs)} }`,
    '  chain prerouting {',
    '    type filter hook prerouting priority -200; policy accept;',
    `    iifname ${ports} jump from_container`,
    '  }',
    '  chain from_container {',
    '    iifname . ether saddr != @macs drop',
    '    ether type arp iifname . arp saddr ip @addrs iifname . arp saddr ether @macs accept',
    '    ether type ip iifname . ip saddr @addrs accept',
    '    drop',
    '  }',
    '  chain forward {',
    '    type filter hook forward priority 0; policy accept;',
    `    iifname ${ports} drop`,
    `    oifname ${ports} drop`,
    '  }',
    '}',
  ];
}

/** The host's addresses on the bridge containers may reach: the gateway, and any former ones. */
function gateways(p: NetworkPolicy): string {
  const all = [p.subnet.gateway, ...(p.formerGateways ?? [])];
  return all.length === 1 ? all[0]! : `{ ${all.join(', ')} }`;
}

function inetTable(p: NetworkPolicy): string[] {
  const br = `"${p.bridge}"`;
  const reach = p.members.flatMap(reachElements);
  return [
    `table inet ${tableName(p.bridge)} {`,
    `  set reach { type ipv4_addr . inet_service;${elements(reach)} }`,
    '  chain input {',
    '    type filter hook input priority 0; policy accept;',
    `    iifname ${br} jump from_containers`,
    '  }',
    '  chain from_containers {',
    '    ct state established,related accept',
    `    ip daddr ${gateways(p)} ip saddr . tcp dport @reach accept`,
    '    meta l4proto tcp reject with tcp reset',
    '    reject with icmpx type admin-prohibited',
    '  }',
    '  chain forward {',
    '    type filter hook forward priority 0; policy accept;',
    `    iifname ${br} jump egress`,
    `    oifname ${br} ct state established,related accept`,
    `    oifname ${br} drop`,
    '  }',
    '  chain egress {',
    `    oifname ${br} drop`,
    ...(p.egress === 'nat' ? [`    ip saddr ${p.subnet.cidr} accept`] : []),
    '    reject with icmpx type admin-prohibited',
    '  }',
    ...(p.egress === 'nat'
      ? [
          '  chain postrouting {',
          '    type nat hook postrouting priority srcnat; policy accept;',
          `    ip saddr ${p.subnet.cidr} oifname != ${br} masquerade`,
          '  }',
        ]
      : []),
    '}',
  ];
}

/** The whole script: each table created if missing, deleted and defined again, in one transaction. */
export function renderPolicy(policy: NetworkPolicy): string {
  const name = tableName(policy.bridge);
  const members = [...policy.members].sort((a, b) => a.name.localeCompare(b.name));
  const p = { ...policy, members };
  return [
    `table bridge ${name}`,
    `delete table bridge ${name}`,
    ...bridgeTable(p),
    `table inet ${name}`,
    `delete table inet ${name}`,
    ...inetTable(p),
    '',
  ].join('\n');
}

/**
 * New containers added to the sets of a policy already drawn, in place: what
 * `renderPolicy` would have drawn for them, without reading or redrawing the
 * others. `nft -f` runs it as one transaction, which fails whole when the
 * tables are not there (then the whole policy is drawn instead).
 */
export function renderAdmission(bridge: string, members: PolicyMember[]): string {
  const name = tableName(bridge);
  const reach = members.flatMap(reachElements);
  return [
    `add element bridge ${name} macs { ${members.map((m) => macElement(bridge, m)).join(', ')} }`,
    `add element bridge ${name} addrs { ${members.map((m) => addrElement(bridge, m)).join(', ')} }`,
    ...(reach.length ? [`add element inet ${name} reach { ${reach.join(', ')} }`] : []),
    '',
  ].join('\n');
}
