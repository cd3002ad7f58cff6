import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadCatalog, REPO_ROOT } from '../src/catalog/load.ts';
import { removeBridge } from '../src/compute/lxc/bridge.ts';
import { CGROUP } from '../src/compute/lxc/cgroup.ts';
import { LxcDriver } from '../src/compute/lxc/driver.ts';
import { run, sleep } from '../src/compute/shared/run.ts';
import { containerName, type ContainerSpec } from '../src/core/compute.ts';
import { newId } from '../src/core/ids.ts';
import { TENANT_KIND } from '../src/core/kinds.ts';
import { memoryRequest } from '../src/core/services.ts';
import { createLogger } from '../src/observability/logger.ts';
import { containerSpecFor } from '../src/services/deploy-context.ts';
import {
  addressRefusal,
  CAPACITY_WAIT,
  DASHBOARD_CLAIM,
  DASHBOARD_REQUEST_MB,
  placeOrRefuse,
} from '../src/services/hosts.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import { lxcAvailable, privateNetwork } from './support/lxc.ts';
import { missingPart } from './support/strict.ts';

/**
 * Requests and limits on real LXC: a dashboard container's cgroup memory.max
 * is its limit (not the request placement counts), and an idle dashboard uses
 * less than its request; the same for a catalog service, whose measured
 * request is far below its limit. A network too small for one more container is a
 * placement refusal that names it.
 */
const skip = missingPart('lxc (root and lxc tools)', lxcAvailable(), 'apt-get install lxc and run as root');
// A /24 as the former default was, and the /20 around it that replaces it.
const former = privateNetwork('w');
const widened = former.subnet.replace(/\.(\d+)\.0\/24$/, (_, c: string) => `.${Number(c) & 0xf0}.0/20`);
// The other tests' network, never inside that /20: the widened pool would adopt its allocations too.
const net = (() => {
  const slash20 = (subnet: string) =>
    subnet.split('.').slice(0, 2).join('.') + `.${Number(subnet.split('.')[2]) >> 4}`;
  for (;;) {
    const n = privateNetwork('r');
    if (slash20(n.subnet) !== slash20(former.subnet)) return n;
  }
})();
// A /30: the bridge takes .1, one address is left for containers.
const tiny = { bridge: `${net.bridge.slice(0, 14)}t`, subnet: net.subnet.replace(/\.0\/24$/, '.0/30') };
let db: TestDatabase;
let lxcPath: string;
const log = createLogger('silent');
const drivers: LxcDriver[] = [];
const open = (network: { bridge: string; subnet: string }) => {
  const driver = new LxcDriver({ db: db.db, log, lxcPath, ...network });
  drivers.push(driver);
  return driver;
};

beforeAll(async () => {
  if (skip) return;
  db = await createTestDatabase({ max: 5 });
  lxcPath = await mkdtemp(path.join(os.tmpdir(), 'aiqso-limits-'));
});

afterAll(async () => {
  if (skip) return;
  for (const driver of drivers) {
    for (const c of await driver.list()) await driver.destroy(c.name);
    await driver.close();
  }
  await removeBridge(net.bridge);
  await removeBridge(tiny.bridge);
  await removeBridge(former.bridge);
  await rm(lxcPath, { recursive: true, force: true });
  await db.drop();
});

function dashboardSpec(gateway: string): ContainerSpec {
  const tenantId = newId('tenant');
  return {
    name: containerName(tenantId, 'dashboard'),
    tenantId,
    role: 'dashboard',
    // As the tenant reconciler asks for it: started from its start-up snapshot.
    workload: { kind: 'app', dir: path.join(REPO_ROOT, 'dashboard'), entry: 'server.mjs', snapshot: true },
    resources: {
      memoryMb: DASHBOARD_CLAIM.memory_mb,
      cores: DASHBOARD_CLAIM.cores,
      diskGb: DASHBOARD_CLAIM.disk_gb,
    },
    port: 3000,
    env: {
      PORT: '3000',
      AIQSO_API_URL: `http://${gateway}:9`,
      AIQSO_TENANT_ID: tenantId,
      AIQSO_TENANT_SLUG: 'limits',
      AIQSO_COMPANY: 'Limits Ltd',
      AIQSO_API_KEY: 'none',
    },
    hostPorts: [],
  };
}

async function healthz(url: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const ok = await fetch(url, { signal: AbortSignal.timeout(2000) }).then(
      (r) => r.status === 200,
      () => false,
    );
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`${url} did not answer`);
    await sleep(100);
  }
}

