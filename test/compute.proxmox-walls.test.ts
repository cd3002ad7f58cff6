import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { PveClient } from '../src/compute/proxmox/client.ts';
import { ProxmoxDriver } from '../src/compute/proxmox/driver.ts';
import { firewallPlan } from '../src/compute/proxmox/firewall.ts';
import { parseSubnet } from '../src/compute/shared/subnet.ts';
import type { ContainerSpec } from '../src/core/compute.ts';
import { createLogger } from '../src/observability/logger.ts';
import { specFor, type ContractHarness } from './support/compute-contract.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import { startProxmoxSimulator, type ProxmoxSimulator } from './support/proxmox-sim/server.ts';

/**
 * Containers as walls on Proxmox, against the simulator (which validates every
 * request against the shipped API schema and pve-firewall's rule checks, and
 * keeps each guest's firewall): created unprivileged, their firewall on with
 * the same policy as the lxc driver's, kept in step with the spec, and guests
 * an older version made privileged restored as unprivileged.
 */
let sim: ProxmoxSimulator;
let db: TestDatabase;
const log = createLogger('silent');
const harness = { workload: () => ({ kind: 'clone', template: '9000' }) } as ContractHarness;

beforeAll(async () => {
  sim = await startProxmoxSimulator();
  db = await createTestDatabase();
  sim.cluster.addNode('pve1', 64, 16);
  sim.cluster.storages.set('ceph', { id: 'ceph', linkedClones: true, shared: true });
  sim.cluster.storages.set('local', { id: 'local', linkedClones: false, shared: false });
  sim.cluster.addTemplate(9000, 'pve1', 'ceph');
  sim.cluster.addTemplate(9002, 'pve1', 'ceph', { privileged: true });
});

afterAll(async () => {
  await sim.close();
  await db.drop();
});

const open = (egress: 'none' | 'nat' = 'none') =>
  new ProxmoxDriver({
    db: db.db,
    log,
    api: {
      url: sim.url,
      tokenId: sim.tokenId,
      tokenSecret: sim.tokenSecret,
      caFile: sim.certFile,
      taskPollMs: 10,
    },
    storage: 'ceph',
    backupStorage: 'local',
    templateStorage: 'local',
    bridge: 'vmbr1',
    subnet: '10.10.10.0/24',
    vmidRange: [10000, 10999],
    egress,
  });

let driver: ProxmoxDriver;
let firstRequest = 0;
beforeEach(() => {
  driver = open();
  firstRequest = sim.requests.length;
  return async () => {
    await driver.close();
  };
});

const guestOf = (handle: string) => sim.cluster.guests.get(Number(handle.split('/')[1]))!;
const since = () => sim.requests.slice(firstRequest);
const rulesOf = (handle: string) =>
  guestOf(handle).firewall.rules.map((r) =>
    Object.fromEntries(Object.entries(r).filter(([k]) => k !== 'comment')),
  );

function service(role: string): ContainerSpec {
  return { ...specFor(harness, role), port: 8000, hostPorts: [5432] };
}

