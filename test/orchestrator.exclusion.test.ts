import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requestReconcile } from '../src/orchestrator/queue.ts';
import { applyResource } from '../src/orchestrator/resources.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import { installTestTables } from './support/orchestrator/reconcilers.ts';
import { prepareWorkerScript, spawnWorker, type SpawnedWorker } from './support/orchestrator/spawn.ts';
import { waitIdle } from './support/orchestrator/wait.ts';

let testDb: TestDatabase;
const workers: SpawnedWorker[] = [];

beforeAll(async () => {
  testDb = await createTestDatabase({ max: 8 });
  await installTestTables(testDb.pool);
  const argv = await prepareWorkerScript();
  const env = {
    DATABASE_URL: testDb.url,
    MAIL_DIR: await mkdtemp(path.join(os.tmpdir(), 'aiqso-excl-')),
    CONCURRENCY: '4',
  };
  workers.push(spawnWorker(argv, env), spawnWorker(argv, env));
  await Promise.all(workers.map((w) => w.ready));
});

afterAll(async () => {
  for (const w of workers) w.child.kill('SIGTERM');
  await Promise.all(workers.map((w) => w.exited));
  await testDb?.drop();
});

describe('two worker processes on one database', () => {
  it('never run the same resource at once, however the triggers pile up', async () => {
    const ids = Array.from({ length: 6 }, (_, i) => `prb_${i}`);
    for (const id of ids) await applyResource(testDb.db, { kind: 'probe', id, spec: {} });
    // Bursts of concurrent triggers while earlier runs are still going.
    for (let burst = 0; burst < 25; burst++) {
      await Promise.all(
        Array.from({ length: 12 }, (_, i) =>
          requestReconcile(testDb.db, { kind: 'probe', id: ids[i % ids.length]! }),
        ),
      );
      await new Promise((r) => setTimeout(r, 10));
    }
    await waitIdle(testDb.pool);

    const overlaps = await testDb.pool.query(
      `SELECT a.resource, a.pid AS pid_a, b.pid AS pid_b FROM test_runs a JOIN test_runs b
         ON a.resource = b.resource AND a.id < b.id
        AND a.started_at < b.finished_at AND b.started_at < a.finished_at`,
    );
    expect(overlaps.rows).toEqual([]);
    const { rows } = await testDb.pool.query<{ runs: number; pids: number; resources: number }>(
      'SELECT count(*)::int AS runs, count(DISTINCT pid)::int AS pids, count(DISTINCT resource)::int AS resources FROM test_runs',
    );
    // Both processes worked, and triggers during a run queued further runs.
    expect(rows[0]!.pids).toBe(2);
    expect(rows[0]!.resources).toBe(6);
    expect(rows[0]!.runs).toBeGreaterThan(12);
  });
});