describe('requests and limits on lxc', { timeout: 240_000 }, () => {
  it("sets the dashboard's limit as memory.max, and an idle dashboard stays below its request", async ({
    skip: skipTest,
  }) => {
    if (skip) return skipTest();
    expect(memoryRequest(DASHBOARD_CLAIM)).toBe(DASHBOARD_REQUEST_MB);
    expect(DASHBOARD_REQUEST_MB).toBeLessThan(DASHBOARD_CLAIM.memory_mb);
    const driver = open(net);
    const spec = dashboardSpec(await driver.hostAddress());
    await driver.ensure(spec);
    const info = await driver.start(spec.name);
    await healthz(`http://${info.endpoint!.host}:${info.endpoint!.port}/healthz`);
    const status = await driver.status(spec.name);
    // The app under the container's init runs from the blob built for it, seen at /app.
    const init = (await run('lxc-info', ['-P', lxcPath, '-n', spec.name, '-pH'])).stdout.trim();
    const [app] = (await readFile(`/proc/${init}/task/${init}/children`, 'utf8')).trim().split(' ');
    const argv = (await readFile(`/proc/${app}/cmdline`, 'utf8')).replace(/\0$/, '').split('\0');
    expect(argv.slice(-3, -1)).toEqual(['--snapshot-blob', expect.stringMatching(/^\/app\/\.snapshot\//)]);
    expect(argv.at(-1)).toBe('/app/server.mjs');
    // The limit is what the cgroup enforces; the request is only what placement counts.
    expect(status.limits?.memoryMb).toBe(DASHBOARD_CLAIM.memory_mb);
    // Read back from the container's cgroup (memory.max on cgroup v2, memory.limit_in_bytes on v1).
    const key = CGROUP === 'v2' ? 'memory.max' : 'memory.limit_in_bytes';
    const limit = await run('lxc-cgroup', ['-P', lxcPath, '-n', spec.name, key]);
    expect(limit.stdout.trim()).toBe(String(DASHBOARD_CLAIM.memory_mb * 2 ** 20));
    // Idle (answered once, then left alone): what it uses is within what placement counts for it.
    await sleep(3000);
    const used = (await driver.stats(spec.name)).memoryBytes;
    console.log(
      `idle dashboard on lxc: ${(used / 2 ** 20).toFixed(1)} MB (request ${DASHBOARD_REQUEST_MB} MB)`,
    );
    expect(used).toBeGreaterThan(0);
    expect(used).toBeLessThan(DASHBOARD_REQUEST_MB * 2 ** 20);
  });

  it("sets a catalog service's limit, not its request, as memory.max", async ({ skip: skipTest }) => {
    if (skip) return skipTest();
    const template = loadCatalog().find((t) => t.key === 'notes')!;
    const { resources } = template;
    expect(resources.request_memory_mb).toBeDefined();
    expect(memoryRequest(resources)).toBeLessThan(resources.memory_mb);
    const driver = open(net);
    const gateway = await driver.hostAddress();
    const tenantId = newId('tenant');
    // The container spec the service reconciler builds from the subscription's spec (request included).
    const spec = containerSpecFor(
      {
        id: newId('tenantService'),
        tenantId,
        spec: {
          service: 'notes',
          slug: 'limits',
          resources,
          removeAfter: null,
          subscribedAt: new Date().toISOString(),
        },
        status: 'pending',
        template,
        tenantStatus: 'active',
        containerName: containerName(tenantId, 'notes'),
        database: { name: 'limits_notes', role: 'limits_notes' },
      },
      {
        driver: 'lxc',
        repoRoot: REPO_ROOT,
        publicUrl: 'http://localhost',
        dbReach: { host: gateway, port: 5432 },
        root: 'limits-root-secret',
      },
    );
    expect(spec.resources.memoryMb).toBe(resources.memory_mb);
    await driver.ensure(spec);
    await driver.start(spec.name);
    const status = await driver.status(spec.name);
    expect(status.limits?.memoryMb).toBe(resources.memory_mb);
    const key = CGROUP === 'v2' ? 'memory.max' : 'memory.limit_in_bytes';
    const limit = await run('lxc-cgroup', ['-P', lxcPath, '-n', spec.name, key]);
    expect(limit.stdout.trim()).toBe(String(resources.memory_mb * 2 ** 20));
  });

  it('refuses placement when the network has no free address, naming it, with one alert', async ({
    skip: skipTest,
  }) => {
    if (skip) return skipTest();
    const driver = open(tiny);
    expect(await driver.addressRoom()).toEqual({ network: tiny.subnet, size: 1, free: 1 });
    expect(await addressRefusal(driver)).toBeNull();
    const first = dashboardSpec(await driver.hostAddress());
    await driver.ensure(first);
    expect(await driver.addressRoom()).toEqual({ network: tiny.subnet, size: 1, free: 0 });
    const waiting = { kind: TENANT_KIND, id: newId('tenant') };
    const place = () =>
      placeOrRefuse(
        db.db,
        { driver: 'lxc', dataDir: lxcPath },
        {
          resource: waiting,
          need: DASHBOARD_CLAIM,
          what: 'the dashboard',
          owner: 'tenant next',
          addressRoom: () => driver.addressRoom(),
        },
      );
    const refusal = `network ${tiny.subnet} has no free container address (all 1 are taken)`;
    expect(await place()).toBe(refusal);
    expect(await place()).toBe(refusal);
    const alerts = await db.db
      .selectFrom('outbox')
      .select('payload')
      .where('key', 'like', 'alert:capacity:%')
      .execute();
    expect(alerts).toHaveLength(1);
    expect(alerts[0]!.payload).toMatchObject({ short: refusal });
    // The driver itself refuses a second container too, as exhausted capacity.
    await expect(driver.ensure(dashboardSpec(await driver.hostAddress()))).rejects.toMatchObject({
      code: 'capacity_exhausted',
    });
    // The one address frees while a tenant has been waiting for room since before: it is kept for
    // that tenant, whoever looks first.
    const ahead = newId('tenant');
    await db.db
      .insertInto('tenants')
      .values({ id: ahead, slug: 'ahead', company: 'Ahead Ltd', plan: 'starter', status: 'provisioning' })
      .execute();
    await db.db
      .insertInto('resources')
      .values({
        kind: TENANT_KIND,
        id: ahead,
        tenant_id: ahead,
        spec: JSON.stringify({}),
        steps: JSON.stringify([
          {
            name: 'placement',
            state: 'waiting',
            waitingFor: `${CAPACITY_WAIT}${refusal}`,
            waitingSince: new Date(Date.now() - 60_000).toISOString(),
          },
        ]),
      })
      .execute();
    await driver.destroy(first.name);
    expect(await driver.addressRoom()).toMatchObject({ free: 1 });
    expect(await place()).toBe(
      `network ${tiny.subnet} has 1 free container address(es), kept for 1 tenant(s) waiting longer`,
    );
    const placeAhead = () =>
      placeOrRefuse(
        db.db,
        { driver: 'lxc', dataDir: lxcPath },
        {
          resource: { kind: TENANT_KIND, id: ahead },
          waitingSince: new Date(Date.now() - 60_000),
          need: DASHBOARD_CLAIM,
          what: 'the dashboard',
          owner: 'tenant ahead',
          addressRoom: () => driver.addressRoom(),
        },
      );
    expect(await placeAhead()).toBeNull();
  });

  it('keeps a container of a narrower former network reachable, at its address, when the network is widened', async ({
    skip: skipTest,
  }) => {
    if (skip) return skipTest();
    const before = open(former);
    const old = { ...dashboardSpec(await before.hostAddress()), ip: undefined };
    await before.ensure(old);
    const oldInfo = await before.start(old.name);
    await healthz(`http://${oldInfo.endpoint!.host}:${oldInfo.endpoint!.port}/healthz`);
    await before.close();

    // The platform restarts with the wider network: the running container keeps its address and
    // answers; a new one gets an address of the wide network, never the former gateway.
    const after = open({ bridge: former.bridge, subnet: widened });
    const fresh = dashboardSpec(await after.hostAddress());
    const freshInfo = await after.ensure(fresh);
    expect(await after.pool.lookup(old.name)).toBe(oldInfo.endpoint!.host);
    expect(await after.pool.formerGateways()).toEqual([`${former.subnet.replace(/0\/24$/, '1')}/24`]);
    const addresses = (await run('ip', ['-4', '-o', 'addr', 'show', 'dev', former.bridge])).stdout;
    expect(addresses).toContain(`${await after.hostAddress()}/20`);
    expect(addresses).toContain(`${former.subnet.replace(/0\/24$/, '1')}/24`);
    expect(freshInfo.endpoint?.host).not.toBe(former.subnet.replace(/0\/24$/, '1'));
    await healthz(`http://${oldInfo.endpoint!.host}:${oldInfo.endpoint!.port}/healthz`);
    await after.start(fresh.name);
    await healthz(`http://${freshInfo.endpoint!.host}:${freshInfo.endpoint!.port}/healthz`);

    // Ensured again under the wide network (as the reconcilers do on drift) and restarted: same address.
    await after.ensure({
      ...old,
      env: { ...old.env, AIQSO_API_URL: `http://${await after.hostAddress()}:9` },
    });
    const restarted = await after.restart(old.name);
    expect(restarted.endpoint?.host).toBe(oldInfo.endpoint!.host);
    await healthz(`http://${restarted.endpoint!.host}:${restarted.endpoint!.port}/healthz`);
    const config = await run('grep', ['ipv4', path.join(lxcPath, old.name, 'config')]);
    expect(config.stdout).toContain(`${oldInfo.endpoint!.host}/20`);
  });
});
