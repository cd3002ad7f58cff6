import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Logger } from '../../../src/observability/logger.ts';
import {
  startWorker,
  type OrchestratorWorker,
  type WorkerOptions,
} from '../../../src/orchestrator/worker.ts';
import { createTestDatabase, type TestDatabase } from '../db.ts';
import { installTestTables, testWorkerOptions } from './reconcilers.ts';

/** A test database with the test reconcilers' tables, a mail directory, and one worker on them in this process. */
export interface OrchestratorFixture {
  testDb: TestDatabase;
  worker: OrchestratorWorker;
  mailDir: string;
  close(): Promise<void>;
}

/** `prepare` runs on the database before the worker starts (e.g. to add the admins alerts go to). */
export async function startOrchestratorFixture(
  log: Logger,
  overrides: Partial<WorkerOptions> = {},
  prepare?: (testDb: TestDatabase) => Promise<void>,
): Promise<OrchestratorFixture> {
  const testDb = await createTestDatabase();
  await installTestTables(testDb.pool);
  await prepare?.(testDb);
  const mailDir = await mkdtemp(path.join(os.tmpdir(), 'aiqso-orchestrator-mail-'));
  const built = testWorkerOptions(testDb.url, mailDir, log, overrides);
  const worker = await startWorker(built.options);
  return {
    testDb,
    worker,
    mailDir,
    async close() {
      await worker.stop();
      await built.close();
      await testDb.drop();
    },
  };
}
