import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProxmoxDriver } from '../src/compute/proxmox/driver.ts';
import { containerName, type ContainerSpec, type Workload } from '../src/core/compute.ts';
import type { DomainError } from '../src/core/errors.ts';
import { newId } from '../src/core/ids.ts';
import { createLogger } from '../src/observability/logger.ts';
import { appWorkload, fetchApp } from './support/compute-app.ts';
import { runCli } from './support/cli.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import { lxcAvailable, privateNetwork } from './support/lxc.ts';
import { startProxmoxSimulator, type ProxmoxSimulator } from './support/proxmox-sim/server.ts';
import { registrySkip, startRegistry, webImage, type TestRegistry } from './support/registry.ts';
import { missingPart } from './support/strict.ts';

/**
 * Images and apps on the proxmox driver, against the simulator, which pulls
 * with skopeo from a real registry, takes uploads, validates every request
 * against the Proxmox VE 9.1 schema and runs what it created (a process in a
 * network namespace with the container's address, chrooted into its image).
 */
const skip =
  missingPart('root with ip netns (network namespaces)', lxcAvailable(), 'run as root with iproute2') ||
  registrySkip();

let sim: ProxmoxSimulator;
let db: TestDatabase;
let registry: TestRegistry;
let workDir: string;
let web: string;
const net = privateNetwork('pw');
const log = createLogger('silent');

beforeAll(async () => {
  if (skip) return;
  registry = await startRegistry();
  web = await registry.push('test/web', '1', webImage(8080));
  sim = await startProxmoxSimulator({ registriesConf: registry.registriesConf, network: net });
  db = await createTestDatabase();
  workDir = await mkdtemp(path.join(os.tmpdir(), 'aiqso-pve-apps-'));
  const c = sim.cluster;
  c.addNode('pve1', 64, 16);
  c.storages.set('local', { id: 'local', linkedClones: false, shared: false });
  c.storages.set('local-lvm', { id: 'local-lvm', linkedClones: true, shared: false });
}, 120_000);

afterAll(async () => {
  if (skip) return;
  await sim?.close();
  await db?.drop();
  await registry?.stop();
  await rm(workDir, { recursive: true, force: true });
}, 60_000);

const driver = () =>
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
    storage: 'local-lvm',
    backupStorage: 'local',
    templateStorage: 'local',
    workDir,
    bridge: net.bridge,
    subnet: net.subnet,
    vmidRange: [20000, 20999],
  });

const spec = (role: string, workload: Workload, port: number): ContainerSpec => {
  const tenantId = newId('tenant');
  return {
    name: containerName(tenantId, role),
    tenantId,
    role,
    workload,
    resources: { memoryMb: 192, cores: 1, diskGb: 2 },
    port,
    env: { APP_NAME: `app-${role}`, APP_TITLE: role },
  };
};

/** The DomainError a promise rejects with (its code and message). */
const failure = (p: Promise<unknown>) =>
  p.then(
    () => ({ code: 'none', message: 'resolved' }),
    (err: DomainError) => ({ code: err.code, message: err.message }),
  );

/** Every request the simulator refused as invalid (400: the schema, 501: not in the schema). */
const invalid = () => sim.requests.filter((r) => r.status === 400 || r.status === 501);

