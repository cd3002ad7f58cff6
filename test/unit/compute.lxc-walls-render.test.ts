import { describe, expect, it } from 'vitest';
import { macFor } from '../../src/compute/lxc/config.ts';
import { hostPortsFromEnv } from '../../src/compute/lxc/convert.ts';
import { Coalesced } from '../../src/compute/lxc/firewall.ts';
import { planSubordinateRange, shiftId } from '../../src/compute/lxc/idmap.ts';
import {
  portPrefix,
  renderAdmission,
  renderPolicy,
  tableName,
  vethName,
} from '../../src/compute/lxc/netpolicy.ts';
import { sleep } from '../../src/compute/shared/run.ts';
import { parseSubnet } from '../../src/compute/shared/subnet.ts';

describe('subordinate id ranges', () => {
  it("uses root's existing range and leaves the file alone", () => {
    expect(planSubordinateRange('alice:100000:65536\nroot:300000:65536\n')).toEqual({
      range: { start: 300000, size: 65536 },
    });
  });

  it('appends a range for root that overlaps no one, never rewriting other entries', () => {
    expect(planSubordinateRange('')).toEqual({
      range: { start: 100000, size: 65536 },
      append: 'root:100000:65536\n',
    });
    // 100000… and 165536… are taken (one by a range that is too small for root), so root gets 231072.
    const text = 'alice:100000:65536\nroot:165536:1000';
    expect(planSubordinateRange(text)).toEqual({
      range: { start: 231072, size: 65536 },
      append: '\nroot:231072:65536\n',
    });
    // An entry inside a block rules the whole block out.
    expect(planSubordinateRange('bob:120000:10\n').range.start).toBe(165536);
  });

  it('shifts ids below the map size into the range, and only those', () => {
    const range = { start: 100000, size: 65536 };
    expect([0, 1000, 65534, 65536, 100000, 165535].map((id) => shiftId(id, range))).toEqual([
      100000, 101000, 165534, 65536, 100000, 165535,
    ]);
  });
});

describe('bridge network policy', () => {
  const subnet = parseSubnet('10.1.2.0/24');
  const members = [
    { name: 'aiqso-b-notes', ip: '10.1.2.3', hostPorts: [5432, 5432] },
    { name: 'aiqso-a-dashboard', ip: '10.1.2.2', hostPorts: [8080] },
    { name: 'aiqso-c-idle', ip: '10.1.2.4', hostPorts: [] },
  ];
  const a = vethName('br9', 'aiqso-a-dashboard');
  const b = vethName('br9', 'aiqso-b-notes');
  const c = vethName('br9', 'aiqso-c-idle');

  it('names container ports after the bridge and the container, within the kernel limit', () => {
    expect(a).toHaveLength(15);
    expect(a.startsWith(portPrefix('br9'))).toBe(true);
    expect(vethName('br10', 'aiqso-a-dashboard').startsWith(portPrefix('br9'))).toBe(false);
    expect(new Set([a, b, c]).size).toBe(3);
    expect(tableName('aiqso-x.1')).toBe('aiqso_aiqso_x_1');
  });

  it('adds new containers to the sets in place, with exactly the elements a whole drawing gives them', () => {
    const added = members.slice(0, 2);
    expect(renderAdmission('br9', added)).toBe(
      [
        `add element bridge aiqso_br9 macs { "${b}" . ${macFor('aiqso-b-notes')}, "${a}" . ${macFor('aiqso-a-dashboard')} }`,
        `add element bridge aiqso_br9 addrs { "${b}" . 10.1.2.3, "${a}" . 10.1.2.2 }`,
        'add element inet aiqso_br9 reach { 10.1.2.3 . 5432, 10.1.2.2 . 8080 }',
        '',
      ].join('\n'),
    );
    // The same elements as the whole policy lists for them.
    const whole = renderPolicy({ bridge: 'br9', subnet, egress: 'none', members: added });
    for (const element of [`"${a}" . 10.1.2.2`, `"${b}" . ${macFor('aiqso-b-notes')}`, '10.1.2.3 . 5432'])
      expect(whole).toContain(element);
    // A container given no host ports adds nothing to reach.
    expect(renderAdmission('br9', [members[2]!])).not.toContain('reach');
  });

  it('renders both tables, replaced whole, with each container bound to its port, MAC and address', () => {
    const text = renderPolicy({ bridge: 'br9', subnet, egress: 'none', members });
    const p = portPrefix('br9');
    expect(text).toBe(
      [
        'table bridge aiqso_br9',
        'delete table bridge aiqso_br9',
        'table bridge aiqso_br9 {',
        `  set macs { type ifname . ether_addr; elements = { "${a}" . ${macFor('aiqso-a-dashboard')}, "${b}" . ${macFor('aiqso-b-notes')}, "${c}" . ${macFor('aiqso-c-idle')} }; }`,
        `  set addrs { type ifname . ipv4_addr; elements = { "${a}" . 10.1.2.2, "${b}" . 10.1.2.3, "${c}" . 10.1.2.4 }; }`,
        '  chain prerouting {',
        '    type filter hook prerouting priority -200; policy accept;',
        `    iifname "${p}*" jump from_container`,
        '  }',
        '  chain from_container {',
        '    iifname . ether saddr != @macs drop',
        '    ether type arp iifname . arp saddr ip @addrs iifname . arp saddr ether @macs accept',
        '    ether type ip iifname . ip saddr @addrs accept',
        '    drop',
        '  }',
        '  chain forward {',
        '    type filter hook forward priority 0; policy accept;',
        `    iifname "${p}*" drop`,
        `    oifname "${p}*" drop`,
        '  }',
        '}',
        'table inet aiqso_br9',
        'delete table inet aiqso_br9',
        'table inet aiqso_br9 {',
        '  set reach { type ipv4_addr . inet_service; elements = { 10.1.2.2 . 8080, 10.1.2.3 . 5432 }; }',
        '  chain input {',
        '    type filter hook input priority 0; policy accept;',
        '    iifname "br9" jump from_containers',
        '  }',
        '  chain from_containers {',
        '    ct state established,related accept',
        '    ip daddr 10.1.2.1 ip saddr . tcp dport @reach accept',
        '    meta l4proto tcp reject with tcp reset',
        '    reject with icmpx type admin-prohibited',
        '  }',
        '  chain forward {',
        '    type filter hook forward priority 0; policy accept;',
        '    iifname "br9" jump egress',
        '    oifname "br9" ct state established,related accept',
        '    oifname "br9" drop',
        '  }',
        '  chain egress {',
        '    oifname "br9" drop',
        '    reject with icmpx type admin-prohibited',
        '  }',
        '}',
        '',
      ].join('\n'),
    );
  });

  it('masquerades the subnet only with egress nat, and renders empty sets without elements', () => {
    const nat = renderPolicy({ bridge: 'br9', subnet, egress: 'nat', members: [] });
    expect(nat).toContain('  set reach { type ipv4_addr . inet_service; }');
    expect(nat).toContain('  set macs { type ifname . ether_addr; }');
    expect(nat).toContain(
      [
        '  chain egress {',
        '    oifname "br9" drop',
        '    ip saddr 10.1.2.0/24 accept',
        '    reject with icmpx type admin-prohibited',
        '  }',
        '  chain postrouting {',
        '    type nat hook postrouting priority srcnat; policy accept;',
        '    ip saddr 10.1.2.0/24 oifname != "br9" masquerade',
        '  }',
      ].join('\n'),
    );
    expect(renderPolicy({ bridge: 'br9', subnet, egress: 'none', members: [] })).not.toContain('masquerade');
  });

  it("lets containers still configured with a widened network's former gateway reach the host there too", () => {
    const text = renderPolicy({
      bridge: 'br9',
      subnet,
      formerGateways: ['10.1.2.129'],
      egress: 'none',
      members,
    });
    expect(text).toContain('    ip daddr { 10.1.2.1, 10.1.2.129 } ip saddr . tcp dport @reach accept');
  });
});

