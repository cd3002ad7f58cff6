import { spawn } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { repositoryKeys } from '../src/backup/repositories.ts';
import { Restic } from '../src/backup/restic.ts';
import { backupRunReconciler } from '../src/backup/run.ts';
import { ProcessDriver } from '../src/compute/process/driver.ts';
import { newId } from '../src/core/ids.ts';
import { createSecretBox, generateMasterKey, parseMasterKey } from '../src/identity/secrets.ts';
import { createLogger } from '../src/observability/logger.ts';
import { runSteps } from '../src/orchestrator/engine.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';

/**
 * A backup run killed mid-way resumes: the restic process killed with
 * SIGKILL leaves its lock (removed by the `stale locks` step, as restic
 * judges it stale: its process is gone), and a snapshot restic stored but the
 * run never recorded is forgotten and taken again. Afterwards the run has
 * exactly one recorded snapshot per service, with its row counts, and
 * `restic check` finds the repository clean.
 */
let db: TestDatabase;
let dir: string;
beforeAll(async () => {
  db = await createTestDatabase();
  dir = await mkdtemp(path.join(os.tmpdir(), 'aiqso-backup-resume-'));
});
afterAll(async () => {
  await db.drop();
  await rm(dir, { recursive: true, force: true });
});

describe('a killed backup run resumes', { timeout: 180_000 }, () => {
  it('removes the stale lock, forgets the unrecorded snapshot and finishes with a clean repository', async () => {
    const tenantId = newId('tenant');
    const serviceId = newId('service');
    const tsId = newId('tenantService');
    await db.db
      .insertInto('tenants')
      .values({ id: tenantId, slug: 'resumeco', company: 'Resume Co' })
      .execute();
    await db.db
      .insertInto('services')
      .values({ id: serviceId, key: 'resumenotes', name: 'Notes', kind: 'app', template: '{}' })
      .execute();
    // The test database stands in for the service's database: a table with three rows.
    await db.pool.query('CREATE TABLE drafts (id int PRIMARY KEY, body text)');
    await db.pool.query("INSERT INTO drafts VALUES (1, 'a'), (2, 'b'), (3, 'c')");
    const url = new URL(db.url);
    await db.db
      .insertInto('tenant_services')
      .values({
        id: tsId,
        tenant_id: tenantId,
        service_id: serviceId,
        status: 'active',
        db_name: db.name,
        db_role: decodeURIComponent(url.username) || 'postgres',
      })
      .execute();
    const box = createSecretBox(parseMasterKey(generateMasterKey()));
    const keys = repositoryKeys(db.db, () => Promise.resolve(box), path.join(dir, 'repos'));
    const restic = new Restic({ cacheDir: path.join(dir, 'cache') });
    const repo = await keys.forTenant(tenantId);
    await restic.init(repo);
    const runId = `run_${tenantId.slice(4)}_resume`;
    const tags = [`tenant=${tenantId}`, 'service=resumenotes', 'kind=database', `run=${runId}`];

    // Killed after restic stored a snapshot, before the run recorded it.
    await restic.backupStdin(repo, {
      stdin: Readable.from(['partial']),
      filename: 'database.dump',
      tags,
      host: 'aiqso',
    });
    // Killed while restic held its lock.
    const hung = spawn(
      'restic',
      ['backup', '--stdin', '--stdin-filename', 'database.dump', '--tag', `run=${runId}`],
      {
        env: {
          PATH: process.env.PATH,
          RESTIC_REPOSITORY: repo.location,
          RESTIC_PASSWORD: repo.password,
          HOME: dir,
        },
        stdio: ['pipe', 'ignore', 'ignore'],
      },
    );
    const locks = path.join(repo.location, 'locks');
    for (let i = 0; i < 100 && (await readdir(locks)).length === 0; i++)
      await new Promise((r) => setTimeout(r, 100));
    expect((await readdir(locks)).length).toBe(1);
    hung.kill('SIGKILL');
    await new Promise((r) => hung.once('exit', r));

    const compute = await ProcessDriver.open({
      root: path.join(dir, 'containers'),
      log: createLogger('silent'),
    });
    const reconciler = backupRunReconciler({
      db: db.db,
      restic,
      keys,
      compute,
      dbLocal: { host: url.hostname, port: Number(url.port || 5432) },
      rootSecret: () => Promise.resolve(decodeURIComponent(url.password)),
      stagingDir: path.join(dir, 'staging'),
      host: 'aiqso',
    });
    const outcome = await runSteps({
      reconciler,
      target: {
        kind: 'backup-run',
        id: runId,
        tenantId,
        spec: { tenantId, purpose: 'manual' },
        generation: 1,
      },
      deleting: false,
      previous: [],
      converged: false,
      signal: new AbortController().signal,
      onProgress: () => Promise.resolve(),
    });
    await compute.close();
    expect(outcome.steps.map((s) => [s.name, s.state])).toEqual([
      ['repository', 'done'],
      ['stale locks', 'done'],
      ['databases', 'done'],
      ['data', 'done'],
      ['completed event', 'done'],
    ]);
    expect(await readdir(locks)).toEqual([]);
    // Its backup.completed event, once, naming the run's snapshot.
    const events = await db.db.selectFrom('webhook_events').select(['type', 'data']).execute();
    expect(events.map((e) => e.type)).toEqual(['backup.completed']);
    expect(events[0]!.data).toMatchObject({ run: { id: runId }, backups: [{ kind: 'database' }] });
    const snaps = await restic.snapshots(repo, tags);
    expect(snaps).toHaveLength(1);
    const rows = await db.db.selectFrom('backups').selectAll().where('run_id', '=', runId).execute();
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ snapshot_id: snaps[0]!.id, kind: 'database', service: 'resumenotes' });
    // Every table's exact count (the stand-in database also holds the platform's tables).
    expect(rows[0]!.row_counts).toMatchObject({ 'public.drafts': 3, 'public.tenant_services': 1 });
    // The dump restic holds is the database's, not the killed attempt's partial file.
    const out: Buffer[] = [];
    const sink = new (await import('node:stream')).Writable({
      write(chunk: Buffer, _enc, cb) {
        out.push(chunk);
        cb();
      },
    });
    await restic.dump(repo, snaps[0]!.id, '/database.dump', sink);
    expect(Buffer.concat(out).subarray(0, 5).toString()).toBe('PGDMP');
    await restic.call(repo, ['check']);
    // Running the steps again finds everything in place.
    const again = await runSteps({
      reconciler,
      target: {
        kind: 'backup-run',
        id: runId,
        tenantId,
        spec: { tenantId, purpose: 'manual' },
        generation: 1,
      },
      deleting: false,
      previous: outcome.steps,
      converged: true,
      signal: new AbortController().signal,
      onProgress: () => Promise.resolve(),
    }).catch((err: unknown) => err);
    expect(again).toMatchObject({ actions: 0 });
  });
});
