import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  configDigest,
  containerName,
  type ComputeDriver,
  type ContainerInfo,
  type ContainerSpec,
  type Workload,
} from '../../src/core/compute.ts';
import { newId } from '../../src/core/ids.ts';

/** What each driver's test file supplies to the one contract suite. */
export interface ContractHarness {
  /** A new driver instance over the same state (a control-plane restart opens another). */
  open(): Promise<ComputeDriver>;
  workload(): Workload;
  /** Leave the half-made state a crash in the middle of `ensure` would leave. */
  crashMidEnsure?(spec: ContainerSpec): Promise<void>;
  /** Fetch `/` from the workload; absent when nothing really runs (a simulator). */
  http?(info: ContainerInfo): Promise<{ name: string | null; pid: number; packages: boolean }>;
  /** A writable absolute or relative path inside the container for export/import; absent without exec. */
  dataPath?: string;
  /** True when container processes are host processes whose argv the test can read. */
  hostProcesses: boolean;
  /** True when the driver can exec; false expects DomainError `unavailable`. */
  exec: boolean;
  /** Limits the driver enforces and reports back in `ContainerInfo.limits`. */
  enforces: ('memoryMb' | 'cores' | 'diskGb')[];
  skip?: () => boolean;
}

export function specFor(harness: ContractHarness, role: string, secret = 'none'): ContainerSpec {
  const tenantId = newId('tenant');
  return {
    name: containerName(tenantId, role),
    tenantId,
    role,
    workload: harness.workload(),
    resources: { memoryMb: 192, cores: 1, diskGb: 2 },
    port: 3000,
    env: { APP_NAME: `app-${role}`, APP_SECRET: secret },
  };
}

async function hostArgvContains(value: string): Promise<boolean> {
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const argv = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (argv.includes(value)) return true;
  }
  return false;
}

