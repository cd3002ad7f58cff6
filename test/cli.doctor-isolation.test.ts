import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkIsolation } from '../src/compute/doctor.ts';
import { removeBridge } from '../src/compute/lxc/bridge.ts';
import { LxcDriver } from '../src/compute/lxc/driver.ts';
import { removeNetworkPolicy } from '../src/compute/lxc/firewall.ts';
import { probeHostSecurity } from '../src/compute/lxc/security.ts';
import { ProxmoxDriver } from '../src/compute/proxmox/driver.ts';
import type { ContainerSpec } from '../src/core/compute.ts';
import { loadConfig } from '../src/config/load.ts';
import { createLogger } from '../src/observability/logger.ts';
import { runCli } from './support/cli.ts';
import { appWorkload } from './support/compute-app.ts';
import { specFor, type ContractHarness } from './support/compute-contract.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import { lxcAvailable, privateNetwork } from './support/lxc.ts';
import { startProxmoxSimulator, type ProxmoxSimulator } from './support/proxmox-sim/server.ts';
import { missingPart } from './support/strict.ts';

/** `aiqso doctor` says which walls are in force around tenant containers, and why not where not. */
const skipLxc = missingPart(
  'lxc (root and lxc tools)',
  lxcAvailable(),
  'apt-get install lxc and run as root',
);
const log = createLogger('silent');
let db: TestDatabase;
let dir: string;

beforeAll(async () => {
  db = await createTestDatabase({ max: 5 });
  dir = await mkdtemp(path.join(os.tmpdir(), 'aiqso-doctor-walls-'));
});
afterAll(async () => {
  await db.drop();
  await rm(dir, { recursive: true, force: true });
});

interface Line {
  part: string;
  status: string;
  detail: string;
  fix?: string;
}
const isolation = (lines: Line[]) =>
  Object.fromEntries(lines.filter((l) => l.part.startsWith('isolation')).map((l) => [l.part, l]));

describe('doctor: isolation with the lxc driver', { timeout: 120_000 }, () => {
  const { bridge, subnet } = privateNetwork('d');
  let lxcPath: string;
  let driver: LxcDriver;
  let spec: ContainerSpec;
  const env = (extra: Record<string, string> = {}) => ({
    AIQSO_DATA_DIR: dir,
    AIQSO_DRIVER: 'lxc',
    AIQSO_LXC_PATH: lxcPath,
    AIQSO_LXC_BRIDGE: bridge,
    AIQSO_LXC_SUBNET: subnet,
    ...extra,
  });
  const doctor = async (extra?: Record<string, string>) => {
    const result = await runCli(['doctor', '--json'], env(extra));
    return { code: result.code, checks: isolation(JSON.parse(result.stdout) as Line[]) };
  };

  beforeAll(async () => {
    if (skipLxc) return;
    lxcPath = await mkdtemp(path.join(os.tmpdir(), 'aiqso-doctor-lxc-'));
    driver = new LxcDriver({ db: db.db, log, lxcPath, bridge, subnet });
    spec = { ...specFor({ workload: appWorkload } as ContractHarness, 'doctor'), hostPorts: [8080] };
    await driver.ensure(spec);
    await driver.start(spec.name);
  });
  afterAll(async () => {
    if (skipLxc) return;
    await driver.destroy(spec.name);
    await removeBridge(bridge);
    await rm(lxcPath, { recursive: true, force: true });
  });

  it('reports the id map, AppArmor and seccomp as this host has them, the policy and egress in force', async ({
    skip,
  }) => {
    if (skipLxc) return skip();
    const { checks } = await doctor();
    expect(Object.keys(checks)).toEqual([
      'isolation: unprivileged',
      'isolation: apparmor',
      'isolation: seccomp',
      'isolation: network',
      'isolation: egress',
    ]);
    expect(checks['isolation: unprivileged']).toMatchObject({
      status: 'ok',
      detail: /root in a container is host uid 1\d{5}/,
    });
    const host = probeHostSecurity();
    expect(checks['isolation: apparmor']).toMatchObject(
      host.apparmor.enabled ? { status: 'ok' } : { status: 'warning', detail: /^not in force: / },
    );
    expect(checks['isolation: seccomp']!.status).toBe(host.seccomp.enabled ? 'ok' : 'warning');
    const ip = (await driver.status(spec.name)).ip!;
    expect(checks['isolation: network']).toMatchObject({
      status: 'ok',
      detail: new RegExp(
        `1 container\\(s\\) bound to their port, MAC and address.*${ip.replaceAll('.', '\\.')} \\. 8080`,
      ),
    });
    expect(checks['isolation: egress']).toMatchObject({
      status: 'ok',
      detail: /AIQSO_EGRESS=none.*\(in force\)/,
    });
  });

  it('fails where a wall is missing: the policy gone from a bridge with containers, egress not the one configured', async ({
    skip,
  }) => {
    if (skipLxc) return skip();
    const nat = await doctor({ AIQSO_EGRESS: 'nat' });
    expect(nat.checks['isolation: egress']).toMatchObject({ status: 'failed', fix: /re-applies the policy/ });
    expect(nat.code).toBe(1);

    await removeNetworkPolicy(bridge);
    const gone = await doctor();
    expect(gone.checks['isolation: network']).toMatchObject({
      status: 'failed',
      detail: /1 container port\(s\)/,
    });
    expect(gone.code).toBe(1);

    // A driver starting again (a worker restart) draws the walls again.
    const again = new LxcDriver({ db: db.db, log, lxcPath, bridge, subnet });
    await again.hostAddress();
    await again.close();
    expect((await doctor()).checks['isolation: network']!.status).toBe('ok');
  });
});

