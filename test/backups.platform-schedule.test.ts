import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { platformRepository } from '../src/backup/platform.ts';
import { Restic } from '../src/backup/restic.ts';
import { ProcessDriver } from '../src/compute/process/driver.ts';
import { loadConfig } from '../src/config/load.ts';
import { createSecretBox, generateMasterKey, parseMasterKey } from '../src/identity/secrets.ts';
import { createLogger } from '../src/observability/logger.ts';
import { runSteps } from '../src/orchestrator/engine.ts';
import { registerBackups } from '../src/platform/backups.ts';
import { orchestratorParts } from '../src/platform/orchestrator.ts';
import { runCli } from './support/cli.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';

/**
 * The master database on the `backups` schedule, with real restic and
 * PostgreSQL: a firing (seen twice) queues one `platform-backup` run next to
 * the tenants'; its steps put a `pg_dump` of the master database into the
 * platform repository and record it, a snapshot a killed attempt stored but
 * never recorded is forgotten, and running it again does nothing. The
 * `retention` schedule applies AIQSO_BACKUP_KEEP to the platform repository,
 * and `aiqso backups list --platform` lists what it holds, with the master
 * key alone.
 */
let db: TestDatabase;
let dir: string;
beforeAll(async () => {
  db = await createTestDatabase();
  dir = await mkdtemp(path.join(os.tmpdir(), 'aiqso-platform-schedule-'));
});
afterAll(async () => {
  await db.drop();
  await rm(dir, { recursive: true, force: true });
});

