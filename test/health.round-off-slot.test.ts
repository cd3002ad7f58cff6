import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Reconciler } from '../src/core/reconcile.ts';
import {
  HEALTH_TASK,
  healthMonitor,
  scheduleHealthRound,
  type HealthMonitor,
  type RoundEvent,
} from '../src/health/monitor.ts';
import { createLogger } from '../src/observability/logger.ts';
import { ReconcilerRegistry } from '../src/orchestrator/registry.ts';
import { applyResource } from '../src/orchestrator/resources.ts';
import { startWorker, type OrchestratorWorker } from '../src/orchestrator/worker.ts';
import type { ComputeDriver } from '../src/core/compute.ts';
import { createTestDatabase, countRows, type TestDatabase } from './support/db.ts';
import { installTestTables, testWorkerOptions } from './support/orchestrator/reconcilers.ts';
import { waitFor } from './support/orchestrator/wait.ts';

/**
 * A health round holds no worker slot while its probes wait. With 1,000
 * targets that hang until the probe timeout and every slot of the worker
 * taken by reconciles that hold on until the round's probes are all in, those
 * reconciles all start while the round waits — under the old design (the
 * round's job probing in its slot) the last of them could only start once the
 * round had ended. Also: one round at a time with two workers, and a worker
 * killed mid-round loses that round only — the next one runs on another
 * worker and records every target.
 */

const TARGETS = 1000;
const CONCURRENCY = 4;
const log = createLogger('silent');

let testDb: TestDatabase;
let hang: net.Server;
let hangPort: number;
const sockets = new Set<net.Socket>();
const cleanups: (() => Promise<void>)[] = [];

beforeEach(async () => {
  testDb = await createTestDatabase();
  await installTestTables(testDb.pool);
  // Accepts every connection and never answers: each probe waits for its timeout.
  hang = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => undefined);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => hang.listen(0, '127.0.0.1', r));
  hangPort = (hang.address() as net.AddressInfo).port;
  await testDb.pool.query(
    `INSERT INTO tenants (id, slug, company, status)
       SELECT 'ten_h' || i, 'h' || i, 'H ' || i, 'active' FROM generate_series(1, $1) AS i`,
    [TARGETS],
  );
  await testDb.pool.query(
    `INSERT INTO routes (id, hostname, path_prefix, tenant_id, upstream_host, upstream_port, strip_prefix, state)
       SELECT 'rte_h' || i, 'h' || i || '.health.test', '', 'ten_h' || i, '127.0.0.1', $2, false, 'active'
         FROM generate_series(1, $1) AS i`,
    [TARGETS, hangPort],
  );
});

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  for (const s of sockets) s.destroy();
  await new Promise((r) => hang.close(r));
  await testDb.drop();
});

const noCompute = {} as ComputeDriver;

/** A worker in this process with the health task and a `hold` reconciler whose step waits for `gate`. */
async function healthWorker(options: {
  events: string[];
  gate?: Promise<void>;
  intervalSeconds: number;
  timeoutSeconds?: number;
}): Promise<{ worker: OrchestratorWorker; monitor: HealthMonitor }> {
  const { events } = options;
  const hold: Reconciler<Record<string, never>> = {
    kind: 'hold',
    parseSpec: () => ({}),
    steps: [
      {
        name: 'work',
        observe: () => Promise.resolve('missing' as const),
        async apply({ resource }) {
          events.push(`start ${resource.id}`);
          await options.gate;
          events.push(`end ${resource.id}`);
        },
      },
    ],
  };
  const monitor = healthMonitor({
    db: testDb.db,
    url: testDb.url,
    compute: noCompute,
    log,
    intervalSeconds: options.intervalSeconds,
    timeoutSeconds: options.timeoutSeconds ?? 1,
    failures: 2,
    onRound: (e: RoundEvent) => events.push(e.kind),
  });
  const built = testWorkerOptions(testDb.url, '/nonexistent', log, {
    concurrency: CONCURRENCY,
    registry: new ReconcilerRegistry().register(hold),
    tasks: { [HEALTH_TASK]: monitor.task },
    onStop: [() => monitor.stop()],
  });
  const worker = await startWorker(built.options);
  cleanups.push(async () => {
    await worker.stop();
    await built.close();
  });
  return { worker, monitor };
}

const recorded = (timeoutSeconds = 1) =>
  countRows(testDb, `SELECT 1 FROM health_checks WHERE last_result = $1`, [
    `no answer within ${timeoutSeconds} s`,
  ]);

