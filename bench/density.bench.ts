// Density: how many tenants one host holds, and what each costs. Signs up N tenants
// (`node --import tsx bench/density.bench.ts N`, or BENCH_TENANTS=N with `npm run bench density`;
// default 20) on a real `aiqso up` (local billing mode), pays them all at once, and waits until every
// workspace answers 200 through the edge. Then reads each dashboard's measured memory from the driver
// (BENCH_DRIVER=lxc: the cgroup's; process: the process's RSS) and what placement counts for it, and
// prints the measured memory as a share of the request and of the limit, and how many such
// dashboards this host's allocatable memory holds by request against by limit (the former counting).
// Also: the platform's RSS with them all, and one resync pass over them (every resource's reconcile
// queued at once, as the resync does, until the last has run) against the resync interval; the
// edge's latency across all the dashboards at a paced load (wrk, BENCH_RATE requests/s for
// BENCH_SECONDS, rotating Host over every tenant) against the same load sent to one dashboard
// directly; and, as the baseline for memory and start time, BENCH_BASELINE (20) of the same dashboard
// started one after another directly through the driver (lxc: `lxc-copy` + `lxc-start`), without the
// platform, while the platform's are running.
// Needs root and lxc for BENCH_DRIVER=lxc. PostgreSQL: TEST_DATABASE_URL's server, else an embedded one.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { sql } from 'kysely';
import os from 'node:os';
import path from 'node:path';
import { localId } from '../src/billing/stripe-objects.ts';
import { containerName } from '../src/core/compute.ts';
import { allocatableMemoryMb, memoryRequest } from '../src/core/services.ts';
import { createLogger } from '../src/observability/logger.ts';
import { requestReconcileAll, TASKS } from '../src/orchestrator/queue.ts';
import { DASHBOARD_CLAIM } from '../src/services/hosts.ts';
import { driverCases, pollUntil, startLivePlatform } from '../test/support/live-platform.ts';
import { AIQSO_BIN, cliEnv } from '../test/support/cli.ts';
import { checkoutCompleted } from '../test/support/stripe.ts';
import { startDirectDashboards } from './dashboards.ts';
import { benchDatabase } from './database.ts';
import { wrkPaced, type WrkResult } from './load.ts';

const N = Number(process.argv[2] ?? process.env.BENCH_TENANTS ?? 20);
if (!Number.isInteger(N) || N < 1) {
  console.error(`expected a tenant count of at least 1, got ${process.argv[2] ?? process.env.BENCH_TENANTS}`);
  process.exit(2);
}
const DRIVER = process.env.BENCH_DRIVER ?? 'process';
const RATE = Number(process.env.BENCH_RATE ?? 200);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 20);
const BASELINE = Math.min(N, Number(process.env.BENCH_BASELINE ?? 20));
const TIMEOUT_MS = Number(process.env.BENCH_TIMEOUT_SECONDS ?? 600) * 1000;
const log = createLogger('silent');
// More than a /24's 253 containers: the lxc case gets a /20, as the platform's default network is.
const driver = driverCases({ wide: N > 200 }).find((d) => d.name === DRIVER);
if (!driver) {
  console.error(`BENCH_DRIVER: expected process or lxc, got ${DRIVER}`);
  process.exit(2);
}
if (driver.skip()) {
  console.log(`density: the ${DRIVER} driver cannot run here; skipped`);
  process.exit(0);
}

