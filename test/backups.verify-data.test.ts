import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listArchiveFile } from '../src/backup/archive.ts';
import { repositoryKeys } from '../src/backup/repositories.ts';
import { Restic, type ResticRepository } from '../src/backup/restic.ts';
import { backupRunReconciler } from '../src/backup/run.ts';
import { verifiableTenants, verifyTenant, type VerifyDeps } from '../src/backup/verify.ts';
import { ProcessDriver } from '../src/compute/process/driver.ts';
import { WORKLOAD_PATH } from '../src/compute/shared/run.ts';
import { containerName } from '../src/core/compute.ts';
import { newId } from '../src/core/ids.ts';
import { createSecretBox, generateMasterKey, parseMasterKey } from '../src/identity/secrets.ts';
import { createLogger } from '../src/observability/logger.ts';
import { runSteps } from '../src/orchestrator/engine.ts';
import { appWorkload } from './support/compute-app.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';

/**
 * Verification of data snapshots, with real restic, PostgreSQL and a process
 * container: a backup run records its data archive's listing (entries, bytes
 * of regular files, as `tar` lists them); the verification dumps the archive
 * from restic into a streamed listing and compares; a recorded listing that
 * differs fails it with one alert. And `restic check` meeting the
 * repository locked: by a backup run of the platform under way, it waits
 * and passes (no alert); by a process that is no work of the platform's, it
 * fails, naming the lock.
 */
let db: TestDatabase;
let dir: string;
let admin: pg.Pool;
let compute: ProcessDriver;
const tenantId = newId('tenant');
const container = containerName(tenantId, 'files');

beforeAll(async () => {
  db = await createTestDatabase();
  dir = await mkdtemp(path.join(os.tmpdir(), 'aiqso-verify-data-'));
  admin = new pg.Pool({ connectionString: db.url, max: 2 });
  compute = await ProcessDriver.open({ root: path.join(dir, 'containers'), log: createLogger('silent') });
});
afterAll(async () => {
  await compute?.destroy(container).catch(() => undefined);
  await compute?.close();
  await admin.end();
  await db.drop();
  await rm(dir, { recursive: true, force: true });
});

/** `tar -tvzf` of the archive: its entries, and the bytes of its regular files. */
async function tarListing(file: string): Promise<{ files: number; bytes: number }> {
  const out = await new Promise<string>((resolve, reject) => {
    const c = spawn('tar', ['-tvzf', file], { stdio: ['ignore', 'pipe', 'inherit'] });
    let text = '';
    c.stdout.setEncoding('utf8').on('data', (d: string) => (text += d));
    c.on('close', (code) => (code === 0 ? resolve(text) : reject(new Error(`tar ${code}`))));
  });
  const lines = out.split('\n').filter(Boolean);
  const bytes = lines.filter((l) => l.startsWith('-')).reduce((sum, l) => sum + Number(l.split(/\s+/)[2]), 0);
  return { files: lines.length, bytes };
}

/** A real `restic backup --stdin` left waiting for its input: it holds a lock on the repository. */
async function holdLock(repo: ResticRepository): Promise<ChildProcess> {
  const child = spawn('restic', ['backup', '--stdin', '--stdin-filename', 'held', '--tag', 'held'], {
    env: {
      PATH: WORKLOAD_PATH,
      HOME: dir,
      RESTIC_REPOSITORY: repo.location,
      RESTIC_PASSWORD: repo.password,
      RESTIC_CACHE_DIR: path.join(dir, 'cache'),
    },
    stdio: ['pipe', 'ignore', 'ignore'],
  });
  const restic = new Restic({ cacheDir: path.join(dir, 'cache') });
  for (let i = 0; i < 100 && (await restic.locks(repo)).length === 0; i++)
    await new Promise((resolve) => setTimeout(resolve, 100));
  expect(await restic.locks(repo)).toHaveLength(1);
  return child;
}

const release = async (child: ChildProcess) => {
  child.stdin!.end('done\n');
  await new Promise((resolve) => child.on('close', resolve));
};

const alerts = () =>
  db.db
    .selectFrom('outbox')
    .select(['key', 'payload'])
    .where('kind', '=', 'alert')
    .where('key', 'like', 'alert:backup-verification-failed:%')
    .orderBy('id')
    .execute();

