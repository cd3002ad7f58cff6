import { Writable } from 'node:stream';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { sql } from 'kysely';
import pg from 'pg';
import { spawnTool, WORKLOAD_PATH } from '../compute/shared/run.ts';
import { DomainError } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import type { Database } from '../db/database.ts';
import type { VerifiedSnapshot } from '../db/tables.ts';
import { writeOutbox } from '../orchestrator/outbox.ts';
import { findPgDump } from '../services/final-backup.ts';
import type { ComputeDriver } from '../core/compute.ts';
import { archiveLister, type ArchiveListing } from './archive.ts';
import { DUMP_FILE, rowCounts } from './database.ts';
import { RETENTION_LOCK_NS } from './retention.ts';
import { SERVICE_RESTORE_KIND } from './restore.ts';
import { unreapedProcesses } from './locks.ts';
import { BACKUP_RUN_KIND, DATA_FILE } from './run.ts';
import type { RepositoryKeys } from './repositories.ts';
import type { Restic, ResticRepository } from './restic.ts';

/**
 * Restore verification: a backup counts only once it has been restored. For
 * each tenant, the latest database snapshot of every service is streamed out
 * of restic into a scratch database (`restic dump` into `pg_restore`), whose
 * tables must hold exactly the row counts recorded when the snapshot was
 * taken. The latest data snapshot of every service is checked without
 * unpacking it: its tar archive streamed out of restic must list the entries
 * and bytes recorded when it was stored, or (an archive kept on the compute
 * driver's storage, Proxmox vzdump) its manifest must name the recorded
 * volume and the volume must still be there. Then `restic check
 * --read-data-subset=<n>%` reads a sample of the repository's data back and
 * checks it, waiting while the platform's own backup, restore or retention
 * holds the repository's lock. The time the database restores took is the
 * tenant's measured RTO. Each verification is recorded in
 * `backup_verifications`; a failed one mails the platform admins once (an
 * `alert` outbox item written in the transaction that records it).
 *
 * Scratch databases have deterministic names (`aiqso_verify_<tenant>_<hash of
 * the service>`), are closed to PUBLIC before anything is restored into them,
 * are dropped when done, and any left by a verification killed half-way are
 * dropped by the next verification of that tenant before it starts.
 */
export interface VerifyDeps {
  db: Database;
  restic: Restic;
  keys: RepositoryKeys;
  /** The platform's own connection to the database server: it creates and drops the scratch databases. */
  server: { pool: pg.Pool; url: string };
  /** How much of the repository's data `restic check` reads back, in percent (1–100). */
  readDataPercent: number;
  /** The compute driver whose data archives stay on its storage (their volumes are looked for). */
  compute?: Pick<ComputeDriver, 'exportVolumes'>;
  /**
   * How long `restic check` waits for the repository while a backup run, restore or retention
   * of the platform holds it (default 2 hours), and how often it looks again (default 5 s).
   */
  lockWaitMs?: number;
  lockPollMs?: number;
}

export interface VerificationResult {
  id: string;
  tenantId: string;
  status: 'passed' | 'failed';
  rtoMs: number | null;
  snapshots: VerifiedSnapshot[];
  error: string | null;
  /** False when this id was recorded before (a schedule firing seen twice): nothing was redone. */
  recorded: boolean;
}

/** The scratch database a verification restores a tenant's service into. */
export function scratchDatabaseName(tenantId: string, service: string): string {
  const hash = createHash('sha256').update(service).digest('hex').slice(0, 8);
  return `${scratchPrefix(tenantId)}${hash}`;
}

const scratchPrefix = (tenantId: string): string => {
  const body = tenantId.replace(/^ten_/, '');
  if (!/^[0-9a-z]{26}$/.test(body)) throw new Error(`not a tenant id: ${tenantId}`);
  return `aiqso_verify_${body}_`;
};

/** A verification id: derived from the schedule's firing (one per tenant and firing), random otherwise. */
export function verificationId(tenantId: string, firedAt?: Date): string {
  if (!firedAt) return newId('verification');
  const body = tenantId.replace(/^ten_/, '');
  return `bvf_${body}_${firedAt.toISOString().slice(0, 16).replace(/[-:T]/g, '')}`;
}