export function computeContract(label: string, harness: ContractHarness): void {
  describe(`${label}: compute contract`, () => {
    let driver: ComputeDriver;
    const made: string[] = [];
    const spec = (role: string, secret?: string) => {
      const s = specFor(harness, role, secret);
      made.push(s.name);
      return s;
    };

    beforeAll(async () => {
      if (harness.skip?.()) return;
      driver = await harness.open();
    });
    afterAll(async () => {
      if (!driver) return;
      for (const name of made) await driver.destroy(name);
      await driver.close();
    });

    it('ensure creates a stopped container once, and repeating it changes nothing', async ({ skip }) => {
      if (harness.skip?.()) return skip();
      const s = spec('ensure');
      const first = await driver.ensure(s);
      expect(first.state).toBe('stopped');
      const again = await driver.ensure(s);
      expect(again).toEqual(first);
      expect((await driver.list()).filter((c) => c.name === s.name)).toHaveLength(1);
    });

    it('ensure completes after a crash mid-way and after a control-plane restart', async ({ skip }) => {
      if (harness.skip?.()) return skip();
      const s = spec('crash');
      if (harness.crashMidEnsure) await harness.crashMidEnsure(s);
      const first = await driver.ensure(s);
      await driver.start(s.name);
      // The old instance is abandoned as a crash would leave it; a new one must find everything.
      const reopened = await harness.open();
      try {
        const again = await reopened.ensure(s);
        expect(again.name).toBe(first.name);
        expect(again.endpoint).toEqual(first.endpoint);
        expect(again.ip).toEqual(first.ip);
        expect(again.state).toBe('running');
      } finally {
        await reopened.close();
      }
    });

    it('start, stop, restart and destroy are idempotent and status follows them', async ({ skip }) => {
      if (harness.skip?.()) return skip();
      const s = spec('life');
      await driver.ensure(s);
      const started = await driver.start(s.name);
      expect(started.state).toBe('running');
      expect((await driver.start(s.name)).handle).toBe(started.handle);
      if (harness.http) {
        // Apps shipped with the platform resolve their packages inside the container too.
        expect(await harness.http(started)).toMatchObject({ name: 'app-life', packages: true });
      }
      await driver.stop(s.name);
      expect((await driver.status(s.name)).state).toBe('stopped');
      await driver.stop(s.name);
      const restarted = await driver.restart(s.name);
      expect(restarted.state).toBe('running');
      if (harness.http) expect((await harness.http(restarted)).name).toBe('app-life');
      expect((await driver.restart(s.name)).state).toBe('running');
      await driver.destroy(s.name);
      expect((await driver.status(s.name)).state).toBe('missing');
      await driver.destroy(s.name);
      await driver.stop(s.name);
      expect((await driver.list()).some((c) => c.name === s.name)).toBe(false);
      await expect(driver.start(s.name)).rejects.toMatchObject({ code: 'not_found' });
    });

    it('reports stats of a running container and applies its resource limits', async ({ skip }) => {
      if (harness.skip?.()) return skip();
      const s = spec('stats');
      await driver.ensure(s);
      const info = await driver.start(s.name);
      if (harness.http) await harness.http(info);
      const stats = await driver.stats(s.name);
      expect(stats.memoryBytes).toBeGreaterThan(0);
      expect(stats.cpuSeconds).toBeGreaterThanOrEqual(0);
      expect(stats.diskBytes).toBeGreaterThanOrEqual(0);
      expect(stats.netRxBytes).toBeGreaterThanOrEqual(0);
      const limits = (await driver.status(s.name)).limits ?? {};
      for (const key of harness.enforces) {
        // A disk only grows (no driver shrinks a filesystem): the spec is a minimum.
        if (key === 'diskGb') expect(limits.diskGb, key).toBeGreaterThanOrEqual(s.resources.diskGb);
        else expect(limits[key], key).toBe(s.resources[key]);
      }
      // New limits reach an existing container through ensure (applied at the next start).
      await driver.ensure({ ...s, resources: { ...s.resources, memoryMb: 256 } });
      const after = await driver.restart(s.name);
      if (harness.enforces.includes('memoryMb')) expect(after.limits?.memoryMb).toBe(256);
    });

    it('reports the configuration a workload runs with; a changed spec shows once a restart applied it', async ({
      skip,
    }) => {
      if (harness.skip?.()) return skip();
      const s = spec('digest');
      // Stopped: what the next start runs with.
      expect((await driver.ensure(s)).configDigest).toBe(configDigest(s));
      const started = await driver.start(s.name);
      expect(started.configDigest).toBe(configDigest(s));
      if (harness.http) expect((await harness.http(started)).name).toBe('app-digest');
      const changed = { ...s, env: { ...s.env, APP_NAME: 'app-digest-2' } };
      expect(configDigest(changed)).not.toBe(configDigest(s));
      expect(configDigest({ ...s, env: { APP_SECRET: s.env.APP_SECRET!, APP_NAME: 'app-digest' } })).toBe(
        configDigest(s),
      );
      // Running: the workload keeps what it started with, also as a new driver instance sees it.
      await driver.ensure(changed);
      const running = await driver.status(s.name);
      expect(running.configDigest).toBe(configDigest(s));
      if (harness.http) expect((await harness.http(running)).name).toBe('app-digest');
      const reopened = await harness.open();
      try {
        expect((await reopened.status(s.name)).configDigest).toBe(configDigest(s));
      } finally {
        await reopened.close();
      }
      const restarted = await driver.restart(s.name);
      expect(restarted.configDigest).toBe(configDigest(changed));
      if (harness.http) expect((await harness.http(restarted)).name).toBe('app-digest-2');
      await driver.stop(s.name);
      expect((await driver.status(s.name)).configDigest).toBe(configDigest(changed));
    });

    it('exec runs argv in the container, with secrets on stdin, never in argv', async ({ skip }) => {
      if (harness.skip?.()) return skip();
      const secret = `s3cret-${randomBytes(8).toString('hex')}`;
      const s = spec('exec', secret);
      await driver.ensure(s);
      await driver.start(s.name);
      if (!harness.exec) {
        await expect(driver.exec(s.name, ['true'])).rejects.toMatchObject({ code: 'unavailable' });
        return;
      }
      const echoed = await driver.exec(s.name, ['cat'], { stdin: secret });
      expect(echoed).toMatchObject({ exitCode: 0, stdout: secret });
      expect((await driver.exec(s.name, ['sh', '-c', 'exit 3'])).exitCode).toBe(3);
      const env = await driver.exec(s.name, ['sh', '-c', 'printf %s "$APP_NAME"']);
      expect(env.stdout).toBe('app-exec');
      if (harness.hostProcesses) expect(await hostArgvContains(secret)).toBe(false);
    });

    it('exports a container and imports it back with its data', async ({ skip }) => {
      if (harness.skip?.()) return skip();
      const s = spec('backup');
      await driver.ensure(s);
      await driver.start(s.name);
      const marker = randomBytes(6).toString('hex');
      if (harness.dataPath) {
        const w = await driver.exec(s.name, ['sh', '-c', `printf %s ${marker} > ${harness.dataPath}`]);
        expect(w.exitCode).toBe(0);
      }
      const dir = await mkdtemp(path.join(os.tmpdir(), 'aiqso-export-'));
      try {
        const file = path.join(dir, `${s.name}.tar.gz`);
        expect((await driver.exportTo(s.name, file)).bytes).toBeGreaterThan(0);
        await driver.destroy(s.name);
        const restored = await driver.importFrom(s, file);
        expect(restored.name).toBe(s.name);
        const running = await driver.start(s.name);
        expect(running.state).toBe('running');
        if (harness.dataPath) {
          expect((await driver.exec(s.name, ['cat', harness.dataPath])).stdout).toBe(marker);
        }
        await expect(driver.importFrom(s, path.join(dir, 'nope.tar.gz'))).rejects.toMatchObject({
          code: 'bad_request',
        });
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });

    it('lists what it manages and nothing for missing names', async ({ skip }) => {
      if (harness.skip?.()) return skip();
      const s = spec('listed');
      await driver.ensure(s);
      const names = (await driver.list()).map((c) => c.name);
      expect(names).toContain(s.name);
      const ghost = specFor(harness, 'ghost');
      expect(await driver.status(ghost.name)).toMatchObject({ name: ghost.name, state: 'missing' });
      await expect(driver.stats(ghost.name)).rejects.toMatchObject({ code: 'not_found' });
    });
  });
}
