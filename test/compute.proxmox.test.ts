import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ProxmoxDriver } from '../src/compute/proxmox/driver.ts';
import { PveClient } from '../src/compute/proxmox/client.ts';
import { newId } from '../src/core/ids.ts';
import { createLogger } from '../src/observability/logger.ts';
import { computeContract, specFor, type ContractHarness } from './support/compute-contract.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import { startProxmoxSimulator, type ProxmoxSimulator } from './support/proxmox-sim/server.ts';

let sim: ProxmoxSimulator;
let db: TestDatabase;
const log = createLogger('silent');

beforeAll(async () => {
  sim = await startProxmoxSimulator();
  db = await createTestDatabase();
  const c = sim.cluster;
  c.addNode('pve1', 64, 16);
  c.addNode('pve2', 128, 32);
  c.storages.set('ceph', { id: 'ceph', linkedClones: true, shared: true });
  c.storages.set('nfsdir', { id: 'nfsdir', linkedClones: false, shared: true });
  c.storages.set('local', { id: 'local', linkedClones: false, shared: false });
  c.addTemplate(9000, 'pve1', 'ceph');
  c.addTemplate(9001, 'pve1', 'nfsdir');
});

afterAll(async () => {
  await sim.close();
  await db.drop();
});

const driverWith = (trust: { caFile?: string; fingerprint?: string } = { caFile: sim.certFile }) =>
  new ProxmoxDriver({
    db: db.db,
    log,
    api: { url: sim.url, tokenId: sim.tokenId, tokenSecret: sim.tokenSecret, ...trust, taskPollMs: 10 },
    storage: 'ceph',
    backupStorage: 'local',
    templateStorage: 'local',
    bridge: 'vmbr1',
    subnet: '10.10.10.0/24',
    vmidRange: [10000, 10999],
  });

const harness: ContractHarness = {
  open: () => Promise.resolve(driverWith()),
  workload: () => ({ kind: 'clone', template: '9000' }),
  async crashMidEnsure(spec) {
    // The control plane died right after asking for the clone: the VMID is recorded
    // and the clone task runs on without it, holding the new guest's 'create' lock.
    const d = driverWith();
    const vmid = await d.registry.allocate(spec.name, spec.port, new Set([9000, 9001]));
    await d.api.call('POST', '/nodes/pve1/lxc/9000/clone', { newid: vmid, hostname: spec.name, full: false });
    await d.close();
  },
  hostProcesses: false,
  exec: false,
  enforces: ['memoryMb', 'cores', 'diskGb'],
};

computeContract('proxmox', harness);

describe('proxmox simulator', () => {
  it('rejects a wrong parameter name, a wrong type and a missing parameter like the real API', async () => {
    const api = new PveClient({
      url: sim.url,
      tokenId: sim.tokenId,
      tokenSecret: sim.tokenSecret,
      caFile: sim.certFile,
      log,
    });
    try {
      await expect(api.call('PUT', '/nodes/pve1/lxc/9000/config', { corez: 2 })).rejects.toThrow(
        /corez.*not defined in schema/,
      );
      await expect(api.call('PUT', '/nodes/pve1/lxc/9000/config', { cores: 'two' })).rejects.toThrow(
        /cores.*type check \('integer'\)/,
      );
      await expect(api.call('POST', '/nodes/pve1/lxc/9000/clone', { hostname: 'x' })).rejects.toThrow(
        /newid.*missing/,
      );
      await expect(
        api.call('PUT', '/nodes/pve1/lxc/9000/config', { net0: 'bridge=vmbr1,colour=red' }),
      ).rejects.toThrow(/net0.*unknown property 'colour'/);
      await expect(api.call('GET', '/cluster/resources', { type: 'vms' })).rejects.toThrow(/enumeration/);
      expect(sim.requests.filter((r) => r.status === 400)).toHaveLength(5);
    } finally {
      await api.close();
    }
  });

  it('refuses a wrong token', async () => {
    const api = new PveClient({
      url: sim.url,
      tokenId: sim.tokenId,
      tokenSecret: 'wrong',
      caFile: sim.certFile,
      log,
    });
    await expect(api.call('GET', '/version')).rejects.toMatchObject({ code: 'dependency_failed' });
    await api.close();
  });
});

