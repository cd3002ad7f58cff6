import { chmod, mkdtemp, open, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { repositoryKeys } from '../src/backup/repositories.ts';
import { Restic } from '../src/backup/restic.ts';
import { backupRunReconciler } from '../src/backup/run.ts';
import {
  scratchDatabaseName,
  verifiableTenants,
  verificationId,
  verifyTenant,
  verifyTenants,
  type VerifyDeps,
} from '../src/backup/verify.ts';
import { ProcessDriver } from '../src/compute/process/driver.ts';
import { newId } from '../src/core/ids.ts';
import { createSecretBox, generateMasterKey, parseMasterKey } from '../src/identity/secrets.ts';
import { filesMailer } from '../src/mail/files.ts';
import { createLogger } from '../src/observability/logger.ts';
import { runSteps } from '../src/orchestrator/engine.ts';
import { alertHandler } from '../src/orchestrator/mail-handlers.ts';
import {
  ensureServiceDatabase,
  dropServiceDatabase,
  serviceDatabaseName,
} from '../src/services/databases.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';

/**
 * Restore verification against real PostgreSQL and restic: a tenant's Notes
 * database (its own database and role, the drafts table the Notes app
 * creates) is backed up by a backup run; the verification restores the
 * latest snapshot into a scratch database, finds the recorded row counts and
 * a clean repository, records the RTO and marks the snapshot verified. A
 * scratch database left by a killed verification is dropped first. Then two
 * kinds of tampering each fail the verification and mail the admins exactly
 * once: a recorded row count that no longer matches, and the repository's
 * pack files damaged.
 */
let db: TestDatabase;
let dir: string;
let admin: pg.Pool;
const tenantId = newId('tenant');
const notes = { name: serviceDatabaseName(tenantId, 'notes'), role: serviceDatabaseName(tenantId, 'notes') };
const password = 'notes-role-password-for-the-test';

beforeAll(async () => {
  db = await createTestDatabase();
  dir = await mkdtemp(path.join(os.tmpdir(), 'aiqso-backup-verify-'));
  admin = new pg.Pool({ connectionString: db.url, max: 2 });
});
afterAll(async () => {
  await dropServiceDatabase(admin, notes).catch(() => undefined);
  await admin.end();
  await db.drop();
  await rm(dir, { recursive: true, force: true });
});

async function scratchDatabases(): Promise<string[]> {
  const { rows } = await admin.query<{ datname: string }>(
    `SELECT datname FROM pg_database WHERE datname LIKE 'aiqso\\_verify\\_%' AND datname LIKE $1`,
    [`%${tenantId.slice(4)}%`],
  );
  return rows.map((r) => r.datname);
}

/** Deliver the pending alerts as the outbox worker does: the real alert handler, mail written to files. */
async function deliverAlerts(mailDir: string): Promise<string[]> {
  const handler = alertHandler(filesMailer(mailDir), { address: 'aiqso@localhost' }, 'admin@localhost');
  const pending = await db.db
    .selectFrom('outbox')
    .select(['id', 'key', 'kind', 'payload'])
    .where('kind', '=', 'alert')
    .where('status', '=', 'pending')
    .execute();
  for (const item of pending)
    await db.db.transaction().execute(async (trx) => {
      await handler({ key: item.key, kind: item.kind, payload: item.payload }, trx);
      await trx.updateTable('outbox').set({ status: 'delivered' }).where('id', '=', item.id).execute();
    });
  const files = (await readdir(mailDir).catch(() => [])).filter((f) => !f.endsWith('.tmp'));
  // The bodies are quoted-printable: undo its soft line breaks to read the text.
  const read = async (f: string) => (await readFile(path.join(mailDir, f), 'utf8')).replace(/=\r?\n/g, '');
  return Promise.all(files.sort().map(read));
}

describe('restore verification of backups', { timeout: 300_000 }, () => {
  it('passes for an intact backup (RTO recorded), fails once per tampering with one alert mail each', async () => {
    await db.db
      .insertInto('tenants')
      .values({ id: tenantId, slug: 'verifyco', company: 'Verify Co' })
      .execute();
    const serviceId = newId('service');
    await db.db
      .insertInto('services')
      .values({ id: serviceId, key: 'notes', name: 'Notes', kind: 'app', template: '{}' })
      .execute();
    await ensureServiceDatabase(admin, { ...notes, password });
    const url = new URL(db.url);
    const serviceDb = new pg.Pool({
      host: url.hostname,
      port: Number(url.port || 5432),
      user: notes.role,
      password,
      database: notes.name,
      max: 1,
    });
    await serviceDb.query(`CREATE TABLE drafts (
      id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, kind text NOT NULL, body text NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now(), author_id text, author_email text)`);
    await serviceDb.query(
      `INSERT INTO drafts (kind, body) VALUES ('note', 'first note'), ('note', 'second note'), ('note', 'third')`,
    );
    await serviceDb.end();
    const tsId = newId('tenantService');
    await db.db
      .insertInto('tenant_services')
      .values({
        id: tsId,
        tenant_id: tenantId,
        service_id: serviceId,
        status: 'active',
        db_name: notes.name,
        db_role: notes.role,
      })
      .execute();

    const box = createSecretBox(parseMasterKey(generateMasterKey()));
    const keys = repositoryKeys(db.db, () => Promise.resolve(box), path.join(dir, 'repos'));
    const restic = new Restic({ cacheDir: path.join(dir, 'cache') });
    const compute = await ProcessDriver.open({
      root: path.join(dir, 'containers'),
      log: createLogger('silent'),
    });
    const runId = `run_${tenantId.slice(4)}_verify`;
    try {
      await runSteps({
        reconciler: backupRunReconciler({
          db: db.db,
          restic,
          keys,
          compute,
          dbLocal: { host: url.hostname, port: Number(url.port || 5432) },
          rootSecret: () => Promise.resolve(password),
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
    } finally {
      await compute.close();
    }
    const backup = await db.db
      .selectFrom('backups')
      .selectAll()
      .where('run_id', '=', runId)
      .where('kind', '=', 'database')
      .executeTakeFirstOrThrow();
    expect(backup.row_counts).toEqual({ 'public.drafts': 3 });
    expect(backup.verified_at).toBeNull();

    const deps: VerifyDeps = {
      db: db.db,
      restic,
      keys,
      server: { pool: admin, url: db.url },
      readDataPercent: 100,
    };
    expect(await verifiableTenants(db.db)).toEqual([{ id: tenantId, slug: 'verifyco' }]);

    // A scratch database a killed verification left behind (holding a copy of the tenant's data).
    const leftover = scratchDatabaseName(tenantId, 'notes');
    await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(leftover)}`);
    expect(await scratchDatabases()).toEqual([leftover]);

    const passed = await verifyTenant(deps, tenantId);
    expect(passed).toMatchObject({ status: 'passed', error: null, recorded: true });
    expect(passed.snapshots).toHaveLength(1);
    expect(passed.snapshots[0]).toMatchObject({ service: 'notes', snapshot: backup.snapshot_id, ok: true });
    expect(passed.rtoMs).toBe(passed.snapshots[0]!.restoreMs);
    expect(passed.rtoMs).toBeGreaterThan(0);
    expect(await scratchDatabases()).toEqual([]);
    const verified = await db.db
      .selectFrom('backups')
      .select(['verified_at', 'restore_ms'])
      .where('id', '=', backup.id)
      .executeTakeFirstOrThrow();
    expect(verified.verified_at).toBeInstanceOf(Date);
    expect(verified.restore_ms).toBe(passed.rtoMs);
    const record = await db.db
      .selectFrom('backup_verifications')
      .selectAll()
      .where('id', '=', passed.id)
      .executeTakeFirstOrThrow();
    expect(record).toMatchObject({ status: 'passed', rto_ms: passed.rtoMs, read_data_percent: 100 });
    const mailDir = path.join(dir, 'mail');
    expect(await deliverAlerts(mailDir)).toEqual([]);

    // Tampering 1: the recorded row count no longer matches what the dump holds.
    await db.db
      .updateTable('backups')
      .set({ row_counts: JSON.stringify({ 'public.drafts': 4 }) })
      .where('id', '=', backup.id)
      .execute();
    const firedAt = new Date('2026-12-06T05:00:00Z');
    const [counts] = await verifyTenants(deps, [{ id: tenantId }], firedAt);
    expect(counts).toMatchObject({ id: verificationId(tenantId, firedAt), status: 'failed', recorded: true });
    expect(counts!.error).toMatch(
      /notes snapshot [0-9a-f]{8}: row counts differ: public\.drafts has 3 rows, 4 recorded/,
    );
    expect(await scratchDatabases()).toEqual([]);
    // The same firing run again (a retried job) records and alerts nothing more.
    const [again] = await verifyTenants(deps, [{ id: tenantId }], firedAt);
    expect(again).toMatchObject({ id: counts!.id, status: 'failed', recorded: false });
    let mails = await deliverAlerts(mailDir);
    expect(mails).toHaveLength(1);
    expect(mails[0]).toMatch(/To: admin@localhost/);
    expect(mails[0]).toMatch(/Subject: \[aiqso alert\] backup verification of verifyco failed/);
    expect(mails[0]).toMatch(/public\.drafts has 3 rows, 4 recorded/);

    // Tampering 2: the row counts put right, but the repository's pack files damaged (bytes
    // overwritten: restic finds the content no longer matches its hash).
    await db.db
      .updateTable('backups')
      .set({ row_counts: JSON.stringify({ 'public.drafts': 3 }) })
      .where('id', '=', backup.id)
      .execute();
    const repo = await keys.forTenant(tenantId);
    const dataDir = path.join(repo.location, 'data');
    const packs: string[] = [];
    for (const sub of await readdir(dataDir))
      for (const f of await readdir(path.join(dataDir, sub))) packs.push(path.join(dataDir, sub, f));
    expect(packs.length).toBeGreaterThan(0);
    for (const p of packs) {
      await chmod(p, 0o600);
      const f = await open(p, 'r+');
      await f.write(Buffer.alloc(32, 0x5a), 0, 32, 40);
      await f.close();
    }
    const broken = await verifyTenant(deps, tenantId);
    expect(broken).toMatchObject({ status: 'failed', recorded: true, rtoMs: null });
    expect(broken.error).toMatch(/notes snapshot [0-9a-f]{8}: restore failed: restic dump/);
    expect(broken.error).toMatch(/restic check --read-data-subset=100%/);
    expect(await scratchDatabases()).toEqual([]);
    mails = await deliverAlerts(mailDir);
    expect(mails).toHaveLength(2);
    const second = mails.filter((m) => !m.includes('4 recorded'));
    expect(second).toHaveLength(1);
    expect(second[0]).toMatch(/backup verification of verifyco failed/);
    expect(second[0]).toMatch(/restic check/);
    const outcomes = await db.db
      .selectFrom('backup_verifications')
      .select('status')
      .where('tenant_id', '=', tenantId)
      .orderBy('started_at')
      .execute();
    expect(outcomes.map((o) => o.status)).toEqual(['passed', 'failed', 'failed']);
  });
});
