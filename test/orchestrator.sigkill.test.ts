import { mkdtemp, readdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newId } from '../src/core/ids.ts';
import { requestReconcile, scheduleResync } from '../src/orchestrator/queue.ts';
import { applyResource, deleteResource } from '../src/orchestrator/resources.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import { installTestTables } from './support/orchestrator/reconcilers.ts';
import { siteContainer, siteHost, type SiteSpec } from './support/orchestrator/site-reconciler.ts';
import { prepareWorkerScript, spawnWorker, type SpawnedWorker } from './support/orchestrator/spawn.ts';
import { busyWork, waitFor, waitIdle } from './support/orchestrator/wait.ts';

const KILLS = 200;
const SLOTS = 4;

let testDb: TestDatabase;
let mailDir: string;
let argv: string[];
const live = new Set<SpawnedWorker>();

beforeAll(async () => {
  testDb = await createTestDatabase({ max: 8 });
  await installTestTables(testDb.pool);
  mailDir = await mkdtemp(path.join(os.tmpdir(), 'aiqso-kill-mail-'));
  argv = await prepareWorkerScript();
});

afterAll(async () => {
  for (const w of live) w.child.kill('SIGKILL');
  await Promise.all([...live].map((w) => w.exited));
  await testDb?.drop();
});

const random = (n: number) => Math.floor(Math.random() * n);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('orchestrator under SIGKILL', () => {
  it(`converges with no duplicate side effects after ${KILLS} kills at random points`, async () => {
    const env = { DATABASE_URL: testDb.url, MAIL_DIR: mailDir, CONCURRENCY: '4' };
    const sites = new Map<string, SiteSpec>();
    const deleted = new Set<string>();
    let serial = 0;
    const create = async () => {
      const id = newId('tenant');
      const spec = { slug: `s${serial++}`, port: 3000 + random(1000), email: `o${serial}@example.com` };
      sites.set(id, spec);
      await applyResource(testDb.db, { kind: 'site', id, spec });
    };
    for (let i = 0; i < 40; i++) await create();

    // Keep changing things while workers die: triggers, spec changes, creations, deletions.
    const change = async () => {
      const ids = [...sites.keys()].filter((id) => !deleted.has(id));
      const id = ids[random(ids.length)]!;
      const roll = random(20);
      if (roll < 10) await requestReconcile(testDb.db, { kind: 'site', id });
      else if (roll < 14) {
        const spec = { ...sites.get(id)!, port: 3000 + random(1000) };
        sites.set(id, spec);
        await applyResource(testDb.db, { kind: 'site', id, spec });
      } else if (roll < 17) {
        if (sites.size < 100) await create();
      } else if (ids.length > 25) {
        deleted.add(id);
        await deleteResource(testDb.db, { kind: 'site', id });
      }
    };

    let changes = Promise.resolve();
    let kills = 0;
    let killsMidJob = 0;
    const slot = async () => {
      while (kills < KILLS) {
        const w = spawnWorker(argv, env);
        live.add(w);
        // Most kills land while jobs run; a few during start-up.
        if (random(10) > 0) await w.ready;
        // One change at a time: the test's own bookkeeping of what was deleted must not race.
        for (let i = random(6); i > 0; i--) await (changes = changes.then(change));
        await sleep(random(300));
        if (kills >= KILLS) break;
        // Claim this kill before awaiting anything, so concurrent slots never overshoot KILLS.
        kills++;
        const { rows } = await testDb.pool.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM graphile_worker.jobs j JOIN worker_processes p
             ON j.locked_by = ANY (p.pool_ids) WHERE p.pid = $1`,
          [w.child.pid],
        );
        w.child.kill('SIGKILL');
        if (rows[0]!.n > 0) killsMidJob++;
        if (kills % 50 === 0) process.stderr.write(`sigkill test: ${kills} kills\n`);
        await w.exited;
        live.delete(w);
      }
    };
    await Promise.all(Array.from({ length: SLOTS }, slot));
    expect(kills).toBe(KILLS);

    // Survivors: two fresh workers finish the work, then one resync.
    const survivors = [spawnWorker(argv, env), spawnWorker(argv, env)];
    survivors.forEach((w) => live.add(w));
    await Promise.all(survivors.map((w) => w.ready));
    await waitFor(
      'the queued work to drain',
      async () => {
        // A job killed mid-run several times is retried after graphile-worker's backoff (minutes by its
        // 5th attempt); bring such retries forward, as an operator would, so the test does not wait them out.
        await testDb.pool.query(
          `SELECT graphile_worker.reschedule_jobs(array_agg(id), run_at => now())
             FROM graphile_worker.jobs
            WHERE run_at > now() AND locked_at IS NULL AND attempts > 0 AND attempts < max_attempts
              AND task_identifier IN ('reconcile', 'outbox')
           HAVING count(*) > 0`,
        );
        const { rows } = await testDb.pool.query<{ n: number }>(
          `SELECT (SELECT count(*) FROM graphile_worker.jobs WHERE attempts < max_attempts
                     AND task_identifier IN ('reconcile', 'outbox'))
                + (SELECT count(*) FROM outbox WHERE status = 'pending') AS n`,
        );
        return Number(rows[0]!.n) === 0;
      },
      // Generous: on a loaded machine two workers take a while through what 200 kills left.
      240_000,
      () => busyWork(testDb.pool),
    );
    const gaveUp = await testDb.pool.query(
      'SELECT task_identifier, key, attempts, last_error FROM graphile_worker.jobs WHERE attempts >= max_attempts',
    );
    if (gaveUp.rowCount)
      process.stderr.write(`sigkill test: jobs that gave up: ${JSON.stringify(gaveUp.rows)}\n`);
    // The one resync the done-when allows picks up anything a kill left behind.
    await scheduleResync(testDb.db, new Date());
    await waitFor('the resync to run', async () => {
      const { rowCount } = await testDb.pool.query(
        "SELECT 1 FROM graphile_worker.jobs WHERE task_identifier = 'resync' AND run_at <= now()",
      );
      return rowCount === 0;
    });
    await waitIdle(testDb.pool, 120_000);

    // Every resource converged.
    const resources = await testDb.db.selectFrom('resources').selectAll().execute();
    expect(resources).toHaveLength(sites.size);
    for (const r of resources) {
      if (deleted.has(r.id)) expect([r.id, r.phase]).toEqual([r.id, 'deleted']);
      else expect([r.id, r.phase, r.observed_generation]).toEqual([r.id, 'ready', r.generation]);
    }
    const liveIds = [...sites.keys()].filter((id) => !deleted.has(id));

    // The world matches the specs exactly.
    const containers = (
      await testDb.pool.query<{ name: string; state: string; port: number }>(
        "SELECT name, state, (spec->>'port')::int AS port FROM test_containers ORDER BY name",
      )
    ).rows;
    expect(containers).toEqual(
      liveIds
        .map((id) => ({ name: siteContainer(id), state: 'running', port: sites.get(id)!.port }))
        .sort((a, b) => a.name.localeCompare(b.name)),
    );
    const routes = await testDb.db
      .selectFrom('routes')
      .select(['hostname', 'upstream_port'])
      .orderBy('hostname')
      .execute();
    expect(routes).toEqual(
      liveIds
        .map((id) => ({ hostname: siteHost(sites.get(id)!.slug), upstream_port: sites.get(id)!.port }))
        .sort((a, b) => a.hostname.localeCompare(b.hostname)),
    );

    // 0 duplicate side effects: each container and route created at most once, each email sent once.
    const dupes = await testDb.pool.query(
      "SELECT op, name, count(*) FROM test_calls WHERE op IN ('create', 'route-create') GROUP BY op, name HAVING count(*) > 1",
    );
    expect(dupes.rows).toEqual([]);
    const welcome = await testDb.db
      .selectFrom('outbox')
      .select(['key', 'status'])
      .where('kind', '=', 'email')
      .execute();
    expect(welcome.every((o) => o.status === 'delivered')).toBe(true);
    for (const id of liveIds) expect(welcome.map((o) => o.key)).toContain(`welcome:${id}`);
    const files = (await readdir(mailDir)).filter((f) => f.endsWith('.eml'));
    expect(files).toHaveLength(welcome.length);
    expect((await readdir(mailDir)).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    expect(await testDb.db.selectFrom('emails').select('outbox_key').execute()).toHaveLength(welcome.length);

    // 0 orphans after the resync, and the kills really landed mid-work.
    expect(await testDb.db.selectFrom('orphans').selectAll().execute()).toEqual([]);
    process.stderr.write(
      `sigkill test: ${kills} kills, ${killsMidJob} with jobs running, ${sites.size} sites\n`,
    );
    expect(killsMidJob).toBeGreaterThan(KILLS / 4);
  }, 600_000);
});