describe('proxmox containers as walls', () => {
  it('creates them unprivileged with their firewall on: DROP both ways, own MAC and address only', async () => {
    const s = service('walled');
    const info = await driver.ensure(s);
    const guest = guestOf(info.handle!);
    expect(guest.config.unprivileged).toBe('1');
    expect(guest.config.net0).toMatch(/^name=eth0,bridge=vmbr1,firewall=1,ip=/);
    expect(guest.firewall.options).toEqual({
      enable: '1',
      policy_in: 'DROP',
      policy_out: 'DROP',
      macfilter: '1',
      ipfilter: '1',
      ndp: '0',
      radv: '0',
      dhcp: '0',
    });
    expect(rulesOf(info.handle!)).toEqual([
      { type: 'in', action: 'ACCEPT', proto: 'tcp', dport: '8000', source: '10.10.10.1', enable: 1 },
      { type: 'out', action: 'ACCEPT', proto: 'tcp', dport: '5432', dest: '10.10.10.1', enable: 1 },
    ]);
    // Every request the driver made passed the schema and pve-firewall's checks.
    expect(since().filter((r) => r.status >= 400)).toEqual([]);
    expect(since().some((r) => r.params.unprivileged !== undefined)).toBe(false);
    await driver.destroy(s.name);
  });

  it('keeps the firewall in step: nothing written when it matches, rules redrawn when the spec or someone changed them', async () => {
    const s = service('steady');
    const info = await driver.ensure(s);
    const writes = () =>
      sim.requests.filter((r) => r.path.includes('/firewall/') && r.method !== 'GET').length;
    const before = writes();
    await driver.ensure(s);
    expect(writes()).toBe(before);

    // An operator's rule and a changed option do not survive the next ensure.
    const guest = guestOf(info.handle!);
    guest.firewall.rules.unshift({ type: 'in', action: 'ACCEPT', enable: 1, comment: 'let everyone in' });
    guest.firewall.options.policy_in = 'ACCEPT';
    await driver.ensure({ ...s, hostPorts: [5432, 8080] });
    expect(guest.firewall.options.policy_in).toBe('DROP');
    expect(rulesOf(info.handle!).map((r) => `${r.type} ${r.action} ${r.dport ?? ''}`)).toEqual([
      'in ACCEPT 8000',
      'out ACCEPT 5432',
      'out ACCEPT 8080',
    ]);

    // Egress nat: no other container on the bridge, anything beyond it.
    const nat = open('nat');
    await nat.ensure(s);
    expect(rulesOf(info.handle!).slice(-2)).toEqual([
      { type: 'out', action: 'DROP', dest: '10.10.10.0/24', enable: 1 },
      { type: 'out', action: 'ACCEPT', enable: 1 },
    ]);
    await nat.close();
    expect(since().filter((r) => r.status >= 400)).toEqual([]);
    await driver.destroy(s.name);
  });

  it('refuses to clone a privileged template, creating nothing', async () => {
    const s = { ...service('fromprivileged'), workload: { kind: 'clone' as const, template: '9002' } };
    await expect(driver.ensure(s)).rejects.toMatchObject({
      code: 'deploy_failed',
      message: /template VMID 9002 is a privileged container/,
    });
    expect(since().some((r) => r.path.endsWith('/clone'))).toBe(false);
    expect((await driver.status(s.name)).state).toBe('missing');
    await driver.destroy(s.name);
  });

  it('restores a guest an older version made privileged as unprivileged, same VMID, running again', async () => {
    const s = service('legacy');
    const info = await driver.ensure(s);
    await driver.start(s.name);
    const guest = guestOf(info.handle!);
    // What an older version left: a privileged guest without a firewall.
    delete guest.config.unprivileged;
    guest.config.net0 = guest.config.net0!.replace('firewall=1,', '');
    guest.firewall.options = {};
    guest.firewall.rules = [];

    const again = await open().ensure(s);
    expect(again.handle).toBe(info.handle);
    expect(again.state).toBe('running');
    const restored = guestOf(info.handle!);
    expect(restored.config.unprivileged).toBe('1');
    expect(restored.firewall.options.enable).toBe('1');
    expect(rulesOf(info.handle!)).toHaveLength(2);
    const restore = since().find((r) => r.method === 'POST' && r.path === '/nodes/pve1/lxc');
    expect(restore?.params).toMatchObject({ restore: '1', force: '1', unprivileged: '1' });
    await driver.destroy(s.name);
  });
});

describe('the simulator holds the driver to the API', () => {
  const api = () =>
    new PveClient({
      url: sim.url,
      tokenId: sim.tokenId,
      tokenSecret: sim.tokenSecret,
      caFile: sim.certFile,
      log,
    });

  it('refuses what the schema or pve-firewall refuses, and leaves a rule made without enable disabled', async () => {
    const s = service('strict');
    const info = await driver.ensure(s);
    const fw = `/nodes/pve1/lxc/${info.handle!.split('/')[1]}/firewall`;
    const client = api();
    try {
      const refused: (() => Promise<unknown>)[] = [
        () => client.call('PUT', `${fw}/options`, { policy_in: 'BLOCK' }),
        () => client.call('PUT', `${fw}/options`, { 'policy-in': 'DROP' }),
        () => client.call('POST', `${fw}/rules`, { type: 'out', action: 'ACCEPT', dport: '5432' }),
        () => client.call('POST', `${fw}/rules`, { type: 'out', action: 'ALLOW', enable: 1 }),
        () => client.call('POST', `${fw}/rules`, { type: 'out', action: 'ACCEPT', dest: '10.10.10.300' }),
        () => client.call('POST', `${fw}/rules`, { type: 'in', action: 'ACCEPT', source: '+tenants' }),
        () => client.call('POST', `${fw}/rules`, { type: 'sideways', action: 'ACCEPT' }),
      ];
      for (const call of refused) await expect(call()).rejects.toMatchObject({ code: 'internal' });
      await expect(
        client.call('PUT', `/nodes/pve1/lxc/${info.handle!.split('/')[1]}/config`, { unprivileged: 0 }),
      ).rejects.toThrow(/unable to modify read-only option: 'unprivileged'/);

      await client.call('POST', `${fw}/rules`, { type: 'in', action: 'ACCEPT', proto: 'tcp', dport: '22' });
      const listed = await client.call<{ pos: number; enable?: number; dport?: string }[]>(
        'GET',
        `${fw}/rules`,
      );
      expect(listed[0]).toMatchObject({ pos: 0, dport: '22', enable: 0 });
    } finally {
      await client.close();
    }
    await driver.destroy(s.name);
  });

  it('renders the plan by value', () => {
    const plan = firewallPlan({
      subnet: parseSubnet('10.20.0.0/16'),
      port: 3000,
      hostPorts: [8080, 8080],
      egress: 'none',
    });
    expect(plan.rules.map((r) => [r.type, r.action, r.proto, r.dport, r.source ?? r.dest])).toEqual([
      ['in', 'ACCEPT', 'tcp', '3000', '10.20.0.1'],
      ['out', 'ACCEPT', 'tcp', '8080', '10.20.0.1'],
    ]);
  });
});