describe('a health round off the worker slots', { timeout: 180_000 }, () => {
  it('lets every slot start other jobs while its 1,000 slow probes wait', async () => {
    const events: string[] = [];
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    await healthWorker({
      events,
      gate,
      // Long: only the round queued below runs in this test.
      intervalSeconds: 3600,
    });
    await scheduleHealthRound(testDb.db, 0);
    await waitFor('the round to start probing', () => Promise.resolve(events.includes('probing')));
    // Reconciles for every slot, queued while the round's probes wait; each holds its slot until the
    // round's probes are all in.
    for (let i = 0; i < CONCURRENCY; i++)
      await applyResource(testDb.db, { kind: 'hold', id: `hold${i}`, tenantId: null, spec: {} });
    await waitFor('the probes to be in', () => Promise.resolve(events.includes('probed')));
    open();
    await waitFor('the round to be recorded', () => Promise.resolve(events.includes('recorded')));
    await waitFor('the reconciles to end', () =>
      Promise.resolve(events.filter((e) => e.startsWith('end ')).length === CONCURRENCY),
    );
    const at = (e: string) => events.indexOf(e);
    const starts = events.filter((e) => e.startsWith('start '));
    expect(starts).toHaveLength(CONCURRENCY);
    // Every one of them started after the round began probing and before its probes were in.
    for (const s of starts) {
      expect(at(s)).toBeGreaterThan(at('probing'));
      expect(at(s)).toBeLessThan(at('probed'));
    }
    // The round's results are recorded as before: one record per target, the reason in it.
    expect(await recorded()).toBe(TARGETS);
    expect(events.filter((e) => e === 'probing')).toHaveLength(1);
  });

  it('runs one round at a time with two workers', async () => {
    const a: string[] = [];
    const b: string[] = [];
    // 200 targets (one wave of probes), each waiting 4 s: long enough for a second job to run meanwhile.
    await testDb.pool.query(`UPDATE tenants SET status = 'suspended' WHERE id NOT IN (
        SELECT 'ten_h' || i FROM generate_series(1, 200) AS i)`);
    await healthWorker({ events: a, intervalSeconds: 3600, timeoutSeconds: 4 });
    await healthWorker({ events: b, intervalSeconds: 3600, timeoutSeconds: 4 });
    await scheduleHealthRound(testDb.db, 0);
    await waitFor('a round to start probing', () => Promise.resolve([...a, ...b].includes('probing')));
    const first = a.includes('probing') ? a : b;
    // Another round's job while that round waits, on either worker: it finds the round taken and ends.
    await scheduleHealthRound(testDb.db, 0);
    await waitFor('the second job to find the round taken', () =>
      Promise.resolve([...a, ...b].includes('busy')),
    );
    expect(first.includes('probed')).toBe(false);
    await waitFor(
      'the round to be recorded',
      () => Promise.resolve(first.includes('recorded')),
      120_000,
      () => Promise.resolve(JSON.stringify({ a, b })),
    );
    expect([...a, ...b].filter((e) => e === 'probing')).toHaveLength(1);
    expect(await recorded(4)).toBe(200);
  });

  it('loses only the round of a worker killed mid-round; the next round runs on another worker', async () => {
    // Worker A in a process of its own, killed while its round's probes wait.
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', path.join(import.meta.dirname, 'support', 'orchestrator', 'worker-process.ts')],
      {
        env: {
          ...process.env,
          DATABASE_URL: testDb.url,
          MAIL_DIR: '/nonexistent',
          HEALTH_INTERVAL_SECONDS: '2',
          HEALTH_TIMEOUT_SECONDS: '1',
        },
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    cleanups.push(() => killed(child));
    const lines = createInterface({ input: child.stdout });
    const seen: string[] = [];
    lines.on('line', (l) => seen.push(l));
    await waitFor('worker A to be ready', () => Promise.resolve(seen.includes('worker ready')));
    await scheduleHealthRound(testDb.db, 0);
    await waitFor('worker A to start probing', () => Promise.resolve(seen.includes('health probing')));
    child.kill('SIGKILL');
    await killed(child);
    expect(seen.includes('health recorded')).toBe(false);
    expect(await recorded()).toBe(0);

    // Worker B, started afterwards: the round queued before A's probes began runs on it.
    const events: string[] = [];
    await healthWorker({ events, intervalSeconds: 2 });
    await waitFor('the next round to be recorded', () => Promise.resolve(events.includes('recorded')));
    expect(await recorded()).toBe(TARGETS);
  });
});

function killed(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  child.kill('SIGKILL');
  return new Promise((r) => child.once('exit', () => r()));
}
