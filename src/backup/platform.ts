import { createHmac } from 'node:crypto';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import pg from 'pg';
import { spawnTool, WORKLOAD_PATH } from '../compute/shared/run.ts';
import { DomainError } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import type { Database } from '../db/database.ts';
import { keyIdFor } from '../identity/secrets.ts';
import { findPgDump } from '../services/final-backup.ts';
import { exited, pgRestoreBinary } from './database.ts';
import type { Restic, ResticRepository, Snapshot } from './restic.ts';

/**
 * The platform repository: the master database's own backups, for disaster
 * recovery. One restic repository per master key,
 * `<base>/platform/<key id>`, whose password is derived from the master key
 * (HMAC-SHA256 of a fixed label): it opens with the master key alone, when
 * the master database (and with it every sealed tenant repository key) is
 * gone. A rotated master key starts a new repository; the old one still
 * opens with the old key. Each snapshot is `pg_dump -Fc` of the master
 * database streamed into `restic backup --stdin` (no plaintext file), tagged
 * `kind=master`, recorded in `platform_backups`.
 */
export const MASTER_DUMP_FILE = 'master.dump';
const LABEL = 'aiqso platform backup repository v1';

export function platformRepository(base: string, masterKey: Buffer): ResticRepository & { keyId: string } {
  const keyId = keyIdFor(masterKey);
  const location = /^[a-z0-9]+:/.test(base)
    ? `${base.replace(/\/+$/, '')}/platform/${keyId}`
    : path.join(path.resolve(base), 'platform', keyId);
  return { location, keyId, password: createHmac('sha256', masterKey).update(LABEL).digest('base64url') };
}