describe('the platform repository on a schedule', { timeout: 300_000 }, () => {
  it('backs up the master database once per firing, applies retention and lists its snapshots', async () => {
    const masterKey = generateMasterKey();
    const env = { AIQSO_DATA_DIR: dir, AIQSO_MASTER_KEY: masterKey, AIQSO_BACKUP_KEEP: 'daily=3' };
    const config = loadConfig(env);
    const parts = orchestratorParts(config);
    const compute = await ProcessDriver.open({
      root: path.join(dir, 'containers'),
      log: createLogger('silent'),
    });
    const box = createSecretBox(parseMasterKey(masterKey));
    registerBackups(parts, {
      config,
      db: db.db,
      compute,
      box: () => Promise.resolve(box),
      dbLocal: { host: '127.0.0.1', port: 5432 },
      rootSecret: () => Promise.resolve('unused'),
      master: { pool: db.pool, url: db.url },
      containerSpec: () => Promise.reject(new Error('no restore runs in this test')),
    });
    const reconciler = parts.registry.get('platform-backup')!;
    expect(reconciler).toBeDefined();
    const restic = new Restic({ cacheDir: path.join(dir, 'restic-cache') });
    const repo = platformRepository(config.backup.repository, parseMasterKey(masterKey));
    const run = (id: string) =>
      runSteps({
        reconciler,
        target: {
          kind: 'platform-backup',
          id,
          tenantId: null,
          spec: { purpose: 'scheduled' },
          generation: 1,
        },
        deleting: false,
        previous: [],
        converged: false,
        signal: new AbortController().signal,
        onProgress: () => Promise.resolve(),
      });

    // One firing, seen twice: one platform run, named after the firing.
    const firedAt = new Date('2026-03-01T02:00:00Z');
    await parts.scheduleHandlers.backups!({ name: 'backups', firedAt, backfilled: false });
    await parts.scheduleHandlers.backups!({ name: 'backups', firedAt, backfilled: false });
    const queued = await db.db
      .selectFrom('resources')
      .select(['id', 'tenant_id', 'spec'])
      .where('kind', '=', 'platform-backup')
      .execute();
    expect(queued).toEqual([
      { id: 'bkp_master_202603010200', tenant_id: null, spec: { purpose: 'scheduled' } },
    ]);

    // A killed attempt of it had stored a snapshot and not recorded it: forgotten, then taken for real.
    await restic.init(repo);
    await restic.backupStdin(repo, {
      stdin: Readable.from(['partial']),
      filename: 'master.dump',
      tags: ['kind=master', `key=${repo.keyId}`, 'run=bkp_master_202603010200'],
      host: 'aiqso',
    });
    const outcome = await run('bkp_master_202603010200');
    expect(outcome.steps.map((s) => [s.name, s.state])).toEqual([
      ['repository', 'done'],
      ['stale locks', 'done'],
      ['master database', 'done'],
    ]);
    const rows = await db.db.selectFrom('platform_backups').selectAll().execute();
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ id: 'bkp_master_202603010200', key_id: repo.keyId });
    const snaps = await restic.snapshots(repo, ['run=bkp_master_202603010200']);
    expect(snaps.map((s) => s.id)).toEqual([rows[0]!.snapshot_id]);
    expect(Number(rows[0]!.size_bytes)).toBeGreaterThan(1000);
    // Done is done: a second look changes nothing.
    expect((await run('bkp_master_202603010200')).actions).toBe(0);

    // Retention (daily=3) over snapshots of six days: the three newest days stay, rows follow.
    for (let d = 1; d <= 5; d++) {
      const time = new Date(Date.UTC(2026, 1, 20 + d, 2));
      const id = `bkp_old_${d}`;
      await restic.backupStdin(repo, {
        stdin: Readable.from([`dump of day ${d}`]),
        filename: 'master.dump',
        tags: ['kind=master', `key=${repo.keyId}`, `run=${id}`],
        host: 'aiqso',
        time,
      });
      const [snap] = await restic.snapshots(repo, [`run=${id}`]);
      await db.db
        .insertInto('platform_backups')
        .values({
          id,
          snapshot_id: snap!.id,
          location: repo.location,
          key_id: repo.keyId,
          size_bytes: '1',
          added_bytes: '1',
          duration_ms: 1,
          started_at: time,
        })
        .execute();
    }
    await parts.scheduleHandlers.retention!({ name: 'retention', firedAt: new Date(), backfilled: false });
    const left = await restic.snapshots(repo, ['kind=master']);
    const runs = left.map((s) => s.tags.find((t) => t.startsWith('run='))).sort();
    expect(runs).toEqual(['run=bkp_master_202603010200', 'run=bkp_old_4', 'run=bkp_old_5']);
    const kept = await db.db.selectFrom('platform_backups').select('id').orderBy('id').execute();
    expect(kept.map((r) => r.id)).toEqual(['bkp_master_202603010200', 'bkp_old_4', 'bkp_old_5']);
    await restic.call(repo, ['check']);

    // The listing reads the repository with the master key alone: no DATABASE_URL is given.
    const listed = await runCli(['backups', 'list', '--platform', '--json'], {
      AIQSO_DATA_DIR: dir,
      AIQSO_MASTER_KEY: masterKey,
    });
    expect(listed.code, listed.stderr).toBe(0);
    const out = JSON.parse(listed.stdout) as {
      repository: string;
      snapshots: { snapshot: string; run: string; key: string; time: string }[];
    };
    expect(out.repository).toBe(repo.location);
    expect(out.snapshots.map((s) => s.run)).toEqual(['bkp_master_202603010200', 'bkp_old_5', 'bkp_old_4']);
    expect(out.snapshots[0]).toMatchObject({ snapshot: rows[0]!.snapshot_id, key: repo.keyId });
    const table = await runCli(['backups', 'list', '--platform'], {
      AIQSO_DATA_DIR: dir,
      AIQSO_MASTER_KEY: masterKey,
    });
    expect(table.code).toBe(0);
    expect(table.stdout).toContain(rows[0]!.snapshot_id.slice(0, 8));
    // Refused clearly: no master key (exit 2), another key that opens no repository there (exit 3).
    const keyless = await runCli(['backups', 'list', '--platform'], { AIQSO_DATA_DIR: dir });
    expect(keyless.code).toBe(2);
    expect(keyless.stderr).toMatch(/no master key/);
    const otherKey = await runCli(['backups', 'list', '--platform'], {
      AIQSO_DATA_DIR: dir,
      AIQSO_MASTER_KEY: generateMasterKey(),
    });
    expect(otherKey.code).toBe(3);
    expect(otherKey.stderr).toMatch(/no platform repository/);
    await compute.close();
  });
});