const tmp = await mkdtemp(path.join(os.tmpdir(), 'aiqso-bench-density-'));
const db = await benchDatabase(tmp, log);
// One load generator stands for many clients: the edge's per-address budget would refuse most of it.
// BENCH_OVERCOMMIT: the host's AIQSO_HOST_OVERCOMMIT (default 1: no more requests than it has memory for).
const OVERCOMMIT = process.env.BENCH_OVERCOMMIT ?? '1';
/** `BENCH_CPU_PROF=<dir>`: `aiqso up` writes a V8 CPU profile there when it stops. */
const CPU_PROF = process.env.BENCH_CPU_PROF;
const platform = await startLivePlatform({
  databaseUrl: db.url,
  driver,
  env: {
    AIQSO_EDGE_RATE_IP: '0',
    AIQSO_HOST_OVERCOMMIT: OVERCOMMIT,
    // BENCH_WORKER_CONCURRENCY: the platform's AIQSO_WORKER_CONCURRENCY (its default otherwise).
    ...(process.env.BENCH_WORKER_CONCURRENCY
      ? { AIQSO_WORKER_CONCURRENCY: process.env.BENCH_WORKER_CONCURRENCY }
      : {}),
  },
  nodeArgs: CPU_PROF ? ['--cpu-prof', '--cpu-prof-dir', path.resolve(CPU_PROF)] : [],
});
const mb = (bytes: number) => bytes / 2 ** 20;
try {
  const slugs = Array.from({ length: N }, (_, i) => `dense${i}`);
  const ids: string[] = [];
  for (const slug of slugs) {
    const res = await platform.signup({ company: `Density ${slug}`, slug, email: `owner@${slug}.test` });
    if (res.status !== 201) throw new Error(`signup ${slug} answered ${res.status}`);
    const t = await db.db
      .selectFrom('tenants')
      .select('id')
      .where('slug', '=', slug)
      .executeTakeFirstOrThrow();
    ids.push(t.id);
  }
  const t0 = performance.now();
  await Promise.all(
    ids.map((id) => platform.sendEvent(checkoutCompleted(id, localId('sub'), localId('cus')))),
  );
  const active = await pollUntil(
    async () =>
      (await db.db.selectFrom('tenants').select('id').where('status', '=', 'active').execute()).length,
    (n) => n === N,
    TIMEOUT_MS,
    200,
  );
  const allLive = performance.now() - t0;
  if (active !== N) throw new Error(`${active} of ${N} tenants became active within ${TIMEOUT_MS / 1000} s`);
  for (const slug of slugs) {
    const page = await platform.page(slug);
    if (page.status !== 200) throw new Error(`${slug}.localhost answered ${page.status}`);
  }
  // Idle: a few seconds after the last one went live.
  await new Promise((r) => setTimeout(r, 5000));
  const compute = await driver.open(platform.dataDir, db.db);
  const used: number[] = [];
  for (const id of ids) used.push(mb((await compute.stats(containerName(id, 'dashboard'))).memoryBytes));
  // The edge at a paced load across every dashboard, then the same load at one dashboard directly.
  const loadCore = os.cpus().length - 1;
  const edgeLoad = await wrkPaced(`http://127.0.0.1:${platform.port}/`, {
    core: loadCore,
    seconds: SECONDS,
    rate: RATE,
    hostPrefix: 'dense',
    hostSuffix: `.localhost:${platform.port}`,
    tenants: N,
    prefixes: [],
    paths: ['/'],
  });
  const first = (await compute.status(containerName(ids[0]!, 'dashboard'))).endpoint!;
  const directLoad = await wrkPaced(`http://${first.host}:${first.port}/`, {
    core: loadCore,
    seconds: SECONDS,
    rate: RATE,
    tenants: 1,
    prefixes: [],
  });
  // The baseline: the same dashboard started directly through the driver, one after another.
  const direct = await startDirectDashboards(compute, BASELINE, 'direct');
  await new Promise((r) => setTimeout(r, 5000));
  const directUsed = (await direct.memory()).map(mb);
  await direct.destroy();
  await compute.close();
  const host = await db.db.selectFrom('hosts').select(['name', 'memory_mb']).executeTakeFirstOrThrow();
  const policy = {
    reserveMb: Number(platform.env.AIQSO_HOST_RESERVE_MB ?? 2048),
    overcommit: Number(OVERCOMMIT),
  };
  const allocatable = allocatableMemoryMb(host, policy);
  const request = memoryRequest(DASHBOARD_CLAIM);
  const sorted = [...used].sort((a, b) => a - b);
  const mean = used.reduce((a, b) => a + b, 0) / used.length;
  const p = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
  const status = await readFile(`/proc/${platform.pid()}/status`, 'utf8');
  const platformRss = Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? 0) / 1024;
  // One resync pass: every live resource's reconcile queued in one statement, as the resync does,
  // timed until no reconcile job is left (each finds its resource converged and writes nothing).
  const pending = async () =>
    (
      await sql<{ n: number }>`SELECT count(*)::int AS n FROM graphile_worker.jobs
        WHERE task_identifier = ${TASKS.reconcile} AND run_at <= now() AND attempts < max_attempts`.execute(
        db.db,
      )
    ).rows[0]!.n;
  // The platform's own resync may be under way: once it is done, every resource gets the bench's job.
  await pollUntil(pending, (n) => n === 0, TIMEOUT_MS, 100);
  const r0 = performance.now();
  const queued = await requestReconcileAll(db.db, 'bench');
  await pollUntil(pending, (n) => n === 0, TIMEOUT_MS, 100);
  const resyncMs = performance.now() - r0;
  const resyncSeconds = Number(platform.env.AIQSO_RESYNC_SECONDS ?? 60);
  // One hourly usage collection over every container (`aiqso usage collect`, as the schedule runs it),
  // with its CPU time and its tools' (GNU time counts the children it waited for) where time is installed.
  const usage = await usagePass(platform.env);
  console.log(`density (${DRIVER} driver, ${N} tenants, host ${host.name}: ${host.memory_mb} MB)`);
  const avg = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const directStart = avg(direct.readyMs);
  const directMean = avg(directUsed);
  console.log(`  all ${N} live after payment:       ${(allLive / 1000).toFixed(1)} s`);
  console.log(
    `  per tenant:                        ${(allLive / N).toFixed(0)} ms (all at once) vs ${directStart.toFixed(0)} ms for one dashboard started directly, one after another (${BASELINE}): ${(allLive / N / directStart).toFixed(2)}x`,
  );
  console.log(
    `  dashboard memory, measured:       mean ${mean.toFixed(1)} MB, p50 ${p(0.5).toFixed(1)} MB, p95 ${p(0.95).toFixed(1)} MB, max ${p(1).toFixed(1)} MB (goal: mean <= 12 MB)`,
  );
  console.log(
    `  the same dashboard, started directly: mean ${directMean.toFixed(1)} MB over ${BASELINE}; platform's / direct ${(mean / directMean).toFixed(2)}x`,
  );
  const line = (w: WrkResult) =>
    `${w.rps.toFixed(0)} requests/s, p50 ${w.p50ms.toFixed(1)} ms, p99 ${w.p99ms.toFixed(1)} ms, ${w.errors} errors`;
  console.log(`  edge, across all ${N} dashboards:   ${line(edgeLoad)}`);
  console.log(`  one dashboard directly:            ${line(directLoad)}`);
  console.log(
    `  edge p99 - direct p99:             ${(edgeLoad.p99ms - directLoad.p99ms).toFixed(1)} ms at ${RATE} requests/s for ${SECONDS} s`,
  );
  console.log(`  platform (aiqso up) RSS:           ${platformRss.toFixed(0)} MB`);
  console.log(
    `  one resync pass:                   ${(resyncMs / 1000).toFixed(1)} s for ${queued} resources, ${((100 * resyncMs) / 1000 / resyncSeconds).toFixed(1)}% of AIQSO_RESYNC_SECONDS (${resyncSeconds} s; goal <= 10%)`,
  );
  console.log(
    `  one usage collection pass:         ${(usage.wallMs / 1000).toFixed(1)} s` +
      (usage.cpuMs !== undefined
        ? `, ${(usage.cpuMs / 1000).toFixed(1)} s CPU with its tools = ${((100 * usage.cpuMs) / 3_600_000).toFixed(2)}% of one core over the hour it runs in`
        : ' (install GNU time for its CPU)'),
  );
  console.log(`  request / limit:                  ${request} MB / ${DASHBOARD_CLAIM.memory_mb} MB`);
  console.log(`  measured max / request:           ${(p(1) / request).toFixed(2)}`);
  console.log(`  measured mean / limit:            ${(mean / DASHBOARD_CLAIM.memory_mb).toFixed(2)}`);
  console.log(
    `  dashboards this host holds:       ${Math.floor(allocatable / request)} by request, ${Math.floor(allocatable / DASHBOARD_CLAIM.memory_mb)} by limit (${allocatable} MB allocatable)`,
  );
} finally {
  await platform.stop(db.db);
  await driver.cleanUp();
  await db.close();
  await rm(tmp, { recursive: true, force: true });
}

/** `aiqso usage collect` against the running platform: wall time, and CPU (own + reaped children) under GNU time. */
async function usagePass(env: Record<string, string>): Promise<{ wallMs: number; cpuMs?: number }> {
  const timed = existsSync('/usr/bin/time');
  const argv = [process.execPath, AIQSO_BIN, 'usage', 'collect', '--json'];
  const [cmd, ...args] = timed ? ['/usr/bin/time', '-f', 'cpu %U %S', ...argv] : argv;
  const t0 = performance.now();
  const stderr = await new Promise<string>((resolve, reject) =>
    execFile(cmd!, args, { env: cliEnv(env), maxBuffer: 64 * 2 ** 20 }, (err, _out, errOut) =>
      err ? reject(new Error(`aiqso usage collect failed: ${errOut}`)) : resolve(errOut),
    ),
  );
  const wallMs = performance.now() - t0;
  const m = /^cpu ([\d.]+) ([\d.]+)$/m.exec(stderr);
  return m ? { wallMs, cpuMs: (Number(m[1]) + Number(m[2])) * 1000 } : { wallMs };
}