describe('proxmox driver', () => {
  let driver: ProxmoxDriver;
  beforeEach(() => {
    driver = driverWith();
    sim.cluster.faults.length = 0;
    return async () => {
      await driver.close();
    };
  });

  it('retries lock timeouts with backoff and recovers from a failed clone task', async () => {
    const s = specFor(harness, 'locks');
    sim.cluster.inject({ method: 'PUT', path: /\/config$/, kind: 'lock', times: 2 });
    sim.cluster.inject({
      method: 'POST',
      path: /\/clone$/,
      kind: 'task',
      message: 'clone failed: disk error',
    });
    await expect(driver.ensure(s)).rejects.toMatchObject({
      code: 'dependency_failed',
      message: /disk error/,
    });
    const info = await driver.ensure(s);
    expect(info.state).toBe('stopped');
    const puts = sim.requests.filter(
      (r) => r.method === 'PUT' && r.path.endsWith('/config') && r.params.hostname === s.name,
    );
    expect(puts.map((r) => r.status)).toEqual([500, 500, 200]);
    await driver.destroy(s.name);
  });

  it('serialises clones of one template and allocates VMIDs from its own range', async () => {
    const specs = Array.from({ length: 6 }, (_, i) => specFor(harness, `par${i}`));
    sim.cluster.maxConcurrentClonesPerTemplate = 0;
    const infos = await Promise.all(specs.map((s) => driver.ensure(s)));
    expect(sim.cluster.maxConcurrentClonesPerTemplate).toBe(1);
    const vmids = infos.map((i) => Number(i.handle!.split('/')[1]));
    expect(new Set(vmids).size).toBe(6);
    for (const v of vmids) expect(v).toBeGreaterThanOrEqual(10000);
    expect(sim.requests.some((r) => r.path === '/cluster/nextid')).toBe(false);
    await Promise.all(specs.map((s) => driver.destroy(s.name)));
  });

  it('grows the root disk to the spec and sets net0 with the static address', async () => {
    const s = specFor(harness, 'disk');
    const info = await driver.ensure({ ...s, resources: { ...s.resources, diskGb: 8 } });
    expect(info.limits).toMatchObject({ diskGb: 8, memoryMb: 192, cores: 1 });
    const guest = sim.cluster.guests.get(Number(info.handle!.split('/')[1]))!;
    expect(guest.config.net0).toBe(
      `name=eth0,bridge=vmbr1,firewall=1,ip=${info.ip}/24,gw=10.10.10.1,hwaddr=${guest.config.net0!.split('hwaddr=')[1]}`,
    );
    expect(guest.config.env!.split('\0')).toContain('APP_NAME=app-disk');
    expect(sim.requests.filter((r) => r.path.endsWith('/resize')).at(-1)?.params.size).toBe('8G');
    await driver.destroy(s.name);
    expect(await driver.registry.lookup(s.name)).toBeUndefined();
    expect(await driver.pool.lookup(s.name)).toBeUndefined();
  });

  it('falls back to a full clone where the storage cannot link', async () => {
    const s = { ...specFor(harness, 'full'), workload: { kind: 'clone' as const, template: '9001' } };
    await driver.ensure(s);
    const clones = sim.requests.filter((r) => r.path === '/nodes/pve1/lxc/9001/clone');
    expect(clones.map((r) => r.params.full)).toEqual(['0', '1']);
    expect(clones[1]!.params.storage).toBe('ceph');
    await driver.destroy(s.name);
  });

  it('places containers by free capacity, skipping drained, full and offline nodes', async () => {
    const place = async (role: string) => {
      const s = specFor(harness, role);
      const info = await driver.ensure(s);
      await driver.destroy(s.name);
      return info.handle!.split('/')[0];
    };
    expect(await place('roomy')).toBe('pve2');
    await db.db
      .insertInto('hosts')
      .values({
        id: newId('host'),
        name: 'pve2',
        driver: 'proxmox',
        memory_mb: 131072,
        cores: 32,
        disk_gb: 1000,
        draining: true,
      })
      .execute();
    expect(await place('drained')).toBe('pve1');
    await db.db
      .updateTable('hosts')
      .set({ draining: false, max_containers: 0 })
      .where('name', '=', 'pve2')
      .execute();
    expect(await place('capped')).toBe('pve1');
    await db.db.deleteFrom('hosts').execute();
    const stranded = specFor(harness, 'stranded');
    await driver.ensure(stranded);
    sim.cluster.nodes.get('pve2')!.online = false;
    try {
      // A container on a node that went away is reported as the platform's outage, not as missing.
      await expect(driver.status(stranded.name)).rejects.toMatchObject({ code: 'unavailable' });
      expect(await place('outage')).toBe('pve1');
      sim.cluster.nodes.get('pve1')!.online = false;
      await expect(driver.ensure(specFor(harness, 'nowhere'))).rejects.toMatchObject({
        code: 'capacity_exhausted',
      });
    } finally {
      sim.cluster.nodes.get('pve1')!.online = true;
      sim.cluster.nodes.get('pve2')!.online = true;
    }
    await driver.destroy(stranded.name);
  });

  it('lists only the guests it made, never those of another platform on the cluster', async () => {
    const s = specFor(harness, 'ours');
    await driver.ensure(s);
    // Another platform's guest: a container name, a VMID in our range, but no row of ours.
    const foreign = specFor(harness, 'theirs').name;
    await driver.api.task('POST', '/nodes/pve1/lxc/9000/clone', {
      newid: 10999,
      hostname: foreign,
      full: false,
    });
    try {
      const names = (await driver.list()).map((c) => c.name);
      expect(names).toContain(s.name);
      expect(names).not.toContain(foreign);
    } finally {
      await driver.api.task('DELETE', '/nodes/pve1/lxc/10999', { purge: true });
      await driver.destroy(s.name);
    }
  });

  it('stops a container that ignores a clean shutdown, and snapshots', async () => {
    const s = specFor(harness, 'stubborn');
    const info = await driver.ensure(s);
    await driver.start(s.name);
    sim.cluster.guests.get(Number(info.handle!.split('/')[1]))!.stubborn = true;
    await driver.snapshot(s.name, 'before-upgrade');
    await driver.stop(s.name, { timeoutMs: 1000 });
    expect((await driver.status(s.name)).state).toBe('stopped');
    const paths = sim.requests
      .filter((r) => r.path.includes('/status/'))
      .map((r) => r.path.split('/').at(-1));
    expect(paths.slice(-2)).toEqual(['shutdown', 'stop']);
    await driver.destroy(s.name);
  });

  it('trusts the cluster by pinned fingerprint and refuses a wrong one or an unknown CA', async () => {
    const pinned = driverWith({ fingerprint: sim.fingerprint });
    expect(await pinned.list()).toBeInstanceOf(Array);
    await pinned.close();
    const before = sim.requests.length;
    const wrong = driverWith({
      fingerprint: sim.fingerprint.replace(/^../, sim.fingerprint.startsWith('AA') ? 'BB' : 'AA'),
    });
    await expect(wrong.list()).rejects.toMatchObject({ code: 'unavailable', message: /fingerprint/ });
    await wrong.close();
    const systemCas = driverWith({});
    await expect(systemCas.list()).rejects.toMatchObject({ code: 'unavailable' });
    await systemCas.close();
    expect(sim.requests.length).toBe(before);
  });
});
