import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTenantExport } from '../src/backup/export.ts';
import { repositoryKeys } from '../src/backup/repositories.ts';
import { requestServiceRestore } from '../src/backup/requests.ts';
import { serviceRestoreReconciler } from '../src/backup/restore.ts';
import { Restic } from '../src/backup/restic.ts';
import { applyRetention } from '../src/backup/retention.ts';
import { backupRunReconciler } from '../src/backup/run.ts';
import { verifyTenant, type VerifyDeps } from '../src/backup/verify.ts';
import { ProxmoxDriver } from '../src/compute/proxmox/driver.ts';
import { containerName, type ContainerSpec } from '../src/core/compute.ts';
import { newId } from '../src/core/ids.ts';
import type { Reconciler } from '../src/core/reconcile.ts';
import { createSecretBox, generateMasterKey, parseMasterKey } from '../src/identity/secrets.ts';
import { finishPurge } from '../src/lifecycle/purge.ts';
import { createLogger } from '../src/observability/logger.ts';
import { runSteps } from '../src/orchestrator/engine.ts';
import {
  dropServiceDatabase,
  ensureServiceDatabase,
  serviceDatabaseName,
} from '../src/services/databases.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import { startProxmoxSimulator, type ProxmoxSimulator } from './support/proxmox-sim/server.ts';

/**
 * Backups and restores of a tenant's service on the Proxmox driver, against
 * the simulator (which checks every request against the Proxmox VE API
 * schema) with real restic and PostgreSQL. The container's data is a vzdump
 * archive on the backup storage; the data snapshot holds the manifest naming
 * it, and the `backups` row records `<node>/<volid>`. Its database is backed
 * up as on every driver. Then: the verification finds the archive (and
 * fails, with one alert, once it is gone); a restore of a snapshot whose
 * archive is gone is refused before anything changes; a restore brings the
 * guest back from its archive (restore=1) and the database from restic;
 * retention deletes the archives of the snapshots it forgets; a purge deletes
 * the rest and records them.
 *
 * Not exercised here: the restore's health check (the simulator's cloned
 * guests run no workload to answer it; the live restore tests cover it on
 * the process driver).
 */
let sim: ProxmoxSimulator;
let db: TestDatabase;
let dir: string;
let admin: pg.Pool;
let driver: ProxmoxDriver;
const log = createLogger('silent');
const tenantId = newId('tenant');
const notes = { name: serviceDatabaseName(tenantId, 'notes'), role: serviceDatabaseName(tenantId, 'notes') };
const password = 'notes-role-password-for-the-test';
const DAY = 86_400_000;

beforeAll(async () => {
  sim = await startProxmoxSimulator();
  db = await createTestDatabase();
  dir = await mkdtemp(path.join(os.tmpdir(), 'aiqso-backup-pve-'));
  admin = new pg.Pool({ connectionString: db.url, max: 2 });
  const c = sim.cluster;
  c.addNode('pve1', 64, 16);
  c.storages.set('ceph', { id: 'ceph', linkedClones: true, shared: true });
  // The backup storage is a node's own disk: its archives are seen from that node only.
  c.storages.set('local', { id: 'local', linkedClones: false, shared: false });
  c.addTemplate(9000, 'pve1', 'ceph');
  driver = new ProxmoxDriver({
    db: db.db,
    log,
    api: {
      url: sim.url,
      tokenId: sim.tokenId,
      tokenSecret: sim.tokenSecret,
      caFile: sim.certFile,
      taskPollMs: 10,
    },
    storage: 'ceph',
    backupStorage: 'local',
    templateStorage: 'local',
    bridge: 'vmbr1',
    subnet: '10.10.10.0/24',
    vmidRange: [10000, 10999],
  });
});

afterAll(async () => {
  await driver?.close();
  await dropServiceDatabase(admin, notes).catch(() => undefined);
  await admin.end();
  await sim.close();
  await db.drop();
  await rm(dir, { recursive: true, force: true });
});

const run = <S>(reconciler: Reconciler<S>, kind: string, id: string, spec: S) =>
  runSteps({
    reconciler,
    target: { kind, id, tenantId, spec, generation: 1 },
    deleting: false,
    previous: [],
    converged: false,
    signal: new AbortController().signal,
    onProgress: () => Promise.resolve(),
  });