/** Host, port, user, database and password of a PostgreSQL URL; the password goes to PGPASSWORD only. */
export function pgTarget(url: string) {
  const u = new URL(url);
  return {
    host: decodeURIComponent(u.hostname.replace(/^\[|\]$/g, '')) || '127.0.0.1',
    port: Number(u.port || 5432),
    user: decodeURIComponent(u.username) || 'postgres',
    database: decodeURIComponent(u.pathname.replace(/^\//, '')) || 'postgres',
    password: decodeURIComponent(u.password),
  };
}

const pgEnv = (t: ReturnType<typeof pgTarget>) => ({
  PATH: WORKLOAD_PATH,
  PGCONNECT_TIMEOUT: '10',
  ...(t.password ? { PGPASSWORD: t.password } : {}),
});
const pgArgs = (t: ReturnType<typeof pgTarget>) => [
  '-h',
  t.host,
  '-p',
  String(t.port),
  '-U',
  t.user,
  '-d',
  t.database,
];

export interface PlatformSnapshotResult {
  snapshot: string;
  location: string;
  sizeBytes: number;
  addedBytes: number;
  durationMs: number;
}

/**
 * One snapshot of the master database into the platform repository, tagged
 * `run=<id>` and recorded in `platform_backups` under that id. A snapshot of
 * the same run that restic stored but the run never recorded (a crash in
 * between, or a restic orphaned by a killed platform finishing the partial
 * stream it was fed) is forgotten first: only recorded snapshots count.
 */
export async function takePlatformSnapshot(deps: {
  db: Database;
  restic: Restic;
  repo: ResticRepository & { keyId: string };
  masterUrl: string;
  id: string;
}): Promise<PlatformSnapshotResult> {
  const { repo, id } = deps;
  const tags = ['kind=master', `key=${repo.keyId}`, `run=${id}`];
  const leftovers = await deps.restic.snapshots(repo, [`run=${id}`]);
  await deps.restic.forget(
    repo,
    leftovers.map((x) => x.id),
  );
  const started = new Date();
  const target = pgTarget(deps.masterUrl);
  const dump = spawnTool(await findPgDump(), ['-Fc', ...pgArgs(target)], {
    env: pgEnv(target),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const dumped = exited(dump, 'pg_dump');
  const stdin = new PassThrough();
  dump.stdout!.pipe(stdin);
  const stored = deps.restic.backupStdin(repo, { stdin, filename: MASTER_DUMP_FILE, tags, host: 'aiqso' });
  const [d, s] = await Promise.allSettled([dumped, stored]);
  if (d.status === 'rejected') {
    // What pg_dump wrote before it failed is not a backup.
    if (s.status === 'fulfilled') await deps.restic.forget(repo, [s.value.snapshotId]);
    throw d.reason;
  }
  if (s.status === 'rejected') throw s.reason;
  const summary = s.value;
  // restic's summary may give the short id: the full one is read back by this run's tag.
  const tagged = await deps.restic.snapshots(repo, [`run=${id}`]);
  const snap = tagged.find((x) => x.id.startsWith(summary.snapshotId));
  if (!snap) throw new Error(`restic reported platform snapshot ${summary.snapshotId} but does not list it`);
  await deps.restic.forget(
    repo,
    tagged.filter((x) => x !== snap).map((x) => x.id),
  );
  const durationMs = Date.now() - started.getTime();
  await deps.db
    .insertInto('platform_backups')
    .values({
      id,
      snapshot_id: snap.id,
      location: repo.location,
      key_id: repo.keyId,
      size_bytes: String(summary.bytesProcessed),
      added_bytes: String(summary.dataAdded),
      duration_ms: durationMs,
      started_at: started,
    })
    .execute();
  return {
    snapshot: snap.id,
    location: repo.location,
    sizeBytes: summary.bytesProcessed,
    addedBytes: summary.dataAdded,
    durationMs,
  };
}

/** `aiqso backups run --platform`: one snapshot now, in this process (the repository made if missing). */
export async function runPlatformBackup(deps: {
  db: Database;
  restic: Restic;
  base: string;
  masterKey: Buffer;
  masterUrl: string;
}): Promise<PlatformSnapshotResult> {
  const repo = platformRepository(deps.base, deps.masterKey);
  if (!(await deps.restic.exists(repo))) await deps.restic.init(repo);
  await deps.restic.unlock(repo);
  return takePlatformSnapshot({ ...deps, repo, id: newId('backup') });
}

/** The platform repository's snapshots, newest first: read from the repository alone (the master key opens it). */
export async function listPlatformSnapshots(
  restic: Restic,
  repo: ResticRepository & { keyId: string },
): Promise<{ time: Date; snapshot: string; run: string | null; key: string | null }[]> {
  if (!(await restic.exists(repo)))
    throw new DomainError(
      'not_found',
      `no platform repository at ${repo.location} for this master key (no platform backup yet, or check AIQSO_BACKUP_REPOSITORY and the master key)`,
    );
  const tag = (s: Snapshot, name: string) =>
    s.tags.find((t) => t.startsWith(`${name}=`))?.slice(name.length + 1) ?? null;
  return (await restic.snapshots(repo, ['kind=master']))
    .sort((a, b) => b.time.getTime() - a.time.getTime())
    .map((s) => ({ time: s.time, snapshot: s.id, run: tag(s, 'run'), key: tag(s, 'key') }));
}

/** The platform repository's snapshot `ref` names (full id, or 8+ hex digits of it). */
export async function findPlatformSnapshot(
  restic: Restic,
  repo: ResticRepository,
  ref: string,
): Promise<Snapshot> {
  if (!/^[0-9a-f]{8,64}$/.test(ref))
    throw new DomainError('bad_request', '--snapshot must be a restic snapshot id (8 to 64 hex digits)');
  if (!(await restic.exists(repo)))
    throw new DomainError(
      'not_found',
      `no platform repository at ${repo.location} for this master key; check AIQSO_BACKUP_REPOSITORY and the master key`,
    );
  const found = (await restic.snapshots(repo, ['kind=master'])).filter((s) => s.id.startsWith(ref));
  if (found.length === 0)
    throw new DomainError('not_found', `no platform snapshot ${ref} in ${repo.location}`);
  if (found.length > 1)
    throw new DomainError('bad_request', `snapshot ${ref} is ambiguous; give more of its id`);
  return found[0]!;
}

/** Whether the database at `url` holds no table of its own (an empty database to restore into). */
export async function databaseIsEmpty(url: string): Promise<{ empty: boolean; tables: number }> {
  const client = new pg.Client({ connectionString: url, application_name: 'aiqso-restore' });
  await client.connect();
  try {
    const { rows } = await client.query<{ n: string }>(
      `SELECT count(*) AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
          AND n.nspname NOT LIKE 'pg_toast%'`,
    );
    const tables = Number(rows[0]!.n);
    return { empty: tables === 0, tables };
  } finally {
    await client.end();
  }
}

/**
 * The master database back from a platform snapshot, into the empty database
 * at `targetUrl`, in one transaction (pg_restore --single-transaction): the
 * whole dump, or nothing. The roles the schema grants to are made first.
 */
export async function restorePlatform(deps: {
  restic: Restic;
  repo: ResticRepository;
  snapshot: string;
  targetUrl: string;
}): Promise<void> {
  const client = new pg.Client({ connectionString: deps.targetUrl, application_name: 'aiqso-restore' });
  await client.connect();
  try {
    // The role tenant-scoped queries run as (migration 0004): cluster-wide, so absent on a new server.
    await client.query(`DO $$ BEGIN
      IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'aiqso_tenant') THEN CREATE ROLE aiqso_tenant NOLOGIN; END IF;
    END $$`);
    await client.query(`DO $$ BEGIN EXECUTE format('GRANT aiqso_tenant TO %I', current_user);
      EXCEPTION WHEN others THEN NULL; END $$`);
  } finally {
    await client.end();
  }
  const target = pgTarget(deps.targetUrl);
  const restore = spawnTool(
    pgRestoreBinary(await findPgDump()),
    ['--no-owner', '--single-transaction', '--exit-on-error', ...pgArgs(target)],
    { env: pgEnv(target), stdio: ['pipe', 'ignore', 'pipe'] },
  );
  const restored = exited(restore, 'pg_restore');
  restore.stdin!.on('error', () => undefined);
  const dumped = deps.restic.dump(deps.repo, deps.snapshot, `/${MASTER_DUMP_FILE}`, restore.stdin!);
  const [d, r] = await Promise.allSettled([dumped, restored]);
  if (d.status === 'rejected') {
    restore.kill('SIGKILL');
    throw d.reason;
  }
  if (r.status === 'rejected') throw r.reason;
}
