import { readdir } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newId } from '../src/core/ids.ts';
import { createLogger } from '../src/observability/logger.ts';
import { applyResource, deleteResource, findResource } from '../src/orchestrator/resources.ts';
import type { OrphanReport } from '../src/orchestrator/resync.ts';
import type { OrchestratorWorker } from '../src/orchestrator/worker.ts';
import type { TestDatabase } from './support/db.ts';
import { startOrchestratorFixture, type OrchestratorFixture } from './support/orchestrator/fixture.ts';
import { siteContainer, siteHost } from './support/orchestrator/site-reconciler.ts';
import { waitFor, waitIdle } from './support/orchestrator/wait.ts';

let fixture: OrchestratorFixture;
let testDb: TestDatabase;
let worker: OrchestratorWorker;
let mailDir: string;
const resyncs: { queued: number; orphans: OrphanReport }[] = [];
const actions: string[] = [];

const calls = async () =>
  (await testDb.pool.query<{ op: string; name: string }>('SELECT op, name FROM test_calls ORDER BY id')).rows;

async function resync(): Promise<{ queued: number; orphans: OrphanReport }> {
  const before = resyncs.length;
  await worker.resyncNow();
  await waitFor('a resync', () => Promise.resolve(resyncs.length > before));
  await waitIdle(testDb.pool);
  return resyncs.at(-1)!;
}

beforeAll(async () => {
  fixture = await startOrchestratorFixture(createLogger('silent'), {
    orphanGraceMs: 0,
    onResync: (r) => resyncs.push(r),
    hooks: { onReconciled: (ref, outcome) => actions.push(`${ref.id}:${outcome.actions}`) },
  });
  ({ testDb, worker, mailDir } = fixture);
});

afterAll(() => fixture?.close());

const sites = Array.from({ length: 5 }, (_, i) => ({
  id: newId('tenant'),
  spec: { slug: `site${i}`, port: 3000 + i, email: `owner${i}@example.com` },
}));

describe('orchestrator reconcile and resync', () => {
  it('converges new resources: one container, one route and one welcome email each', async () => {
    for (const s of sites) await applyResource(testDb.db, { kind: 'site', id: s.id, spec: s.spec });
    await waitIdle(testDb.pool);
    for (const s of sites) {
      const r = await findResource(testDb.db, { kind: 'site', id: s.id });
      expect(r).toMatchObject({ phase: 'ready', observed_generation: 1, generation: 1, last_error: null });
      expect(r!.steps.map((st) => [st.name, st.state, st.attempts])).toEqual([
        ['container', 'done', 1],
        ['route', 'done', 1],
        ['welcome-email', 'done', 1],
      ]);
    }
    const ops = await calls();
    expect(ops.filter((c) => c.op === 'create')).toHaveLength(5);
    expect(ops.filter((c) => c.op === 'route-create')).toHaveLength(5);
    expect(await readdir(mailDir)).toHaveLength(5);
    const emails = await testDb.db
      .selectFrom('emails')
      .select(['recipient', 'template', 'transport'])
      .execute();
    expect(emails).toHaveLength(5);
    expect(emails[0]).toMatchObject({ template: 'welcome', transport: 'files' });
  });

  it('performs no action and writes nothing in a resync without drift', async () => {
    const callsBefore = (await calls()).length;
    const updatedBefore = await testDb.db
      .selectFrom('resources')
      .select(['id', 'updated_at'])
      .orderBy('id')
      .execute();
    actions.length = 0;
    const report = await resync();
    expect(report.queued).toBe(5);
    expect(report.orphans).toEqual({ found: [], removed: [] });
    expect(actions).toEqual([]);
    expect(await calls()).toHaveLength(callsBefore);
    expect(
      await testDb.db.selectFrom('resources').select(['id', 'updated_at']).orderBy('id').execute(),
    ).toEqual(updatedBefore);
  });

  it('repairs drift made out of band within one resync and counts the repair on the step', async () => {
    const [a, b, c] = sites;
    await testDb.pool.query('DELETE FROM test_containers WHERE name = $1', [siteContainer(a!.id)]);
    await testDb.pool.query('DELETE FROM routes WHERE hostname = $1', [siteHost(b!.spec.slug)]);
    await testDb.pool.query("UPDATE test_containers SET state = 'stopped' WHERE name = $1", [
      siteContainer(c!.id),
    ]);
    await resync();
    expect(
      (
        await testDb.pool.query("SELECT 1 FROM test_containers WHERE name = $1 AND state = 'running'", [
          siteContainer(a!.id),
        ])
      ).rowCount,
    ).toBe(1);
    expect(
      (await testDb.pool.query('SELECT 1 FROM routes WHERE hostname = $1', [siteHost(b!.spec.slug)]))
        .rowCount,
    ).toBe(1);
    expect(
      (
        await testDb.pool.query("SELECT 1 FROM test_containers WHERE name = $1 AND state = 'running'", [
          siteContainer(c!.id),
        ])
      ).rowCount,
    ).toBe(1);
    const stepA = (await findResource(testDb.db, { kind: 'site', id: a!.id }))!.steps.find(
      (s) => s.name === 'container',
    );
    expect(stepA).toMatchObject({ state: 'done', attempts: 2, repairs: 1 });
    actions.length = 0;
    await resync();
    expect(actions).toEqual([]);
  });

  it('applies a spec change as a repair of the affected steps only', async () => {
    const s = sites[3]!;
    const generation = await applyResource(testDb.db, {
      kind: 'site',
      id: s.id,
      spec: { ...s.spec, port: 4000 },
    });
    expect(generation).toBe(2);
    await waitIdle(testDb.pool);
    expect(await findResource(testDb.db, { kind: 'site', id: s.id })).toMatchObject({
      phase: 'ready',
      observed_generation: 2,
    });
    const route = await testDb.db
      .selectFrom('routes')
      .select('upstream_port')
      .where('hostname', '=', siteHost(s.spec.slug))
      .executeTakeFirst();
    expect(route?.upstream_port).toBe(4000);
    expect(await readdir(mailDir)).toHaveLength(5);
  });

  it('deletes by running the inverse steps in reverse order', async () => {
    const s = sites[4]!;
    const before = (await calls()).length;
    expect(await deleteResource(testDb.db, { kind: 'site', id: s.id })).toBe(true);
    await waitIdle(testDb.pool);
    expect(await findResource(testDb.db, { kind: 'site', id: s.id })).toMatchObject({
      phase: 'deleted',
      deleted: true,
    });
    expect((await calls()).slice(before).map((c) => c.op)).toEqual(['route-delete', 'destroy']);
  });

  it('reports orphans and removes them only after the grace period', async () => {
    await testDb.pool.query(
      `INSERT INTO test_containers (name, state, spec) VALUES ('aiqso-stray-web', 'running', '{"port": 1}')`,
    );
    const first = await resync();
    expect(first.orphans.found.map((o) => o.name)).toEqual(['aiqso-stray-web']);
    expect(first.orphans.removed).toEqual([]);
    const second = await resync();
    expect(second.orphans.removed).toEqual([{ source: 'containers', name: 'aiqso-stray-web' }]);
    expect(
      (await testDb.pool.query("SELECT 1 FROM test_containers WHERE name = 'aiqso-stray-web'")).rowCount,
    ).toBe(0);
  });
});
