// Compute drivers: create→running latency (p50/p95) and idle memory per
// container, for the process and lxc drivers, against a baseline measured in
// the same run: the same small Node HTTP app spawned directly (no driver); and
// the idle memory of the tenant dashboard, deployed as the tenant reconciler
// deploys it, against the dashboard spawned directly.
// Needs root and lxc for the lxc half (skipped with a note otherwise).
// PostgreSQL: TEST_DATABASE_URL's server, else an embedded one in a temp dir.
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { removeBridge } from '../src/compute/lxc/bridge.ts';
import { LxcDriver } from '../src/compute/lxc/driver.ts';
import { ProcessDriver } from '../src/compute/process/driver.ts';
import { rssBytes } from '../src/compute/process/proc.ts';
import { freeLoopbackPort } from '../src/compute/process/ports.ts';
import type { ComputeDriver } from '../src/core/compute.ts';
import { createLogger } from '../src/observability/logger.ts';
import { APP_DIR, appWorkload, fetchApp } from '../test/support/compute-app.ts';
import { specFor, type ContractHarness } from '../test/support/compute-contract.ts';
import { lxcAvailable, privateNetwork } from '../test/support/lxc.ts';
import { dashboardEnv, DASHBOARD_DIR, healthz, startDirectDashboards } from './dashboards.ts';
import { benchDatabase } from './database.ts';

const N = Number(process.env.BENCH_N ?? 20);
const log = createLogger('silent');
const tmp = await mkdtemp(path.join(os.tmpdir(), 'aiqso-bench-compute-'));
const pct = (xs: number[], p: number) =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!;
const ms = (x: number) => `${x.toFixed(0)} ms`;
const mb = (x: number) => `${(x / 2 ** 20).toFixed(1)} MB`;
const idle = () => new Promise((r) => setTimeout(r, 1500));

interface Result {
  name: string;
  create: number[];
  ready: number[];
  memory: number[];
}

async function baseline(): Promise<Result> {
  const r: Result = { name: 'baseline (node spawned directly)', create: [], ready: [], memory: [] };
  const children = [];
  for (let i = 0; i < N; i++) {
    const port = await freeLoopbackPort(new Set());
    const t0 = performance.now();
    const child = spawn(process.execPath, [path.join(APP_DIR, 'server.mjs')], {
      env: { PORT: String(port), HOST: '127.0.0.1' },
      stdio: 'ignore',
    });
    children.push(child);
    r.create.push(performance.now() - t0);
    await fetchApp({ name: 'b', state: 'running', endpoint: { host: '127.0.0.1', port } });
    r.ready.push(performance.now() - t0);
  }
  await idle();
  for (const c of children) r.memory.push(await rssBytes(c.pid!));
  for (const c of children) c.kill('SIGKILL');
  return r;
}

async function measure(name: string, driver: ComputeDriver): Promise<Result> {
  const r: Result = { name, create: [], ready: [], memory: [] };
  dashboardMemory.push({ name, memory: await dashboards(driver) });
  const harness = { workload: appWorkload } as ContractHarness;
  const specs = Array.from({ length: N }, (_, i) => specFor(harness, `bench${i}`));
  try {
    for (const s of specs) {
      const t0 = performance.now();
      await driver.ensure(s);
      const info = await driver.start(s.name);
      r.create.push(performance.now() - t0);
      await fetchApp(info);
      r.ready.push(performance.now() - t0);
    }
    await idle();
    for (const s of specs) r.memory.push((await driver.stats(s.name)).memoryBytes);
  } finally {
    await Promise.all(specs.map((s) => driver.destroy(s.name)));
    await driver.close();
  }
  return r;
}

// The tenant dashboard (dashboard/server.mjs), as the tenant reconciler deploys it: its idle memory
// is the figure the per-container goal is about.
const DASHBOARDS = Number(process.env.BENCH_DASHBOARDS ?? 5);

