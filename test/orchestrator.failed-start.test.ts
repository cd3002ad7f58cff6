import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../src/observability/logger.ts';
import { startWorker } from '../src/orchestrator/worker.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import { installTestTables, testWorkerOptions } from './support/orchestrator/reconcilers.ts';

let testDb: TestDatabase;
const log = createLogger('silent');

beforeAll(async () => {
  testDb = await createTestDatabase();
  await installTestTables(testDb.pool);
});

afterAll(async () => {
  await testDb?.drop();
});

/** Connections to the test database from anything but the test's own pool. */
async function otherConnections(): Promise<string[]> {
  const { rows } = await testDb.pool.query<{ application_name: string }>(
    `SELECT application_name FROM pg_stat_activity
      WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name LIKE 'aiqso-%'`,
  );
  return rows.map((r) => r.application_name);
}

describe('a worker whose start fails after its runner is up', () => {
  it('stops the runner and closes every connection it opened before reporting the error', async () => {
    // The outbox is read after graphile-worker's runner has started: without it, the start fails there.
    await testDb.pool.query('ALTER TABLE outbox RENAME TO outbox_elsewhere');
    const mailDir = await mkdtemp(path.join(os.tmpdir(), 'aiqso-failed-start-'));
    const built = testWorkerOptions(testDb.url, mailDir, log, {});
    try {
      await expect(startWorker(built.options)).rejects.toThrow(/outbox/);
      // pg ends a closed pool's connections at once; give the server a moment to see them go.
      for (let i = 0; i < 50 && (await otherConnections()).length > 0; i++) {
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(await otherConnections()).toEqual([]);
    } finally {
      await built.close();
      await testDb.pool.query('ALTER TABLE outbox_elsewhere RENAME TO outbox');
    }
  });
});