/** Drop the scratch databases a verification of this tenant left (killed half-way); returns their names. */
export async function dropScratchDatabases(pool: pg.Pool, tenantId: string): Promise<string[]> {
  const prefix = scratchPrefix(tenantId);
  const { rows } = await pool.query<{ datname: string }>(
    `SELECT datname FROM pg_database WHERE starts_with(datname, $1) ORDER BY datname`,
    [prefix],
  );
  for (const r of rows) {
    if (!/^aiqso_verify_[0-9a-z_]+$/.test(r.datname)) continue;
    await pool.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(r.datname)} WITH (FORCE)`);
  }
  return rows.map((r) => r.datname);
}

/**
 * The latest recorded data snapshot of each of the tenant's services that
 * can be checked: with its archive's listing, or the volume its manifest
 * names (snapshots recorded before either was are covered by `restic check`).
 */
async function latestDataSnapshots(db: Database, tenantId: string) {
  return db
    .selectFrom('backups')
    .select([
      'id',
      'service',
      'snapshot_id',
      'archive_files',
      'archive_bytes',
      'archive_volume',
      'started_at',
    ])
    .distinctOn('service')
    .where('tenant_id', '=', tenantId)
    .where('kind', '=', 'data')
    .where('status', '=', 'done')
    .where('snapshot_id', 'is not', null)
    .where('service', 'is not', null)
    .where((eb) => eb.or([eb('archive_files', 'is not', null), eb('archive_volume', 'is not', null)]))
    .orderBy('service')
    .orderBy('started_at', 'desc')
    .orderBy('id', 'desc')
    .execute();
}

/** Collects what is written into it, up to `limit` bytes (a manifest, not an archive). */
function smallSink(limit: number): { sink: Writable; text: () => string } {
  const chunks: Buffer[] = [];
  let size = 0;
  const sink = new Writable({
    write(chunk: Buffer, _enc, callback) {
      size += chunk.length;
      if (size > limit) return callback(new Error(`more than ${limit} bytes: not a manifest`));
      chunks.push(chunk);
      callback();
    },
  });
  return { sink, text: () => Buffer.concat(chunks).toString('utf8') };
}

/**
 * Check one data snapshot without unpacking it: a tar archive is streamed out
 * of restic into a listing (entries and bytes of regular files) that must
 * equal the one recorded when it was stored; a manifest must name the
 * recorded volume, and the volume must still be on the driver's storage.
 */
async function verifyDataSnapshot(
  deps: VerifyDeps,
  repo: ResticRepository,
  b: Awaited<ReturnType<typeof latestDataSnapshots>>[number],
): Promise<VerifiedSnapshot> {
  const service = b.service!;
  const snapshot = b.snapshot_id!;
  const base = { service, snapshot, kind: 'data' as const, restoreMs: null };
  const started = Date.now();
  if (b.archive_volume !== null) {
    const volume = b.archive_volume;
    const { sink, text } = smallSink(64 * 1024);
    try {
      await deps.restic.dump(repo, snapshot, `/${DATA_FILE}`, sink);
    } catch (err) {
      return { ...base, volume, ok: false, problem: `restic dump failed: ${errorText(err)}` };
    }
    let named: unknown;
    try {
      named = (JSON.parse(text()) as { volid?: unknown }).volid;
    } catch {
      named = undefined;
    }
    if (typeof named !== 'string' || !volume.endsWith(`/${named}`))
      return {
        ...base,
        volume,
        ok: false,
        problem: `its manifest does not name the recorded archive ${volume}`,
      };
    if (!deps.compute?.exportVolumes)
      return {
        ...base,
        volume,
        ok: false,
        problem: `its archive ${volume} is on a compute driver this platform does not run`,
      };
    if (!(await deps.compute.exportVolumes.exists(volume)))
      return { ...base, volume, ok: false, problem: `its archive ${volume} is no longer on the storage` };
    return { ...base, volume, ok: true, checkMs: Date.now() - started };
  }
  const { sink, listing } = archiveLister();
  let got: ArchiveListing;
  try {
    await deps.restic.dump(repo, snapshot, `/${DATA_FILE}`, sink);
    got = await listing;
  } catch (err) {
    return { ...base, ok: false, problem: `listing the archive failed: ${errorText(err)}` };
  }
  const checked = { ...base, files: got.files, bytes: got.bytes, checkMs: Date.now() - started };
  const files = b.archive_files!;
  const bytes = Number(b.archive_bytes);
  if (got.files !== files || got.bytes !== bytes)
    return {
      ...checked,
      ok: false,
      problem: `the archive lists ${got.files} entries and ${got.bytes} bytes, ${files} entries and ${bytes} bytes recorded`,
    };
  return { ...checked, ok: true };
}

/** The latest recorded database snapshot of each of the tenant's services. */
async function latestDatabaseSnapshots(db: Database, tenantId: string) {
  return db
    .selectFrom('backups')
    .select(['id', 'service', 'snapshot_id', 'row_counts', 'started_at'])
    .distinctOn('service')
    .where('tenant_id', '=', tenantId)
    .where('kind', '=', 'database')
    .where('status', '=', 'done')
    .where('snapshot_id', 'is not', null)
    .where('service', 'is not', null)
    .orderBy('service')
    .orderBy('started_at', 'desc')
    .orderBy('id', 'desc')
    .execute();
}

function connection(url: string, database: string) {
  const u = new URL(url);
  return {
    host: decodeURIComponent(u.hostname).replace(/^\[|\]$/g, '') || '127.0.0.1',
    port: Number(u.port || 5432),
    user: decodeURIComponent(u.username) || 'postgres',
    password: decodeURIComponent(u.password),
    database,
  };
}

/** `restic dump` of the snapshot's dump streamed into `pg_restore` of the scratch database. */
async function restoreInto(
  restic: Restic,
  repo: ResticRepository,
  snapshotId: string,
  target: ReturnType<typeof connection>,
): Promise<void> {
  const pgDump = await findPgDump();
  const binary = pgDump === 'pg_dump' ? 'pg_restore' : path.join(path.dirname(pgDump), 'pg_restore');
  const child = spawnTool(
    binary,
    [
      '--no-owner',
      '--no-privileges',
      '--single-transaction',
      '--exit-on-error',
      '-h',
      target.host,
      '-p',
      String(target.port),
      '-U',
      target.user,
      '-d',
      target.database,
    ],
    {
      env: { PATH: WORKLOAD_PATH, PGPASSWORD: target.password, PGCONNECT_TIMEOUT: '10' },
      stdio: ['pipe', 'ignore', 'pipe'],
    },
  );
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (stderr = (stderr + c).slice(-4096)));
  child.stdin!.on('error', () => undefined);
  const restored = new Promise<void>((resolve, reject) => {
    child.on('error', (err) =>
      reject(new DomainError('dependency_failed', `cannot run pg_restore: ${err.message}`)),
    );
    child.on('close', (code) =>
      code === 0
        ? resolve()
        : reject(
            new DomainError(
              'dependency_failed',
              `pg_restore failed (${code}): ${stderr.trim().split('\n').slice(-2).join(' | ')}`,
            ),
          ),
    );
  });
  const dumped = restic.dump(repo, snapshotId, `/${DUMP_FILE}`, child.stdin!);
  const [d, r] = await Promise.allSettled([dumped, restored]);
  if (d.status === 'rejected') {
    child.kill('SIGKILL');
    throw d.reason;
  }
  if (r.status === 'rejected') throw r.reason;
}

/** Exact row counts of every table of the scratch database, keyed `schema.table` as a backup records them. */
async function scratchRowCounts(target: ReturnType<typeof connection>): Promise<Record<string, number>> {
  const client = new pg.Client({ ...target, application_name: 'aiqso-verify' });
  await client.connect();
  try {
    return await rowCounts(client);
  } finally {
    await client.end();
  }
}

/** What differs between the recorded row counts and the restored ones; empty when they match exactly. */
export function rowCountProblems(
  recorded: Record<string, number>,
  restored: Record<string, number>,
): string[] {
  const problems: string[] = [];
  for (const [table, n] of Object.entries(recorded)) {
    if (!(table in restored)) problems.push(`${table} is missing`);
    else if (restored[table] !== n) problems.push(`${table} has ${restored[table]} rows, ${n} recorded`);
  }
  for (const table of Object.keys(restored))
    if (!(table in recorded)) problems.push(`${table} was restored but not recorded`);
  return problems;
}

const errorText = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/** Verify one service's snapshot: restore it into its scratch database, compare, drop the scratch database. */
async function verifySnapshot(
  deps: VerifyDeps,
  repo: ResticRepository,
  tenantId: string,
  b: Awaited<ReturnType<typeof latestDatabaseSnapshots>>[number],
): Promise<VerifiedSnapshot> {
  const service = b.service!;
  const snapshot = b.snapshot_id!;
  const name = scratchDatabaseName(tenantId, service);
  const ident = pg.escapeIdentifier(name);
  await deps.server.pool.query(`DROP DATABASE IF EXISTS ${ident} WITH (FORCE)`);
  await deps.server.pool.query(`CREATE DATABASE ${ident} TEMPLATE template0`);
  try {
    // The tenant's data lands here: no role but the platform's may connect to it.
    await deps.server.pool.query(`REVOKE ALL ON DATABASE ${ident} FROM PUBLIC`);
    const target = connection(deps.server.url, name);
    const started = Date.now();
    try {
      await restoreInto(deps.restic, repo, snapshot, target);
    } catch (err) {
      return {
        service,
        snapshot,
        kind: 'database',
        restoreMs: null,
        ok: false,
        problem: `restore failed: ${errorText(err)}`,
      };
    }
    const restoreMs = Date.now() - started;
    if (!b.row_counts)
      return {
        service,
        snapshot,
        kind: 'database',
        restoreMs,
        ok: false,
        problem: 'no row counts were recorded with it',
      };
    const problems = rowCountProblems(b.row_counts, await scratchRowCounts(target));
    if (problems.length > 0)
      return {
        service,
        snapshot,
        kind: 'database',
        restoreMs,
        ok: false,
        problem: `row counts differ: ${problems.join('; ')}`,
      };
    return { service, snapshot, kind: 'database', restoreMs, ok: true };
  } finally {
    await deps.server.pool.query(`DROP DATABASE IF EXISTS ${ident} WITH (FORCE)`);
  }
}

/**
 * Verify one tenant's backups and record the verification (and, when it
 * failed, the admins' alert) under `id`. A tenant with no recorded database
 * snapshot has nothing to verify (conflict); a backup run that failed is
 * alerted as a failed resource.
 */
export async function verifyTenant(
  deps: VerifyDeps,
  tenantId: string,
  id: string = verificationId(tenantId),
): Promise<VerificationResult> {
  const done = await deps.db
    .selectFrom('backup_verifications')
    .selectAll()
    .where('id', '=', id)
    .executeTakeFirst();
  if (done)
    return {
      id,
      tenantId,
      status: done.status,
      rtoMs: done.rto_ms,
      snapshots: done.snapshots,
      error: done.error,
      recorded: false,
    };
  const startedAt = new Date();
  const snapshots: VerifiedSnapshot[] = [];
  const problems: string[] = [];
  const latest = await latestDatabaseSnapshots(deps.db, tenantId);
  const latestData = await latestDataSnapshots(deps.db, tenantId);
  if (latest.length === 0 && latestData.length === 0)
    throw new DomainError('conflict', 'the tenant has no recorded snapshot to verify');
  let repo: ResticRepository | undefined;
  try {
    await dropScratchDatabases(deps.server.pool, tenantId);
    repo = await deps.keys.existing(tenantId);
    if (!repo) problems.push('the tenant has snapshots recorded but no backup repository');
  } catch (err) {
    problems.push(`cannot start: ${errorText(err)}`);
  }
  if (repo) {
    for (const b of latest) {
      const v = await verifySnapshot(deps, repo, tenantId, b).catch((err: unknown): VerifiedSnapshot => ({
        service: b.service!,
        snapshot: b.snapshot_id!,
        kind: 'database',
        restoreMs: null,
        ok: false,
        problem: `the scratch database failed: ${errorText(err)}`,
      }));
      snapshots.push(v);
      if (!v.ok) problems.push(`${v.service} snapshot ${v.snapshot.slice(0, 8)}: ${v.problem}`);
    }
    for (const b of latestData) {
      const v = await verifyDataSnapshot(deps, repo, b).catch((err: unknown): VerifiedSnapshot => ({
        service: b.service!,
        snapshot: b.snapshot_id!,
        kind: 'data',
        restoreMs: null,
        ok: false,
        problem: `the check failed: ${errorText(err)}`,
      }));
      snapshots.push(v);
      if (!v.ok) problems.push(`${v.service} data snapshot ${v.snapshot.slice(0, 8)}: ${v.problem}`);
    }
    try {
      await checkRepository(deps, repo, tenantId);
    } catch (err) {
      problems.push(`restic check --read-data-subset=${deps.readDataPercent}%: ${errorText(err)}`);
    }
  }
  const status = problems.length === 0 ? 'passed' : 'failed';
  // The RTO is the sum of the database restores (data snapshots are listed, not restored).
  const restores = snapshots.filter((s) => s.kind !== 'data');
  const measured = restores.filter((s) => s.restoreMs !== null);
  const rtoMs =
    measured.length === restores.length && measured.length > 0
      ? measured.reduce((sum, s) => sum + s.restoreMs!, 0)
      : null;
  const error = problems.length ? problems.join('\n') : null;
  const recorded = await deps.db.transaction().execute(async (trx) => {
    const row = await trx
      .insertInto('backup_verifications')
      .values({
        id,
        tenant_id: tenantId,
        status,
        rto_ms: rtoMs,
        read_data_percent: deps.readDataPercent,
        snapshots: JSON.stringify(snapshots),
        error,
        started_at: startedAt,
      })
      .onConflict((oc) => oc.column('id').doNothing())
      .returning('id')
      .executeTakeFirst();
    if (!row) return false;
    if (status === 'passed') {
      for (const s of snapshots)
        await trx
          .updateTable('backups')
          .set(
            s.kind === 'data'
              ? { verified_at: sql`now()` }
              : { verified_at: sql`now()`, restore_ms: s.restoreMs },
          )
          .where('tenant_id', '=', tenantId)
          .where('snapshot_id', '=', s.snapshot)
          .where('kind', '=', s.kind ?? 'database')
          .execute();
    } else {
      const tenant = await trx
        .selectFrom('tenants')
        .select('slug')
        .where('id', '=', tenantId)
        .executeTakeFirst();
      await writeOutbox(trx, {
        key: `alert:backup-verification-failed:${id}`,
        kind: 'alert',
        payload: {
          subject: `backup verification of ${tenant?.slug ?? tenantId} failed`,
          text: `The restore verification ${id} of tenant ${tenant?.slug ?? ''} (${tenantId}) failed:\n\n${error}\n\nSee aiqso backups list --tenant ${tenant?.slug ?? tenantId}; run aiqso backups verify --tenant ${tenant?.slug ?? tenantId} once the cause is fixed.\n`,
          tenantId,
          verification: id,
        },
      });
    }
    return true;
  });
  return { id, tenantId, status, rtoMs, snapshots, error, recorded };
}

/**
 * Whether the platform's own work holds the tenant's repository now: a
 * backup run or a restore under way (resources being reconciled), or the
 * retention of that repository (it holds the advisory lock below).
 */
async function ownWorkRunning(db: Database, tenantId: string): Promise<boolean> {
  const running = await db
    .selectFrom('resources')
    .select('id')
    .where('tenant_id', '=', tenantId)
    .where('kind', 'in', [BACKUP_RUN_KIND, SERVICE_RESTORE_KIND])
    .where('phase', '=', 'reconciling')
    .where('deleted', '=', false)
    .limit(1)
    .executeTakeFirst();
  if (running) return true;
  return db.connection().execute(async (conn) => {
    const { rows } = await sql<{
      free: boolean;
    }>`SELECT pg_try_advisory_lock(${RETENTION_LOCK_NS}, hashtext(${tenantId})) AS free`.execute(conn);
    if (rows[0]!.free)
      await sql`SELECT pg_advisory_unlock(${RETENTION_LOCK_NS}, hashtext(${tenantId}))`.execute(conn);
    return !rows[0]!.free;
  });
}

/**
 * `restic check` needs the repository to itself. Locked by the platform's own
 * work (a backup run, a restore, retention's prune), it waits for that work
 * and checks then: a collision is no failure. Locked with none of that
 * running, restic's stale locks are removed (`restic unlock` removes only
 * those) and it is tried once more, after a killed restic not yet reaped is
 * (its lock goes only then); a lock still there then, or one held longer
 * than `lockWaitMs`, fails the check with restic's own account of it.
 */
async function checkRepository(deps: VerifyDeps, repo: ResticRepository, tenantId: string): Promise<void> {
  const args = ['check', `--read-data-subset=${deps.readDataPercent}%`];
  const deadline = Date.now() + (deps.lockWaitMs ?? 2 * 3_600_000);
  let unlocked = false;
  for (;;) {
    try {
      await deps.restic.call(repo, args);
      return;
    } catch (err) {
      if (!isLocked(err)) throw err;
      if (await ownWorkRunning(deps.db, tenantId)) {
        if (Date.now() > deadline)
          throw new DomainError(
            'conflict',
            `the repository stayed locked by the platform's own backup, restore or retention for more than ${Math.round((deps.lockWaitMs ?? 7_200_000) / 60_000)} min: ${errorText(err)}`,
          );
      } else if (!unlocked) {
        unlocked = true;
        await deps.restic.unlock(repo);
        continue;
      } else if (Date.now() <= deadline && (await unreapedProcesses('restic')) > 0) {
        // A killed restic's lock goes once init has reaped it (clearStaleLocks): unlock again then.
        unlocked = false;
      } else throw err;
      await new Promise((resolve) => setTimeout(resolve, deps.lockPollMs ?? 5000));
    }
  }
}