describe('backups on the proxmox driver', { timeout: 300_000 }, () => {
  it('stores the vzdump archive by reference, restores from it, and deletes it with retention and purge', async () => {
    const url = new URL(db.url);
    await db.db.insertInto('tenants').values({ id: tenantId, slug: 'pveco', company: 'PVE Co' }).execute();
    const serviceId = newId('service');
    await db.db
      .insertInto('services')
      .values({ id: serviceId, key: 'notes', name: 'Notes', kind: 'app', template: '{}' })
      .execute();
    await ensureServiceDatabase(admin, { ...notes, password });
    const serviceDb = new pg.Pool({
      host: url.hostname,
      port: Number(url.port || 5432),
      user: notes.role,
      password,
      database: notes.name,
      max: 1,
    });
    // Its connection ends when the database is dropped after a failed run.
    serviceDb.on('error', () => undefined);
    const count = async () =>
      Number((await serviceDb.query<{ n: string }>('SELECT count(*) AS n FROM drafts')).rows[0]!.n);
    await serviceDb.query(
      `CREATE TABLE drafts (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body text)`,
    );
    await serviceDb.query(`INSERT INTO drafts (body) VALUES ('one'), ('two'), ('three')`);
    const spec: ContainerSpec = {
      name: containerName(tenantId, 'notes'),
      tenantId,
      role: 'notes',
      workload: { kind: 'clone', template: '9000' },
      resources: { memoryMb: 256, cores: 1, diskGb: 2 },
      port: 3000,
      env: { APP_NAME: 'notes' },
    };
    const tsId = newId('tenantService');
    await db.db
      .insertInto('tenant_services')
      .values({
        id: tsId,
        tenant_id: tenantId,
        service_id: serviceId,
        status: 'active',
        container_name: spec.name,
        db_name: notes.name,
        db_role: notes.role,
      })
      .execute();
    await driver.ensure(spec);
    await driver.start(spec.name);
    const guest = async () => {
      const vm = await driver.find(spec.name);
      return sim.cluster.guests.get(vm!.vmid)!;
    };
    // A mark in the guest's configuration that only its archive carries back.
    (await guest()).config.timezone = 'first';

    const box = createSecretBox(parseMasterKey(generateMasterKey()));
    const keys = repositoryKeys(db.db, () => Promise.resolve(box), path.join(dir, 'repos'));
    const restic = new Restic({ cacheDir: path.join(dir, 'cache') });
    const backupRun = backupRunReconciler({
      db: db.db,
      restic,
      keys,
      compute: driver,
      dbLocal: { host: url.hostname, port: Number(url.port || 5432) },
      rootSecret: () => Promise.resolve(password),
      stagingDir: path.join(dir, 'staging'),
      host: 'aiqso',
    });
    const backup = async (id: string, time: Date) => {
      await run(backupRun, 'backup-run', id, {
        tenantId,
        purpose: 'manual' as const,
        time: time.toISOString(),
      });
      return db.db
        .selectFrom('backups')
        .selectAll()
        .where('run_id', '=', id)
        .orderBy('kind', 'desc')
        .execute();
    };
    const now = Date.now();
    const run1 = `run_${tenantId.slice(4)}_one`;
    const [db1, data1] = await backup(run1, new Date(now - 3 * DAY));
    // The database as on every driver: pg_dump into restic, with its row counts.
    expect(db1).toMatchObject({ kind: 'database', service: 'notes', row_counts: { 'public.drafts': 3 } });
    // The data: the vzdump archive, recorded by reference on the node whose storage holds it.
    expect(data1).toMatchObject({ kind: 'data', service: 'notes', archive_files: null, archive_bytes: null });
    expect(data1!.archive_volume).toMatch(/^pve1\/local:backup\/vzdump-lxc-\d+-[\d_-]+\.tar\.zst$/);
    const volid1 = data1!.archive_volume!.slice('pve1/'.length);
    expect(sim.cluster.backups.map((b) => b.volid)).toEqual([volid1]);
    const vzdumps = sim.requests.filter((r) => r.path === '/nodes/pve1/vzdump');
    expect(vzdumps.map((r) => [r.method, r.status])).toEqual([['POST', 200]]);
    expect(vzdumps[0]!.params).toMatchObject({ storage: 'local', mode: 'snapshot', compress: 'zstd' });
    // The snapshot in restic holds the manifest naming the archive, nothing of the guest's files.
    const manifest: Buffer[] = [];
    const { Writable } = await import('node:stream');
    await restic.dump(
      await keys.forTenant(tenantId),
      data1!.snapshot_id!,
      '/data.tar.gz',
      new Writable({
        write(chunk: Buffer, _e, cb) {
          manifest.push(chunk);
          cb();
        },
      }),
    );
    expect(JSON.parse(Buffer.concat(manifest).toString())).toMatchObject({
      driver: 'proxmox',
      volid: volid1,
    });

    // Vzdump names archives by the second: the next run's is another file.
    await new Promise((resolve) => setTimeout(resolve, 1100));
    (await guest()).config.timezone = 'second';
    await serviceDb.query(`INSERT INTO drafts (body) VALUES ('four')`);
    const run2 = `run_${tenantId.slice(4)}_two`;
    const [db2, data2] = await backup(run2, new Date(now - 2 * DAY));
    expect(db2!.row_counts).toEqual({ 'public.drafts': 4 });
    const volid2 = data2!.archive_volume!.slice('pve1/'.length);
    expect(volid2).not.toBe(volid1);

    const verifyDeps: VerifyDeps = {
      db: db.db,
      restic,
      keys,
      server: { pool: admin, url: db.url },
      readDataPercent: 100,
      compute: driver,
    };
    const passed = await verifyTenant(verifyDeps, tenantId);
    expect(passed).toMatchObject({ status: 'passed', error: null });
    expect(passed.snapshots).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          kind: 'data',
          snapshot: data2!.snapshot_id,
          volume: data2!.archive_volume,
          ok: true,
        }),
        expect.objectContaining({ kind: 'database', snapshot: db2!.snapshot_id, ok: true }),
      ]),
    );

    // The second archive is deleted on the storage behind the platform's back.
    sim.cluster.backups.splice(
      sim.cluster.backups.findIndex((b) => b.volid === volid2),
      1,
    );
    const missing = await verifyTenant(verifyDeps, tenantId);
    expect(missing.status).toBe('failed');
    expect(missing.error).toContain(
      `notes data snapshot ${data2!.snapshot_id!.slice(0, 8)}: its archive ${data2!.archive_volume} is no longer on the storage`,
    );
    const alerts = await db.db
      .selectFrom('outbox')
      .select('key')
      .where('kind', '=', 'alert')
      .where('key', 'like', 'alert:backup-verification-failed:%')
      .execute();
    expect(alerts).toEqual([{ key: `alert:backup-verification-failed:${missing.id}` }]);

    const restoreRec = serviceRestoreReconciler({
      db: db.db,
      restic,
      keys,
      compute: driver,
      dbLocal: { host: url.hostname, port: Number(url.port || 5432) },
      rootSecret: () => Promise.resolve(password),
      admin,
      containerSpec: () => Promise.resolve(spec),
      stagingDir: path.join(dir, 'staging'),
      backupRun,
    });
    // The simulator's cloned guests run no workload: everything but the health check runs.
    const restore = { ...restoreRec, steps: restoreRec.steps.filter((s) => s.name !== 'health check') };

    // A restore of the snapshot whose archive is gone: refused at its first step, nothing changed.
    await serviceDb.query(`INSERT INTO drafts (body) VALUES ('five')`);
    (await guest()).config.timezone = 'current';
    const archivesBefore = sim.cluster.backups.length;
    const requestsBefore = sim.requests.length;
    const refused = await requestServiceRestore(
      db.db,
      { restic, keys },
      { tenantId, service: 'notes', snapshot: db2!.snapshot_id!, requestedBy: null },
    );
    expect(refused.dataSnapshot).toBe(data2!.snapshot_id);
    const failure = await run(restore, 'service-restore', refused.restoreId, {
      restoreId: refused.restoreId,
    }).then(
      () => null,
      (err: unknown) => err as Error & { code?: string; retryable?: boolean },
    );
    expect(failure?.message).toContain(
      `the data snapshot ${data2!.snapshot_id!.slice(0, 8)} of notes names the archive ${data2!.archive_volume}, which is no longer on the storage; nothing was changed`,
    );
    // Refused for good, not retried: the engine gives the restore up at once.
    expect((failure?.cause as { retryable?: boolean } | undefined)?.retryable).toBe(false);
    expect(await count()).toBe(5);
    expect((await guest()).config.timezone).toBe('current');
    expect((await guest()).status).toBe('running');
    expect(sim.cluster.backups).toHaveLength(archivesBefore);
    // Nothing but looks: no vzdump (no safety snapshot), no stop, no restore.
    expect(sim.requests.slice(requestsBefore).filter((r) => r.method !== 'GET')).toEqual([]);
    await db.db.transaction().execute((trx) =>
      restoreRec.onFailed!(
        {
          id: refused.restoreId,
          tenantId,
          spec: { restoreId: refused.restoreId },
          error: failure!.message,
        },
        trx,
      ),
    );
    const refusedRow = await db.db
      .selectFrom('restores')
      .select(['status', 'steps_done', 'error'])
      .where('id', '=', refused.restoreId)
      .executeTakeFirstOrThrow();
    expect(refusedRow).toMatchObject({ status: 'failed', steps_done: [] });
    expect(refusedRow.error).toContain('is no longer on the storage; nothing was changed');

    // A restore of the first run: the guest from its archive (restore=1), the database from restic.
    const restored = await requestServiceRestore(
      db.db,
      { restic, keys },
      { tenantId, service: 'notes', snapshot: db1!.snapshot_id!, requestedBy: null },
    );
    const beforeRestore = sim.requests.length;
    await run(restore, 'service-restore', restored.restoreId, { restoreId: restored.restoreId });
    const restoreCalls = sim.requests
      .slice(beforeRestore)
      .filter((r) => r.method === 'POST' && r.path === '/nodes/pve1/lxc');
    expect(restoreCalls.map((r) => r.status)).toEqual([200]);
    expect(restoreCalls[0]!.params).toMatchObject({
      ostemplate: volid1,
      restore: '1',
      force: '1',
      unprivileged: '1',
    });
    expect((await guest()).config.timezone).toBe('first');
    expect((await guest()).status).toBe('running');
    expect(await count()).toBe(3);
    const done = await db.db
      .selectFrom('restores')
      .select(['status', 'safety_run_id'])
      .where('id', '=', restored.restoreId)
      .executeTakeFirstOrThrow();
    expect(done.status).toBe('done');
    // Its safety snapshot is a vzdump of the guest as it was, recorded like any other.
    const safety = await db.db
      .selectFrom('backups')
      .select(['archive_volume', 'snapshot_id'])
      .where('run_id', '=', done.safety_run_id)
      .where('kind', '=', 'data')
      .executeTakeFirstOrThrow();
    const safetyVolid = safety.archive_volume!.slice('pve1/'.length);
    expect(sim.cluster.backups.map((b) => b.volid).sort()).toEqual([volid1, safetyVolid].sort());

    // Retention keeping one day: the two runs' snapshots are forgotten, and with them the first
    // run's archive (the second's is already gone); the safety snapshot's stays.
    const beforeRetention = sim.requests.length;
    expect(
      await applyRetention({ db: db.db, restic, keys, compute: driver }, tenantId, {
        daily: 1,
        weekly: 0,
        monthly: 0,
      }),
    ).toBe(4);
    expect(sim.cluster.backups.map((b) => b.volid)).toEqual([safetyVolid]);
    const deletes = sim.requests.slice(beforeRetention).filter((r) => r.method === 'DELETE');
    expect(deletes).toEqual([
      expect.objectContaining({
        path: `/nodes/pve1/storage/local/content/${encodeURIComponent(volid1)}`,
        status: 200,
      }),
    ]);
    // The simulator holds the DELETE to the API's contract: a volume that is not there fails it, a
    // parameter out of range is refused; the driver's removal of one already gone is no error.
    const gone = `/nodes/pve1/storage/local/content/${encodeURIComponent(volid2)}`;
    await expect(driver.api.call('DELETE', gone)).rejects.toThrow(/does not exist/);
    await expect(driver.api.call('DELETE', gone, { delay: 99 })).rejects.toThrow(/delay/);
    expect(await driver.exportVolumes.remove(data2!.archive_volume!)).toBe(false);
    const left = await db.db
      .selectFrom('backups')
      .select('run_id')
      .where('tenant_id', '=', tenantId)
      .where('run_id', 'in', [run1, run2])
      .execute();
    expect(left).toEqual([]);

    // A data export holds the database and says the container's files are not in it, rather than a
    // note naming a vzdump archive on the cluster that nobody would ever delete.
    const volumesBeforeExport = sim.cluster.backups.map((b) => b.volid);
    const exported = await buildTenantExport(
      {
        db: db.db,
        compute: driver,
        dbLocal: { host: url.hostname, port: Number(url.port || 5432) },
        rootSecret: () => Promise.resolve(password),
      },
      tenantId,
      path.join(dir, 'export.tar.gz'),
    );
    expect(exported.manifest.files.map((f) => f.path)).toContain('services/notes/database.dump');
    expect(exported.manifest.files.map((f) => f.path)).not.toContain('services/notes/data.tar.gz');
    expect(exported.manifest.omitted?.map((o) => o.path)).toEqual(['services/notes/data.tar.gz']);
    expect(exported.manifest.omitted?.[0]?.reason).toMatch(/vzdump/);
    expect(sim.cluster.backups.map((b) => b.volid)).toEqual(volumesBeforeExport);

    // The purge deletes the archives that remain (the tenant's restic key does not cover them).
    await serviceDb.end();
    await finishPurge(db.db, tenantId, [], { compute: driver });
    expect(sim.cluster.backups).toEqual([]);
    const audit = await db.db
      .selectFrom('audit_log')
      .select('details')
      .where('tenant_id', '=', tenantId)
      .where('action', '=', 'tenant.purged')
      .executeTakeFirstOrThrow();
    expect(audit.details).toMatchObject({
      removed: {
        backupRepository: { keyDestroyed: true },
        driverArchives: { removed: [safety.archive_volume], left: [] },
      },
    });
  });
});
