import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newId } from '../src/core/ids.ts';
import { createLogger } from '../src/observability/logger.ts';
import { applyResource, findResource, retryResource } from '../src/orchestrator/resources.ts';
import type { OrchestratorWorker } from '../src/orchestrator/worker.ts';
import type { TestDatabase } from './support/db.ts';
import { startOrchestratorFixture, type OrchestratorFixture } from './support/orchestrator/fixture.ts';
import { brokenFailedCalls } from './support/orchestrator/reconcilers.ts';
import { waitFor, waitIdle } from './support/orchestrator/wait.ts';

let fixture: OrchestratorFixture;
let testDb: TestDatabase;
let worker: OrchestratorWorker;
let mailDir: string;
const logLines: Record<string, unknown>[] = [];

beforeAll(async () => {
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n').filter(Boolean))
        logLines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  fixture = await startOrchestratorFixture(createLogger('warn', sink), {}, async ({ db }) => {
    await db
      .insertInto('users')
      .values({ id: newId('user'), email: 'ops@example.com', role: 'platform_admin', tenant_id: null })
      .execute();
  });
  ({ testDb, worker, mailDir } = fixture);
});

afterAll(() => fixture?.close());

describe('a resource that keeps failing', () => {
  it('is retried with backoff, then marked failed with its error and an alert mailed to the admins', async () => {
    const ref = { kind: 'broken', id: 'brk_1' };
    await applyResource(testDb.db, { ...ref, spec: {} });
    await waitFor(
      'the resource to fail',
      async () => (await findResource(testDb.db, ref))?.phase === 'failed',
    );
    await waitIdle(testDb.pool);
    const r = await findResource(testDb.db, ref);
    expect(r).toMatchObject({ phase: 'failed', failures: 3, last_error: 'doomed: the upstream said no' });
    // The reconciler is told once, when the orchestrator gives up (not on the retries before).
    expect(brokenFailedCalls).toEqual([{ id: 'brk_1', error: 'doomed: the upstream said no' }]);
    expect(r!.steps).toEqual([
      { name: 'ok-step', state: 'done', attempts: 0 },
      expect.objectContaining({
        name: 'doomed',
        state: 'failed',
        attempts: 3,
        lastError: 'the upstream said no',
      }),
    ]);
    expect(logLines.filter((l) => l.msg === 'reconcile failed; will retry')).toHaveLength(2);
    expect(logLines.find((l) => l.msg === 'resource failed; operators alerted')).toMatchObject({
      level: 'error',
      kind: 'broken',
      id: 'brk_1',
      alert: true,
    });
    const alerts = await testDb.db.selectFrom('outbox').selectAll().where('kind', '=', 'alert').execute();
    expect(alerts).toHaveLength(1);
    expect(alerts[0]).toMatchObject({ status: 'delivered' });
    const files = await readdir(mailDir);
    expect(files).toHaveLength(1);
    const eml = await readFile(path.join(mailDir, files[0]!), 'utf8');
    expect(eml).toMatch(/^To: ops@example.com/m);
    expect(eml).toMatch(/^Subject: \[aiqso alert\] broken brk_1 failed/m);
    expect(eml).toContain('the upstream said no');
  });

  it('stays failed through a resync, and an operator retry starts a fresh series', async () => {
    const ref = { kind: 'broken', id: 'brk_1' };
    await worker.resyncNow();
    await waitIdle(testDb.pool);
    expect(await findResource(testDb.db, ref)).toMatchObject({ phase: 'failed', failures: 3 });
    expect(await retryResource(testDb.db, ref)).toBe(true);
    await waitFor(
      'the retry to fail again',
      async () => (await findResource(testDb.db, ref))?.phase === 'failed',
    );
    await waitIdle(testDb.pool);
    expect(await findResource(testDb.db, ref)).toMatchObject({ phase: 'failed', failures: 3 });
    expect(
      await testDb.db.selectFrom('outbox').select('key').where('kind', '=', 'alert').execute(),
    ).toHaveLength(2);
  });

  it('fails at once, without retries, when the spec itself is invalid', async () => {
    const ref = { kind: 'site', id: newId('tenant') };
    await applyResource(testDb.db, { ...ref, spec: { slug: 'x' } });
    await waitFor(
      'the resource to fail',
      async () => (await findResource(testDb.db, ref))?.phase === 'failed',
    );
    expect(await findResource(testDb.db, ref)).toMatchObject({
      failures: 1,
      last_error: 'site spec needs slug, port and email',
    });
  });
});