async function dashboardBaseline(): Promise<number[]> {
  const children = [];
  for (let i = 0; i < DASHBOARDS; i++) {
    const port = await freeLoopbackPort(new Set());
    const child = spawn(process.execPath, [path.join(DASHBOARD_DIR, 'server.mjs')], {
      env: { ...dashboardEnv(port), HOST: '127.0.0.1' },
      stdio: 'ignore',
    });
    children.push(child);
    await healthz('127.0.0.1', port);
  }
  await idle();
  const memory = [];
  for (const c of children) memory.push(await rssBytes(c.pid!));
  for (const c of children) c.kill('SIGKILL');
  return memory;
}

async function dashboards(driver: ComputeDriver): Promise<number[]> {
  const started = await startDirectDashboards(driver, DASHBOARDS);
  try {
    await idle();
    return await started.memory();
  } finally {
    await started.destroy();
  }
}

const dashboardMemory: { name: string; memory: number[] }[] = [
  { name: 'baseline (node spawned directly)', memory: await dashboardBaseline() },
];
const results: Result[] = [await baseline()];
results.push(
  await measure('process driver', await ProcessDriver.open({ root: path.join(tmp, 'containers'), log })),
);
if (lxcAvailable()) {
  const db = await benchDatabase(tmp, log);
  const net = privateNetwork('b');
  const lxcPath = path.join(tmp, 'lxc');
  try {
    // The first ensure builds the cached base template; time it apart from the clones.
    const t0 = performance.now();
    const warm = new LxcDriver({ db: db.db, log, lxcPath, ...net });
    const s = specFor({ workload: appWorkload } as ContractHarness, 'warm');
    await warm.ensure(s);
    await warm.destroy(s.name);
    console.log(`lxc base template build (first use): ${ms(performance.now() - t0)}`);
    results.push(await measure('lxc driver', new LxcDriver({ db: db.db, log, lxcPath, ...net })));
  } finally {
    await removeBridge(net.bridge);
    await db.close();
  }
} else console.log('lxc: skipped (needs root and the lxc tools)');
await rm(tmp, { recursive: true, force: true });

const base = results[0]!;
console.log(`\n${N} containers each, created one after another, running a small Node HTTP app`);
console.log(
  'driver                            | create→running p50 / p95 | →answers HTTP p50 / p95 | idle memory avg | vs baseline (ready p50, memory)',
);
for (const r of results) {
  const avgMem = r.memory.reduce((a, b) => a + b, 0) / r.memory.length;
  const baseMem = base.memory.reduce((a, b) => a + b, 0) / base.memory.length;
  console.log(
    [
      r.name.padEnd(33),
      `${ms(pct(r.create, 50))} / ${ms(pct(r.create, 95))}`.padEnd(24),
      `${ms(pct(r.ready, 50))} / ${ms(pct(r.ready, 95))}`.padEnd(23),
      mb(avgMem).padEnd(15),
      `${(pct(r.ready, 50) / pct(base.ready, 50)).toFixed(2)}x, ${(avgMem / baseMem).toFixed(2)}x`,
    ].join(' | '),
  );
}
console.log(
  'memory: baseline and process = RSS (counts the shared node binary pages); lxc = memory charged to the container cgroup\n' +
    '(its own pages; the host /usr it shares read-only, node included, stays charged to the host page cache)',
);
const avg = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
console.log(
  `\ntenant dashboard (dashboard/server.mjs), ${DASHBOARDS} each, idle memory after /healthz answered`,
);
for (const d of dashboardMemory) {
  console.log(
    `${d.name.padEnd(33)} | avg ${mb(avg(d.memory)).padEnd(9)} | max ${mb(Math.max(...d.memory)).padEnd(9)} | vs baseline ${(avg(d.memory) / avg(dashboardMemory[0]!.memory)).toFixed(2)}x`,
  );
}
const lxc = results.find((r) => r.name === 'lxc driver');
if (lxc) {
  const p50 = pct(lxc.create, 50);
  const mem = avg(dashboardMemory.find((d) => d.name === 'lxc driver')!.memory);
  console.log(
    `\nlxc goals: clone+start p50 ${ms(p50)} (goal ≤ 1000 ms: ${p50 <= 1000 ? 'met' : 'missed'}), tenant dashboard idle memory ${mb(mem)} (goal ≤ 64 MB: ${mem <= 64 * 2 ** 20 ? 'met' : 'missed'})`,
  );
}