describe('host ports of a container from before they were recorded', () => {
  it('are the ports its environment names at the bridge address, and only those', () => {
    const env = [
      "export AIQSO_API_URL='http://10.1.2.1:8080'",
      "export DATABASE_URL='postgres://u:p%40ss@10.1.2.1:5432/db'",
      "export OTHER='http://10.1.2.10:9999 and 10.1.2.1:65536'",
      "export PORT='3000'",
      '',
    ].join('\n');
    expect(hostPortsFromEnv(env, '10.1.2.1')).toEqual([5432, 8080]);
    expect(hostPortsFromEnv(env, '10.9.9.1')).toEqual([]);
  });
});

describe('coalesced applies', () => {
  it('follows every request with a run that started after it, sharing runs in a burst', async () => {
    const runs: number[] = [];
    let counter = 0;
    const c = new Coalesced(async () => {
      const n = ++counter;
      await sleep(20);
      runs.push(n);
    });
    const first = c.request();
    const burst = [c.request(), c.request(), c.request()];
    await Promise.all([first, ...burst]);
    expect(runs).toEqual([1, 2]);
    await c.request();
    expect(runs).toEqual([1, 2, 3]);
  });

  it('hands each run the items of every request it answers', async () => {
    const runs: string[][] = [];
    const c = new Coalesced<string>(async (items) => {
      await sleep(20);
      runs.push(items);
    });
    await Promise.all([c.request('a'), c.request('b'), c.request('c', 'd')]);
    await c.request('e');
    expect(runs).toEqual([['a'], ['b', 'c', 'd'], ['e']]);
  });

  it('fails the requests a failed run answers, and runs the next one all the same', async () => {
    let fail = true;
    const runs: string[][] = [];
    const c = new Coalesced<string>(async (items) => {
      await sleep(10);
      if (fail) {
        fail = false;
        throw new Error('nft said no');
      }
      runs.push(items);
    });
    const first = c.request('a');
    const second = c.request('b');
    await expect(first).rejects.toThrow('nft said no');
    await second;
    expect(runs).toEqual([['b']]);
  });
});