describe('verification of data snapshots', { timeout: 300_000 }, () => {
  it('lists the archive from restic against the listing recorded, and waits for a lock of our own work', async () => {
    await db.db
      .insertInto('tenants')
      .values({ id: tenantId, slug: 'filesco', company: 'Files Co' })
      .execute();
    const serviceId = newId('service');
    await db.db
      .insertInto('services')
      .values({ id: serviceId, key: 'files', name: 'Files', kind: 'app', template: '{}' })
      .execute();
    await db.db
      .insertInto('tenant_services')
      .values({
        id: newId('tenantService'),
        tenant_id: tenantId,
        service_id: serviceId,
        status: 'active',
        container_name: container,
      })
      .execute();
    await compute.ensure({
      name: container,
      tenantId,
      role: 'files',
      workload: appWorkload(),
      resources: { memoryMb: 192, cores: 1, diskGb: 1 },
      port: 3000,
      env: {},
    });
    // The workload's data: files of several sizes, a directory, a symlink.
    const made = await compute.exec(container, [
      'sh',
      '-c',
      'mkdir -p uploads/deep && head -c 70001 /dev/urandom > uploads/a.bin && printf hello > uploads/deep/b.txt && ln -sf a.bin uploads/link',
    ]);
    expect(made.exitCode).toBe(0);
    const expected = path.join(dir, 'expected.tar.gz');
    await compute.exportTo(container, expected);
    const listed = await tarListing(expected);
    expect(listed.bytes).toBeGreaterThanOrEqual(70006);
    // The streamed listing agrees with tar's own.
    expect(await listArchiveFile(expected)).toEqual(listed);

    const box = createSecretBox(parseMasterKey(generateMasterKey()));
    const keys = repositoryKeys(db.db, () => Promise.resolve(box), path.join(dir, 'repos'));
    const restic = new Restic({ cacheDir: path.join(dir, 'cache') });
    const url = new URL(db.url);
    const runId = `run_${tenantId.slice(4)}_data`;
    await runSteps({
      reconciler: backupRunReconciler({
        db: db.db,
        restic,
        keys,
        compute,
        dbLocal: { host: url.hostname, port: Number(url.port || 5432) },
        rootSecret: () => Promise.resolve('unused'),
        stagingDir: path.join(dir, 'staging'),
        host: 'aiqso',
      }),
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
    const data = await db.db
      .selectFrom('backups')
      .selectAll()
      .where('run_id', '=', runId)
      .where('kind', '=', 'data')
      .executeTakeFirstOrThrow();
    // Recorded as tar lists the archive the run stored.
    expect({ files: data.archive_files, bytes: Number(data.archive_bytes) }).toEqual(listed);
    expect(data.archive_volume).toBeNull();
    // A tenant with a data snapshot and no database is verifiable.
    expect(await verifiableTenants(db.db)).toEqual([{ id: tenantId, slug: 'filesco' }]);

    const deps: VerifyDeps = {
      db: db.db,
      restic,
      keys,
      server: { pool: admin, url: db.url },
      readDataPercent: 100,
      lockPollMs: 200,
      lockWaitMs: 60_000,
    };
    const passed = await verifyTenant(deps, tenantId);
    expect(passed).toMatchObject({ status: 'passed', error: null, rtoMs: null });
    expect(passed.snapshots).toEqual([
      expect.objectContaining({
        service: 'files',
        kind: 'data',
        snapshot: data.snapshot_id,
        ok: true,
        files: listed.files,
        bytes: listed.bytes,
      }),
    ]);
    expect(passed.snapshots[0]!.checkMs).toBeGreaterThanOrEqual(0);
    const marked = await db.db
      .selectFrom('backups')
      .select('verified_at')
      .where('id', '=', data.id)
      .executeTakeFirstOrThrow();
    expect(marked.verified_at).toBeInstanceOf(Date);
    expect(await alerts()).toEqual([]);

    // The recorded listing no longer matches the archive: failed, with one alert naming both.
    await db.db
      .updateTable('backups')
      .set({ archive_files: listed.files + 1 })
      .where('id', '=', data.id)
      .execute();
    const mismatch = await verifyTenant(deps, tenantId);
    expect(mismatch.status).toBe('failed');
    expect(mismatch.error).toContain(
      `files data snapshot ${data.snapshot_id!.slice(0, 8)}: the archive lists ${listed.files} entries and ${listed.bytes} bytes, ${listed.files + 1} entries and ${listed.bytes} bytes recorded`,
    );
    let mails = await alerts();
    expect(mails).toHaveLength(1);
    expect(JSON.stringify(mails[0]!.payload)).toContain(`${listed.files + 1} entries`);
    await db.db
      .updateTable('backups')
      .set({ archive_files: listed.files })
      .where('id', '=', data.id)
      .execute();

    // A backup run of ours holds the repository when the check runs: the check waits for it.
    const repo = await keys.forTenant(tenantId);
    const runResource = `run_${tenantId.slice(4)}_busy`;
    await db.db
      .insertInto('resources')
      .values({
        kind: 'backup-run',
        id: runResource,
        tenant_id: tenantId,
        spec: JSON.stringify({ tenantId, purpose: 'manual' }),
        phase: 'reconciling',
        steps: JSON.stringify([]),
      })
      .execute();
    const held = await holdLock(repo);
    const started = Date.now();
    const releasing = new Promise<void>((resolve) =>
      setTimeout(() => {
        void (async () => {
          await release(held);
          await db.db
            .updateTable('resources')
            .set({ phase: 'ready' })
            .where('id', '=', runResource)
            .execute();
          resolve();
        })();
      }, 3000),
    );
    const waited = await verifyTenant(deps, tenantId);
    await releasing;
    expect(waited).toMatchObject({ status: 'passed', error: null });
    expect(Date.now() - started).toBeGreaterThanOrEqual(3000);
    expect(await alerts()).toHaveLength(1);

    // A lock no work of the platform's holds (and restic does not consider stale): a failure naming it.
    const foreign = await holdLock(repo);
    try {
      const locked = await verifyTenant(deps, tenantId);
      expect(locked.status).toBe('failed');
      expect(locked.error).toMatch(/restic check --read-data-subset=100%: .*repository is (already )?locked/);
      // The data snapshots themselves are read without a lock and still check out.
      expect(locked.snapshots.every((s) => s.ok)).toBe(true);
    } finally {
      await release(foreign);
    }
    mails = await alerts();
    expect(mails).toHaveLength(2);
  });
});