describe('proxmox: containers from images and apps', { timeout: 180_000 }, () => {
  it('pulls an image once, creates a container from it that answers at its address, and recovers from lock timeouts and a failed task', async ({
    skip: skipTest,
  }) => {
    if (skip) return skipTest();
    const d = driver();
    try {
      const s = spec('web', { kind: 'image', image: web }, 8080);
      expect(await d.images.cached(web)).toBe(false);
      // The pull fails once (a task ending in error) and the config is locked twice: the driver retries.
      sim.cluster.inject({ kind: 'lock', method: 'PUT', path: /\/lxc\/\d+\/config$/, times: 2 });
      sim.cluster.inject({
        kind: 'task',
        method: 'POST',
        path: /oci-registry-pull$/,
        message: 'got timeout',
      });
      await expect(d.images.pull(web)).rejects.toThrow(/got timeout/);
      expect(sim.cluster.templates).toHaveLength(0);
      expect(await d.images.pull(web)).toMatchObject({ pulled: true });
      expect(await d.images.pull(web)).toMatchObject({ pulled: false });
      expect(await d.images.cached(web)).toBe(true);
      const created = await d.ensure(s);
      expect(created.state).toBe('stopped');
      const running = await d.start(s.name);
      expect(running.state).toBe('running');
      const answer = (await fetchApp(running)) as unknown as { name: string; title: string };
      expect(answer).toMatchObject({ name: `app-web`, title: 'web' });
      expect(running.endpoint!.host).toMatch(/^10\./);
      // The image's own environment stays beside the spec's.
      const vm = sim.cluster.guests.get(Number(running.handle!.split('/')[1]))!;
      expect(vm.config.env!.split('\0')).toEqual(
        expect.arrayContaining(['IMAGE_DEFAULT=from-image', 'APP_NAME=app-web', 'PORT=8080']),
      );
      expect(vm.config.unprivileged).toBe('1');
      await d.stop(s.name);
      expect((await d.status(s.name)).state).toBe('stopped');
      await d.destroy(s.name);
      expect((await d.status(s.name)).state).toBe('missing');
      expect(invalid()).toEqual([]);
    } finally {
      await d.close();
    }
  });

  it('uploads an app as an OCI archive once and runs it', async ({ skip: skipTest }) => {
    if (skip) return skipTest();
    const d = driver();
    try {
      const a = spec('appa', appWorkload(), 3000);
      const b = spec('appb', appWorkload(), 3000);
      await Promise.all([d.ensure(a), d.ensure(b)]);
      const uploads = sim.requests.filter((r) => r.path.endsWith('/upload') && r.status === 200);
      expect(uploads).toHaveLength(1);
      const [ra, rb] = await Promise.all([d.start(a.name), d.start(b.name)]);
      expect(await fetchApp(ra)).toMatchObject({ name: 'app-appa', packages: true });
      expect((await fetchApp(rb)).name).toBe('app-appb');
      for (const s of [a, b]) await d.destroy(s.name);
      expect(invalid()).toEqual([]);
    } finally {
      await d.close();
    }
  });

  it('fails an image that does not exist or a registry that refuses with the reason, creating nothing', async ({
    skip: skipTest,
  }) => {
    if (skip) return skipTest();
    const d = driver();
    try {
      const guests = sim.cluster.guests.size;
      const templates = sim.cluster.templates.length;
      const ghost = await failure(d.images.pull(`${registry.host}/test/ghost:1`));
      expect(ghost.code).toBe('deploy_failed');
      expect(ghost.message).toMatch(/test\/ghost:1: .*(manifest unknown|not found)/i);
      const refused = await failure(d.images.pull('127.0.0.1:9/test/web:1'));
      expect(refused.code).toBe('deploy_failed');
      expect(refused.message).toMatch(/connection refused/i);
      const commandOnly = await failure(
        d.ensure(spec('cmdonly', { kind: 'image', image: web, command: ['-f', '-p', '8080'] }, 8080)),
      );
      expect(commandOnly.code).toBe('deploy_failed');
      expect(commandOnly.message).toMatch(/replaces the image's command but not its entrypoint/);
      expect(sim.cluster.guests.size).toBe(guests);
      expect(sim.cluster.templates).toHaveLength(templates);
      expect(invalid()).toEqual([]);
    } finally {
      await d.close();
    }
  });

  it("runs an image's init commands once per deployment and in its working directory, through the image's shell", async ({
    skip: skipTest,
  }) => {
    if (skip) return skipTest();
    const d = driver();
    const init = [['/bin/sh', '-c', 'echo ran >> /data/init-runs; echo "it\'s" > /data/quoted']];
    // Serves `.`: only from /www (the working directory) is there a /cgi-bin/index.cgi to answer.
    const relative = spec(
      'relative',
      {
        kind: 'image',
        image: web,
        entrypoint: ['/bin/busybox', 'httpd'],
        command: ['-f', '-p', '8080', '-h', '.'],
        workdir: '/www',
        init,
      },
      8080,
    );
    // The image's own command (which Proxmox set as the entrypoint), with an init command before it.
    const own = spec('own', { kind: 'image', image: web, init }, 8080);
    const failing = spec(
      'failing',
      { kind: 'image', image: web, init: [['/bin/sh', '-c', 'echo schema locked; exit 4']] },
      8080,
    );
    const vmOf = (info: { handle?: string }) => sim.cluster.guests.get(Number(info.handle!.split('/')[1]))!;
    try {
      for (const s of [relative, own]) {
        await d.ensure(s);
        // A second ensure (a spec update) finds the image's command again, not the boot script.
        const info = await d.ensure(s);
        const running = await d.start(s.name);
        const answer = (await fetchApp(running)) as unknown as { name: string; initRuns: number };
        expect(answer).toMatchObject({ name: `app-${s.role}`, initRuns: 1 });
        const config = vmOf(info).config;
        expect(config.entrypoint).toBe(`/bin/sh -c 'eval "$AIQSO_BOOT"'`);
        const env = config.env!.split('\0');
        expect(env).toContain('AIQSO_IMAGE_CMD=/bin/busybox httpd -f -p 8080 -h /www');
        // A restart does not run init again: its marker is in the container's own root filesystem.
        const again = (await fetchApp(await d.restart(s.name))) as unknown as { initRuns: number };
        expect(again.initRuns).toBe(1);
        // It came back with net0's MAC address, as on Proxmox (with a new one each start, the host's
        // neighbour entry for its address pointed at the old one and nothing answered for up to a minute).
        const hwaddr = /hwaddr=([0-9A-F:]+)/i.exec(config.net0!)![1]!.toLowerCase();
        const link = execFileSync('ip', [
          '-n',
          `aiqsosim${vmOf(info).vmid}`,
          'link',
          'show',
          'eth0',
        ]).toString();
        expect(link).toContain(`link/ether ${hwaddr} `);
      }
      // The init command ran in each container of the same image, not once for both.
      for (const s of [relative, own]) {
        const vmid = vmOf(await d.status(s.name)).vmid;
        expect(await sim.cluster.workloads!.guestFile(vmid, '/data/quoted')).toBe("it's\n");
        expect(await sim.cluster.workloads!.guestFile(vmid, '/data/init-runs')).toBe('ran\n');
      }

      // A failing init command stops the container; its output says which command and its status.
      const f = await d.ensure(failing);
      await d.start(failing.name);
      let state = (await d.status(failing.name)).state;
      for (let i = 0; i < 100 && state === 'running'; i++) {
        await new Promise((r) => setTimeout(r, 100));
        state = (await d.status(failing.name)).state;
      }
      expect(state).toBe('stopped');
      expect(await sim.cluster.workloads!.lastOutput(vmOf(f).vmid)).toMatch(
        /schema locked\naiqso: init command failed \(4\): \/bin\/sh -c echo schema locked; exit 4/,
      );

      // Without init commands or a working directory, the image's own command comes back.
      const plain = await d.ensure({ ...own, workload: { kind: 'image', image: web } });
      expect(vmOf(plain).config.entrypoint).toBe('/bin/busybox httpd -f -p 8080 -h /www');
      expect(vmOf(plain).config.env).not.toMatch(/AIQSO_BOOT|AIQSO_IMAGE_CMD/);
      expect(invalid()).toEqual([]);
    } finally {
      for (const s of [relative, own, failing]) await d.destroy(s.name);
      await d.close();
    }
  });

  it('aiqso templates build pulls a service image onto the cluster ahead of its first deploy, once', async ({
    skip: skipTest,
  }) => {
    if (skip) return skipTest();
    const ref = await registry.push(
      'test/tplpve',
      '1',
      webImage(8080, { env: ['IMAGE_DEFAULT=from-image', 'BUILT_AS=tplpve'] }),
    );
    const catalog = await mkdtemp(path.join(os.tmpdir(), 'aiqso-tplcat-'));
    await writeFile(
      path.join(catalog, 'tplpve.yaml'),
      [
        'key: tplpve',
        'name: Tplpve',
        'description: A test-built image.',
        'kind: image',
        `image: ${ref}`,
        'min_memory_mb: 64',
        'resources: { memory_mb: 128, cores: 1, disk_gb: 1 }',
        'port: 8080',
        'health: { path: /healthz }',
        'route: { path: /tplpve }',
        'database: { postgres: false }',
        '',
      ].join('\n'),
    );
    const env = {
      DATABASE_URL: db.url,
      AIQSO_DATA_DIR: workDir,
      AIQSO_CATALOG_DIR: catalog,
      AIQSO_DRIVER: 'proxmox',
      PROXMOX_URL: sim.url,
      PROXMOX_TOKEN_ID: sim.tokenId,
      PROXMOX_TOKEN_SECRET: sim.tokenSecret,
      PROXMOX_CA_FILE: sim.certFile,
      PROXMOX_STORAGE: 'local-lvm',
      PROXMOX_BACKUP_STORAGE: 'local',
      PROXMOX_TEMPLATE_STORAGE: 'local',
      PROXMOX_BRIDGE: net.bridge,
      PROXMOX_SUBNET: net.subnet,
      PROXMOX_VMID_RANGE: '20000-20999',
    };
    const pulls = () =>
      sim.requests.filter((r) => r.method === 'POST' && r.path.endsWith('/oci-registry-pull')).length;
    const d = driver();
    try {
      const before = pulls();
      const built = await runCli(['templates', 'build', 'tplpve', '--json'], env, 120_000);
      expect(built.code, built.stderr).toBe(0);
      const volid = (JSON.parse(built.stdout) as { template: string }).template;
      expect(JSON.parse(built.stdout)).toMatchObject({ driver: 'proxmox', image: ref, pulled: true });
      expect(volid).toMatch(/^local:vztmpl\/aiqso-img-[0-9a-f]{24}\.tar$/);
      expect(built.stderr).toContain('tplpve: pulling onto pve1 (local)');
      expect(built.stderr).toContain(`tplpve: ready as ${volid}`);
      expect(pulls()).toBe(before + 1);
      // The driver's first deploy finds it there: no pull.
      expect(await d.images.cached(ref)).toBe(true);
      expect(await d.images.pull(ref)).toMatchObject({ pulled: false });
      const again = await runCli(['templates', 'build', 'tplpve'], env, 60_000);
      expect(again.code, again.stderr).toBe(0);
      expect(again.stderr).toContain(`tplpve: cached on pve1 as ${volid}`);
      expect(again.stdout).toMatch(/^tplpve: .*test\/tplpve:1 was ready already as local:vztmpl\//);
      expect(pulls()).toBe(before + 1);
      expect(invalid()).toEqual([]);
    } finally {
      await d.close();
      await rm(catalog, { recursive: true, force: true });
    }
  });
});
