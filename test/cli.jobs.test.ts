import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requestReconcile } from '../src/orchestrator/queue.ts';
import { runCli } from './support/cli.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';

let testDb: TestDatabase;
beforeAll(async () => {
  testDb = await createTestDatabase();
});
afterAll(() => testDb.drop());

describe('aiqso jobs', () => {
  it('lists queued jobs and failed resources as JSON', async () => {
    await testDb.db
      .insertInto('resources')
      .values({
        kind: 'site',
        id: 'x1',
        spec: '{}',
        steps: '[]',
        phase: 'failed',
        last_error: 'route: boom',
        failures: 8,
      })
      .execute();
    await requestReconcile(
      testDb.db,
      { kind: 'site', id: 'x2' },
      { runAt: new Date(Date.now() + 3_600_000) },
    );
    const env = {
      DATABASE_URL: testDb.url,
      AIQSO_DATA_DIR: await mkdtemp(path.join(os.tmpdir(), 'aiqso-jobs-')),
    };
    const result = await runCli(['jobs', '--json'], env);
    expect(result.code).toBe(0);
    const work = JSON.parse(result.stdout) as {
      jobs: { task: string; state: string; key: string }[];
      failedResources: unknown[];
    };
    expect(work.jobs).toEqual([
      expect.objectContaining({ task: 'reconcile', state: 'queued', key: 'reconcile:site:x2' }),
    ]);
    expect(work.failedResources).toEqual([
      expect.objectContaining({ kind: 'site', id: 'x1', lastError: 'route: boom', failures: 8 }),
    ]);

    const text = await runCli(['jobs'], env);
    expect(text.stdout).toMatch(/reconcile\s+queued/);
    expect(text.stdout).toMatch(/Failed resources/);
  });

  it('appears in --help with aiqso worker', async () => {
    const result = await runCli(['--help'], {});
    expect(result.stdout).toMatch(/^ {2}worker\b/m);
    expect(result.stdout).toMatch(/^ {2}jobs\b/m);
  });
});
