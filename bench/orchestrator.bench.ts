// Orchestrator throughput and latency against bare graphile-worker in the same run.
// `npm run bench orchestrator`. Uses TEST_DATABASE_URL's server when set, else an embedded one.
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Logger as GraphileLogger, run, type Task } from 'graphile-worker';
import { sql } from 'kysely';
import type { Reconciler } from '../src/core/reconcile.ts';
import { createLogger } from '../src/observability/logger.ts';
import { requestReconcile, requestReconcileAll } from '../src/orchestrator/queue.ts';
import { ReconcilerRegistry } from '../src/orchestrator/registry.ts';
import { startWorker } from '../src/orchestrator/worker.ts';
import { benchDatabase } from './database.ts';

const N = 2000;
const LATENCY_SAMPLES = 200;
const CONCURRENCY = 8;
const log = createLogger('warn', process.stderr);
const tmp = await mkdtemp(path.join(os.tmpdir(), 'aiqso-bench-'));
const handle = await benchDatabase(tmp, log, { max: 4 });
const url = handle.url;

const percentile = (xs: number[], p: number) =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!;

/** Sequential enqueue→start latencies: one job at a time, `enqueue(i)` starts it, `started` resolves when it runs. */
async function latencies(enqueue: () => Promise<void>, started: () => Promise<void>): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < LATENCY_SAMPLES; i++) {
    const waiting = started();
    const t0 = performance.now();
    await enqueue();
    await waiting;
    out.push(performance.now() - t0);
  }
  return out;
}

function signal() {
  let resolve!: () => void;
  const next = () => new Promise<void>((r) => (resolve = r));
  return { next, fire: () => resolve?.() };
}

// Baseline: a bare graphile-worker no-op job.
let done = 0;
let allDone = () => {};
const started = signal();
const noop: Task = () => {
  started.fire();
  if (++done === N) allDone();
};
const runner = await run({
  pgPool: handle.pool,
  concurrency: CONCURRENCY,
  noHandleSignals: true,
  logger: new GraphileLogger(() => () => undefined),
  taskList: { noop },
  parsedCronItems: [],
});
const t = performance.now();
await new Promise<void>((resolve) => {
  allDone = resolve;
  void sql`SELECT graphile_worker.add_jobs(array_agg(ROW('noop', '{}'::json, NULL, NULL, NULL, NULL, NULL, NULL)::graphile_worker.job_spec))
           FROM generate_series(1, ${N})`.execute(handle.db);
});
const baseRate = N / ((performance.now() - t) / 1000);
done = -Infinity;
const baseLat = await latencies(
  async () => void (await sql`SELECT graphile_worker.add_job('noop', '{}'::json)`.execute(handle.db)),
  started.next,
);
await runner.stop();

// The orchestrator: reconcile jobs of a reconciler with two steps whose effects are in place.
let reconciled = 0;
let allReconciled = () => {};
const reconcileStarted = signal();
const bench: Reconciler<Record<string, never>> = {
  kind: 'bench',
  parseSpec: () => ({}),
  steps: [
    {
      name: 'first',
      observe: () => {
        reconcileStarted.fire();
        return Promise.resolve('ok');
      },
      apply: () => Promise.resolve(),
    },
    {
      name: 'second',
      observe: () => {
        if (++reconciled === N) allReconciled();
        return Promise.resolve('ok');
      },
      apply: () => Promise.resolve(),
    },
  ],
};
await sql`INSERT INTO resources (kind, id, spec) SELECT 'bench', 'b' || g, '{}' FROM generate_series(1, ${N}) g`.execute(
  handle.db,
);
const worker = await startWorker({
  url,
  log,
  registry: new ReconcilerRegistry().register(bench),
  outboxHandlers: {},
  concurrency: CONCURRENCY,
  resyncSeconds: 3600,
  orphanGraceMs: 3_600_000,
});
const pass = async () => {
  reconciled = 0;
  const t1 = performance.now();
  await new Promise<void>((resolve) => {
    allReconciled = resolve;
    void requestReconcileAll(handle.db, 'bench');
  });
  return N / ((performance.now() - t1) / 1000);
};
const firstRate = await pass(); // pending → ready: each writes its status
const resyncRate = await pass(); // converged: no action, no write
reconciled = -Infinity;
const recLat = await latencies(
  () => requestReconcile(handle.db, { kind: 'bench', id: 'b1' }),
  reconcileStarted.next,
);
await worker.stop();

const row = (label: string, rate: number, lat: number[]) =>
  `${label.padEnd(44)} ${rate.toFixed(0).padStart(7)} jobs/s   p50 ${percentile(lat, 50).toFixed(1).padStart(6)} ms   p95 ${percentile(lat, 95).toFixed(1).padStart(6)} ms`;
console.log(
  `orchestrator: ${N} jobs, concurrency ${CONCURRENCY}, ${LATENCY_SAMPLES} sequential latency samples`,
);
console.log(row('baseline: bare graphile-worker no-op job', baseRate, baseLat));
console.log(row('reconcile, first pass (status written)', firstRate, recLat));
console.log(row('reconcile, resync pass (converged, no write)', resyncRate, recLat));
console.log(
  `ratios to baseline: throughput first ${(firstRate / baseRate).toFixed(2)}, resync ${(resyncRate / baseRate).toFixed(2)}; ` +
    `latency p50 ${(percentile(recLat, 50) / percentile(baseLat, 50)).toFixed(2)}x, p95 ${(percentile(recLat, 95) / percentile(baseLat, 95)).toFixed(2)}x`,
);
console.log('goal on this machine: ≥ 500 reconcile jobs/s, enqueue→start p50 ≤ 10 ms');

await handle.close();
await rm(tmp, { recursive: true, force: true });
