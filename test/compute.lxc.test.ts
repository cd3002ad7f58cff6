import { mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { realpathSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bridgePorts, removeBridge } from '../src/compute/lxc/bridge.ts';
import { LxcDriver } from '../src/compute/lxc/driver.ts';
import type { ContainerInfo } from '../src/core/compute.ts';
import { runOk } from '../src/compute/shared/run.ts';
import { createLogger } from '../src/observability/logger.ts';
import { appWorkload, fetchApp } from './support/compute-app.ts';
import { computeContract, specFor, type ContractHarness } from './support/compute-contract.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import { lxcAvailable, privateNetwork } from './support/lxc.ts';
import { missingPart } from './support/strict.ts';

const skip = missingPart('lxc (root and lxc tools)', lxcAvailable(), 'apt-get install lxc and run as root');
const { bridge, subnet } = privateNetwork('t');
let db: TestDatabase;
let lxcPath: string;

beforeAll(async () => {
  if (skip) return;
  db = await createTestDatabase({ max: 10 });
  lxcPath = await mkdtemp(path.join(os.tmpdir(), 'aiqso-lxc-'));
});

afterAll(async () => {
  if (skip) return;
  await removeBridge(bridge);
  await rm(lxcPath, { recursive: true, force: true });
  await db.drop();
});

const open = () =>
  Promise.resolve(new LxcDriver({ db: db.db, log: createLogger('silent'), lxcPath, bridge, subnet }));

computeContract('lxc', {
  skip: () => skip,
  open,
  workload: appWorkload,
  async crashMidEnsure(spec) {
    // A crash mid-clone leaves the container directory without its config.
    await mkdir(path.join(lxcPath, spec.name, 'overlay', 'delta'), { recursive: true });
  },
  http: (info) => fetchApp(info),
  dataPath: '/root/marker.txt',
  hostProcesses: true,
  exec: true,
  enforces: ['memoryMb', 'cores'],
} satisfies ContractHarness);

describe('lxc driver configuration digest', () => {
  it('reports no configuration for a container started outside the driver', async ({ skip: skipTest }) => {
    if (skip) return skipTest();
    const driver = await open();
    const s = specFor({ workload: appWorkload } as ContractHarness, 'outside');
    try {
      await driver.ensure(s);
      await runOk('lxc-start', ['-P', lxcPath, '-n', s.name]);
      const info = await driver.status(s.name);
      expect(info.state).toBe('running');
      expect(info.configDigest).toBeUndefined();
    } finally {
      await driver.destroy(s.name);
      await driver.close();
    }
  });
});

describe('lxc driver state, read from /proc once a container is known', () => {
  it('follows a container stopped, started and killed behind its back', async ({ skip: skipTest }) => {
    if (skip) return skipTest();
    const driver = await open();
    const s = specFor({ workload: appWorkload } as ContractHarness, 'behind');
    try {
      await driver.ensure(s);
      const started = await driver.start(s.name);
      expect(started.configDigest).toBeDefined();
      expect((await driver.status(s.name)).state).toBe('running');
      expect((await driver.memory(s.name)).memoryBytes).toBeGreaterThan(0);
      // Stopped by hand: the init it last saw is gone, so it asks LXC again.
      await runOk('lxc-stop', ['-P', lxcPath, '-n', s.name, '-k']);
      expect((await driver.status(s.name)).state).toBe('stopped');
      expect((await driver.memory(s.name)).memoryBytes).toBe(0);
      // Started by hand: running, with no configuration it can vouch for (not the init it started).
      await runOk('lxc-start', ['-P', lxcPath, '-n', s.name]);
      const outside = await driver.status(s.name);
      expect(outside.state).toBe('running');
      expect(outside.configDigest).toBeUndefined();
      // Its init killed: stopped at the next look, although the pid was known.
      const pid = Number((await runOk('lxc-info', ['-P', lxcPath, '-n', s.name, '-p', '-H'])).trim());
      process.kill(pid, 'SIGKILL');
      await expect.poll(async () => (await driver.status(s.name)).state, { timeout: 10_000 }).toBe('stopped');
      // And through the driver again: running, its configuration vouched for.
      expect((await driver.start(s.name)).configDigest).toBe(started.configDigest);
    } finally {
      await driver.destroy(s.name);
      await driver.close();
    }
  });
});

/** A container of the test app, made and started by the driver, then destroyed. */
async function withRunning(
  suffix: string,
  use: (driver: LxcDriver, name: string, info: ContainerInfo) => Promise<void>,
): Promise<void> {
  const driver = await open();
  const s = specFor({ workload: appWorkload } as ContractHarness, suffix);
  try {
    await driver.ensure(s);
    await use(driver, s.name, await driver.start(s.name));
  } finally {
    await driver.destroy(s.name);
    await driver.close();
  }
}

describe('lxc app init and base template', () => {
  it('starts the app again when it dies', async ({ skip: skipTest }) => {
    if (skip) return skipTest();
    await withRunning('again', async (_driver, name, info) => {
      const first = await fetchApp(info);
      const init = Number((await runOk('lxc-info', ['-P', lxcPath, '-n', name, '-p', '-H'])).trim());
      const children = async () => (await readFile(`/proc/${init}/task/${init}/children`, 'utf8')).trim();
      const app = Number((await children()).split(' ')[0]);
      expect((await readFile(`/proc/${app}/cmdline`, 'utf8')).split('\0')[0]).toMatch(/node$/);
      process.kill(app, 'SIGKILL');
      // The init waits a second (its back-off), then runs the app again: a new process answers.
      await expect
        .poll(async () => (await fetchApp(info, 1000).catch(() => undefined))?.pid, { timeout: 10_000 })
        .not.toBe(first.pid);
      const next = Number((await children()).split(' ')[0]);
      expect(next).not.toBe(app);
      expect((await readFile(`/proc/${next}/cmdline`, 'utf8')).split('\0')[0]).toMatch(/node$/);
    });
  });

  it("gives containers the host's time zone file", async ({ skip: skipTest }) => {
    if (skip) return skipTest();
    await withRunning('zone', async (driver, name) => {
      const inside = await driver.exec(name, ['readlink', '-f', '/etc/localtime']);
      expect(inside.exitCode, inside.stderr).toBe(0);
      expect(inside.stdout.trim()).toBe(realpathSync('/etc/localtime'));
    });
  });
});

describe('lxc driver at scale', () => {
  it('clones, starts, serves and destroys 20 containers concurrently, leaving nothing behind', async ({
    skip: skipTest,
  }) => {
    if (skip) return skipTest();
    const driver = await open();
    const harness = { workload: appWorkload } as ContractHarness;
    const specs = Array.from({ length: 20 }, (_, i) => specFor(harness, `many${i}`));
    const infos = await Promise.all(
      specs.map(async (s) => {
        await driver.ensure(s);
        return driver.start(s.name);
      }),
    );
    expect(new Set(infos.map((i) => i.ip)).size).toBe(20);
    const answers = await Promise.all(infos.map((i) => fetchApp(i)));
    expect(answers.map((a) => a.name)).toEqual(specs.map((s) => `app-${s.role}`));
    expect(await bridgePorts(bridge)).toHaveLength(20);

    await Promise.all(specs.map((s) => driver.destroy(s.name)));
    expect(await bridgePorts(bridge)).toEqual([]);
    const mounts = await readFile('/proc/self/mountinfo', 'utf8');
    expect(mounts.includes(lxcPath)).toBe(false);
    expect(await driver.pool.owners()).toEqual([]);
    const left = (await readdir(lxcPath)).filter((n) => n.startsWith('aiqso-'));
    expect(left).toEqual([]);
    await driver.close();
  });
});
