import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { ProcessDriver } from '../src/compute/process/driver.ts';
import { startTime } from '../src/compute/process/proc.ts';
import { sleep } from '../src/compute/shared/run.ts';
import type { ContainerInfo } from '../src/core/compute.ts';
import { createLogger } from '../src/observability/logger.ts';
import { appWorkload, fetchApp } from './support/compute-app.ts';
import { computeContract, specFor, type ContractHarness } from './support/compute-contract.ts';

const root = await mkdtemp(path.join(os.tmpdir(), 'aiqso-process-'));
const log = createLogger('silent');
const CONTROL_PLANE = fileURLToPath(new URL('./support/process-control-plane.ts', import.meta.url));
const open = () => ProcessDriver.open({ root, log, pollMs: 100 });

const harness: ContractHarness = {
  open,
  workload: appWorkload,
  async crashMidEnsure(spec) {
    // A crash between mkdir and the state file leaves an empty container directory.
    await mkdir(path.join(root, spec.name, 'data'), { recursive: true });
  },
  http: (info) => fetchApp(info),
  dataPath: 'marker.txt',
  hostProcesses: true,
  exec: true,
  enforces: ['memoryMb'],
};

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

computeContract('process', harness);

async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

describe('process driver supervision', () => {
  it('restarts a workload that dies, on the same port', async () => {
    const driver = await open();
    const s = specFor(harness, 'dies');
    try {
      await driver.ensure(s);
      const info = await driver.start(s.name);
      const { pid } = await fetchApp(info);
      process.kill(pid, 'SIGKILL');
      const again = await waitFor('a new pid', async () => {
        const r = await fetchApp(info, 500);
        return r.pid !== pid ? r : undefined;
      });
      expect(again.name).toBe('app-dies');
      expect((await driver.status(s.name)).endpoint).toEqual(info.endpoint);
    } finally {
      await driver.destroy(s.name);
      await driver.close();
    }
  });

  it('re-adopts a running workload after a restart and relaunches a dead one', async () => {
    const first = await open();
    const alive = specFor(harness, 'adopt');
    const dead = specFor(harness, 'relaunch');
    for (const s of [alive, dead]) {
      await first.ensure(s);
      await first.start(s.name);
    }
    const alivePid = (await fetchApp(await first.status(alive.name))).pid;
    const deadPid = (await fetchApp(await first.status(dead.name))).pid;
    await first.close(); // the control plane goes away; its children keep running
    process.kill(deadPid, 'SIGKILL');
    await waitFor('the pid to go', async () =>
      (await first.status(dead.name)).state === 'stopped' ? true : undefined,
    );
    const second = await open();
    try {
      expect((await fetchApp(await second.status(alive.name))).pid).toBe(alivePid);
      const relaunched = await fetchApp(await second.status(dead.name));
      expect(relaunched.pid).not.toBe(deadPid);
    } finally {
      for (const s of [alive, dead]) await second.destroy(s.name);
      await second.close();
    }
  });

  it('keeps workloads running through a SIGKILLed control plane, which the next one re-adopts', async () => {
    const s = specFor(harness, 'sigkill');
    const plane = spawn(process.execPath, ['--import', 'tsx', CONTROL_PLANE, root], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    plane.stdin.end(JSON.stringify(s));
    const [line] = (await once(plane.stdout.setEncoding('utf8'), 'data')) as [string];
    const before = JSON.parse(line) as ContainerInfo;
    plane.kill('SIGKILL');
    await once(plane, 'exit');
    const { pid } = await fetchApp(before);
    expect(String(pid)).toBe(before.handle);
    const next = await open();
    try {
      expect(await next.status(s.name)).toMatchObject({ state: 'running', handle: before.handle });
      process.kill(pid, 'SIGKILL');
      const again = await waitFor('a relaunch', async () => {
        const r = await fetchApp(before, 500);
        return r.pid !== pid ? r : undefined;
      });
      expect(again.name).toBe('app-sigkill');
    } finally {
      await next.destroy(s.name);
      await next.close();
    }
  });

  it('with stopWorkloadsOnClose, stops its workloads on close and the next open launches them again', async () => {
    const first = await ProcessDriver.open({ root, log, pollMs: 100, stopWorkloadsOnClose: true });
    const specs = [specFor(harness, 'closes1'), specFor(harness, 'closes2')];
    const pids: number[] = [];
    for (const s of specs) {
      await first.ensure(s);
      pids.push((await fetchApp(await first.start(s.name))).pid);
    }
    await first.close();
    for (const pid of pids) expect(await startTime(pid)).toBeUndefined();
    const second = await open();
    try {
      for (const [i, s] of specs.entries()) {
        const info = await second.status(s.name);
        expect(info.state).toBe('running');
        const again = await fetchApp(info);
        expect(again).toMatchObject({ name: `app-${s.role}` });
        expect(again.pid).not.toBe(pids[i]);
      }
    } finally {
      for (const s of specs) await second.destroy(s.name);
      await second.close();
    }
  });

  it('reports no configuration for a workload launched before digests were recorded', async () => {
    const driver = await open();
    const s = specFor(harness, 'legacy');
    try {
      await driver.ensure(s);
      await driver.start(s.name);
      // container.json as an earlier version wrote it: no digests.
      const file = path.join(root, s.name, 'container.json');
      const {
        digest: _d,
        appliedDigest: _a,
        ...legacy
      } = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
      await writeFile(file, JSON.stringify(legacy));
      const info = await driver.status(s.name);
      expect(info.state).toBe('running');
      expect(info.configDigest).toBeUndefined();
    } finally {
      await driver.destroy(s.name);
      await driver.close();
    }
  });

  it('writes the workload output to per-container log files', async () => {
    const driver = await open();
    const s = specFor(harness, 'logs');
    try {
      await driver.ensure(s);
      await driver.start(s.name);
      const r = await driver.exec(s.name, ['node', '-e', 'console.log(process.cwd())']);
      expect(r.stdout.trim()).toBe(path.join(root, s.name, 'data'));
      await driver.stop(s.name);
      const stderr = await readFile(path.join(root, s.name, 'logs', 'stderr.log'), 'utf8');
      expect(stderr).toBe('');
      const mode = (await import('node:fs')).statSync(path.join(root, s.name, 'env.json')).mode & 0o777;
      expect(mode).toBe(0o600);
    } finally {
      await driver.destroy(s.name);
      await driver.close();
    }
  });

  it('rejects workloads it cannot run', async () => {
    const driver = await open();
    const s = { ...specFor(harness, 'image'), workload: { kind: 'image' as const, image: 'nginx' } };
    await expect(driver.ensure(s)).rejects.toMatchObject({ code: 'bad_request' });
    await driver.close();
  });
});
