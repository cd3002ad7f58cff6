import { PveFailure, truthy, type Cluster } from './cluster.ts';

/**
 * A container's firewall as pve-firewall keeps it (`/etc/pve/firewall/<vmid>.fw`):
 * options and an ordered rule list. The API's semantics are modelled where a
 * client can get them wrong: a created rule goes to the top (pve-firewall
 * unshifts it) and is disabled unless `enable` is given; rules are verified as
 * pve-firewall's verify_rule does (actions per type, ports need a protocol
 * that has them, addresses of one IP version, ipsets and aliases must exist).
 */
export interface FwRule {
  type: string;
  action: string;
  enable?: number;
  [key: string]: string | number | undefined;
}

export interface GuestFirewall {
  options: Record<string, string>;
  rules: FwRule[];
}

export const emptyFirewall = (): GuestFirewall => ({ options: {}, rules: [] });

type Params = Record<string, string>;

const RULE_KEYS = [
  'type',
  'action',
  'enable',
  'comment',
  'dest',
  'dport',
  'icmp-type',
  'iface',
  'log',
  'macro',
  'proto',
  'source',
  'sport',
];
const PROTOCOLS_WITH_PORTS = new Set(['tcp', 'udp', 'udplite', 'sctp', 'dccp']);
const BOOLEAN_OPTIONS = new Set(['enable', 'dhcp', 'ipfilter', 'macfilter', 'ndp', 'radv']);

function ipVersion(list: string): number | undefined {
  if (list.startsWith('+') || /^[A-Za-z]/.test(list)) return undefined;
  const versions = new Set(list.split(',').map((a) => (a.includes(':') ? 6 : 4)));
  if (versions.size > 1) throw new Error(`detected mixed ipv4/ipv6 addresses in address list '${list}'`);
  if (list.includes('-') && list.includes(',')) throw new Error("you can't use a range in a list");
  return [...versions][0];
}

/** pve-firewall's verify_rule, for the rules a container may have (no security groups defined here). */
export function verifyRule(rule: FwRule): Record<string, string> {
  const errors: Record<string, string> = {};
  const add = (k: string, m: string) => (errors[k] ??= m);
  if (!rule.type) add('type', 'missing property');
  if (!rule.action) add('action', 'missing property');
  if (rule.type === 'in' || rule.type === 'out' || rule.type === 'forward') {
    if (rule.action && !/^(ACCEPT|DROP|REJECT)$/.test(rule.action))
      add('action', `unknown action '${rule.action}'`);
  } else if (rule.type === 'group') add('action', `no such security group '${rule.action}'`);
  if (rule.iface !== undefined && !/^net\d+$/.test(String(rule.iface)))
    add('iface', "value does not match the regex pattern 'net\\d+'");
  const proto = rule.proto as string | undefined;
  for (const key of ['dport', 'sport'] as const) {
    if (rule[key] === undefined) continue;
    if (!proto) add('proto', `missing property - '${key}' requires this property`);
    else if (!PROTOCOLS_WITH_PORTS.has(proto)) add(key, `protocol '${proto}' does not support ports`);
    for (const part of String(rule[key]).split(/[,:]/))
      if (/^\d+$/.test(part) && Number(part) > 65535) add(key, `invalid port '${part}'`);
  }
  const versions = new Set<number>();
  for (const key of ['source', 'dest'] as const) {
    const value = rule[key] as string | undefined;
    if (!value) continue;
    try {
      const v = ipVersion(value);
      if (v) versions.add(v);
    } catch (err) {
      add(key, (err as Error).message);
    }
    // The simulated containers define no ipsets or aliases: a reference to one names nothing.
    if (value.startsWith('+')) add(key, `no such ipset '${value.slice(1)}'`);
    else if (/^[A-Za-z]/.test(value)) add(key, `no such alias '${value}'`);
  }
  if (versions.size > 1) add('dest', 'detected mixed ipv4/ipv6 addresses in rule');
  return errors;
}

function ruleFrom(p: Params, base: Partial<FwRule> = {}): FwRule {
  const rule = { ...base } as FwRule;
  for (const k of RULE_KEYS) {
    const v = p[k];
    if (v === undefined) continue;
    // pve-firewall's copy_rule_data: an empty value or '-' removes the property.
    if (v === '' || v === '-') delete rule[k];
    else rule[k] = k === 'enable' ? Number(v) : v;
  }
  return rule;
}

function guestFw(c: Cluster, p: Params): GuestFirewall {
  return c.guest(p.node!, Number(p.vmid)).firewall;
}

function at(fw: GuestFirewall, pos: string | undefined): number {
  const i = Number(pos);
  if (!Number.isInteger(i) || i < 0 || i >= fw.rules.length) throw new PveFailure(400, 'no rule at position');
  return i;
}

export const FIREWALL_HANDLERS: Record<string, (c: Cluster, p: Params) => unknown> = {
  'GET /nodes/{node}/lxc/{vmid}/firewall/options': (c, p) => {
    const out: Record<string, string | number> = {};
    for (const [k, v] of Object.entries(guestFw(c, p).options)) {
      out[k] = BOOLEAN_OPTIONS.has(k) ? (truthy(v) ? 1 : 0) : v;
    }
    return out;
  },
  'PUT /nodes/{node}/lxc/{vmid}/firewall/options': (c, p) => {
    const fw = guestFw(c, p);
    for (const [k, v] of Object.entries(p))
      if (!['node', 'vmid', 'delete', 'digest'].includes(k)) fw.options[k] = v;
    for (const k of (p.delete ?? '').split(/[,; ]/).filter(Boolean)) delete fw.options[k];
    return null;
  },
  'GET /nodes/{node}/lxc/{vmid}/firewall/rules': (c, p) =>
    guestFw(c, p).rules.map((r, pos) => ({ ...r, pos })),
  'POST /nodes/{node}/lxc/{vmid}/firewall/rules': (c, p) => {
    const fw = guestFw(c, p);
    const rule = ruleFrom(p);
    const errors = verifyRule(rule);
    if (Object.keys(errors).length) throw new PveFailure(400, 'Parameter verification failed.', errors);
    if (p.enable === undefined) rule.enable = 0;
    fw.rules.unshift(rule);
    return null;
  },
  'GET /nodes/{node}/lxc/{vmid}/firewall/rules/{pos}': (c, p) => {
    const fw = guestFw(c, p);
    const i = at(fw, p.pos);
    return { ...fw.rules[i]!, pos: i };
  },
  'PUT /nodes/{node}/lxc/{vmid}/firewall/rules/{pos}': (c, p) => {
    const fw = guestFw(c, p);
    const i = at(fw, p.pos);
    if (p.moveto !== undefined) {
      const [rule] = fw.rules.splice(i, 1);
      fw.rules.splice(Math.min(Number(p.moveto), fw.rules.length), 0, rule!);
      return null;
    }
    const rule = ruleFrom(p, fw.rules[i]);
    for (const k of (p.delete ?? '').split(/[,; ]/).filter(Boolean)) delete rule[k];
    const errors = verifyRule(rule);
    if (Object.keys(errors).length) throw new PveFailure(400, 'Parameter verification failed.', errors);
    fw.rules[i] = rule;
    return null;
  },
  'DELETE /nodes/{node}/lxc/{vmid}/firewall/rules/{pos}': (c, p) => {
    const fw = guestFw(c, p);
    fw.rules.splice(at(fw, p.pos), 1);
    return null;
  },
  'GET /cluster/firewall/options': (c) => ({ enable: c.firewallEnabled ? 1 : 0 }),
};