const isLocked = (err: unknown): boolean => err instanceof DomainError && err.details?.locked === true;

/** The tenants with at least one snapshot to verify (whose repository key still exists). */
export async function verifiableTenants(
  db: Database,
  only?: string,
): Promise<{ id: string; slug: string }[]> {
  let q = db
    .selectFrom('tenants as t')
    .select(['t.id', 't.slug'])
    .where((eb) =>
      eb.exists(
        eb
          .selectFrom('backups as b')
          .select('b.id')
          .whereRef('b.tenant_id', '=', 't.id')
          .where('b.status', '=', 'done')
          .where('b.snapshot_id', 'is not', null)
          .where((w) =>
            w.or([
              w('b.kind', '=', 'database'),
              w.and([
                w('b.kind', '=', 'data'),
                w.or([w('b.archive_files', 'is not', null), w('b.archive_volume', 'is not', null)]),
              ]),
            ]),
          ),
      ),
    )
    .where((eb) =>
      eb.not(
        eb.exists(
          eb
            .selectFrom('backup_repositories as r')
            .select('r.id')
            .whereRef('r.tenant_id', '=', 't.id')
            .where('r.password_enc', 'is', null),
        ),
      ),
    );
  if (only) q = q.where(only.startsWith('ten_') ? 't.id' : 't.slug', '=', only);
  return q.orderBy('t.slug').execute();
}

/**
 * Verify every tenant given, one after the other; one failing to be verified
 * at all (its database server gone, say) is recorded and alerted like any
 * failed verification. A scheduled firing passes its time: one record (and
 * at most one alert) per tenant and firing, however often the job runs.
 */
export async function verifyTenants(
  deps: VerifyDeps,
  tenants: { id: string }[],
  firedAt?: Date,
): Promise<VerificationResult[]> {
  const out: VerificationResult[] = [];
  for (const t of tenants) out.push(await verifyTenant(deps, t.id, verificationId(t.id, firedAt)));
  return out;
}

/** The latest verification of a tenant, for the listings. */
export async function latestVerification(db: Database, tenantId: string) {
  return db
    .selectFrom('backup_verifications')
    .select(['id', 'status', 'rto_ms', 'error', 'started_at', 'finished_at'])
    .where('tenant_id', '=', tenantId)
    .orderBy('started_at', 'desc')
    .limit(1)
    .executeTakeFirst();
}
