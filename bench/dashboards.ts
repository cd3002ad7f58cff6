// The tenant dashboard (dashboard/server.mjs) started directly through a compute driver, as the
// tenant reconciler deploys it but without the platform: the baseline the compute and density
// benches hold the platform's dashboards against.
import path from 'node:path';
import { sleep } from '../src/compute/shared/run.ts';
import type { ComputeDriver, ContainerSpec } from '../src/core/compute.ts';
import { specFor, type ContractHarness } from '../test/support/compute-contract.ts';

export const DASHBOARD_DIR = path.resolve(import.meta.dirname, '../dashboard');

/** What a dashboard needs to start and answer its sign-in page; its API is never asked while idle. */
export const dashboardEnv = (port: number): Record<string, string> => ({
  PORT: String(port),
  AIQSO_API_URL: 'http://127.0.0.1:9',
  AIQSO_TENANT_ID: 'ten_bench',
  AIQSO_TENANT_SLUG: 'bench',
  AIQSO_COMPANY: 'Bench Ltd',
  AIQSO_API_KEY: 'unused',
});

/** Wait until the dashboard at host:port answers /healthz (20 s at most). */
export async function healthz(host: string, port: number): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      const res = await fetch(`http://${host}:${port}/healthz`, { signal: AbortSignal.timeout(2000) });
      if (res.ok) return;
    } catch (err) {
      if (Date.now() > deadline)
        throw new Error(`dashboard on ${host}:${port} did not answer: ${String(err)}`);
    }
    await sleep(50);
  }
}

export interface DirectDashboards {
  specs: ContainerSpec[];
  /** Per dashboard, from `ensure` to its first /healthz answer (ms), started one after another. */
  readyMs: number[];
  /** Per dashboard, what the driver reports it uses once idle (bytes). */
  memory: () => Promise<number[]>;
  destroy: () => Promise<void>;
}

/** Start `count` dashboards one after another through `driver`, each with the dashboard's claim. */
export async function startDirectDashboards(
  driver: ComputeDriver,
  count: number,
  role = 'dash',
): Promise<DirectDashboards> {
  const harness = {
    workload: () => ({ kind: 'app', dir: DASHBOARD_DIR, entry: 'server.mjs' }),
  } as ContractHarness;
  const specs = Array.from({ length: count }, (_, i) => {
    const spec = specFor(harness, `${role}${i}`);
    return { ...spec, resources: { memoryMb: 128, cores: 1, diskGb: 1 }, env: dashboardEnv(spec.port) };
  });
  const destroy = () => Promise.all(specs.map((s) => driver.destroy(s.name))).then(() => undefined);
  const readyMs: number[] = [];
  try {
    for (const s of specs) {
      const t0 = performance.now();
      await driver.ensure(s);
      const info = await driver.start(s.name);
      await healthz(info.endpoint!.host, info.endpoint!.port);
      readyMs.push(performance.now() - t0);
    }
  } catch (err) {
    await destroy();
    throw err;
  }
  const memory = async () => {
    const out: number[] = [];
    for (const s of specs) out.push((await driver.stats(s.name)).memoryBytes);
    return out;
  };
  return { specs, readyMs, memory, destroy };
}