describe('doctor: isolation with the proxmox driver', () => {
  let sim: ProxmoxSimulator;
  beforeAll(async () => {
    sim = await startProxmoxSimulator();
    sim.cluster.addNode('pve1');
    sim.cluster.storages.set('ceph', { id: 'ceph', linkedClones: true, shared: true });
    sim.cluster.addTemplate(9000, 'pve1', 'ceph');
  });
  afterAll(() => sim.close());

  it("reads each guest's settings and the datacenter firewall through the API", async () => {
    const config = loadConfig(
      {
        AIQSO_DRIVER: 'proxmox',
        PROXMOX_URL: sim.url,
        PROXMOX_TOKEN_ID: sim.tokenId,
        PROXMOX_TOKEN_SECRET: sim.tokenSecret,
        PROXMOX_CA_FILE: sim.certFile,
        PROXMOX_STORAGE: 'ceph',
      },
      dir,
    );
    const driver = new ProxmoxDriver({
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
    });
    const s = {
      ...specFor({ workload: () => ({ kind: 'clone', template: '9000' }) } as ContractHarness, 'doc'),
    };
    const info = await driver.ensure(s);
    const lines = isolation(await checkIsolation(config));
    expect(lines['isolation: unprivileged']).toMatchObject({
      status: 'ok',
      detail: /^1 container\(s\), all unprivileged/,
    });
    expect(lines['isolation: firewall']).toMatchObject({
      status: 'ok',
      detail: /datacenter firewall on; 1 container/,
    });
    expect(lines['isolation: egress']).toMatchObject({ status: 'ok', detail: /AIQSO_EGRESS=none/ });

    const guest = sim.cluster.guests.get(Number(info.handle!.split('/')[1]))!;
    delete guest.config.unprivileged;
    sim.cluster.firewallEnabled = false;
    const bad = isolation(await checkIsolation(config));
    expect(bad['isolation: unprivileged']).toMatchObject({
      status: 'failed',
      detail: /1 of 1 container\(s\) privileged/,
    });
    expect(bad['isolation: firewall']).toMatchObject({
      status: 'failed',
      detail: /datacenter firewall is off/,
    });
    sim.cluster.firewallEnabled = true;
    guest.firewall.options.enable = '0';
    expect(isolation(await checkIsolation(config))['isolation: firewall']).toMatchObject({
      status: 'failed',
      detail: /1 of 1 container\(s\) without their firewall on/,
    });
    await driver.destroy(s.name);
    await driver.close();
  });

  it('says the process driver walls nothing', async () => {
    const lines = await checkIsolation(loadConfig({ AIQSO_DRIVER: 'process' }, dir));
    expect(lines.map((l) => [l.part, l.status])).toEqual([['isolation', 'not used']]);
    expect(lines[0]!.detail).toMatch(/not walled/);
  });
});
