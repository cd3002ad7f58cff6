import type { ChildProcess } from 'node:child_process';
import { PassThrough } from 'node:stream';
import path from 'node:path';
import pg from 'pg';
import { spawnTool, WORKLOAD_PATH } from '../compute/shared/run.ts';
import { DomainError } from '../core/errors.ts';
import { findPgDump } from '../services/final-backup.ts';
import type { BackupSummary, Restic, ResticRepository } from './restic.ts';

/**
 * A service database into and out of restic, streamed: `pg_dump -Fc` writes
 * into `restic backup --stdin` and `restic dump` into `pg_restore`, so no
 * plaintext copy ever touches a disk. Both run with the service's own role,
 * its password in PGPASSWORD (never argv). The row counts recorded with a
 * snapshot are taken in the very snapshot pg_dump dumps (an exported
 * REPEATABLE READ snapshot), so a verification can compare them exactly.
 */
export interface ServiceDatabaseTarget {
  host: string;
  port: number;
  name: string;
  role: string;
  password: string;
}

/** The file name a database snapshot holds its dump under. */
export const DUMP_FILE = 'database.dump';

const pgEnv = (t: ServiceDatabaseTarget) => ({
  PATH: WORKLOAD_PATH,
  PGPASSWORD: t.password,
  PGCONNECT_TIMEOUT: '10',
});

const pgArgs = (t: ServiceDatabaseTarget) => ['-h', t.host, '-p', String(t.port), '-U', t.role, '-d', t.name];

export function exited(child: ChildProcess, what: string): Promise<void> {
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (c: string) => (stderr = (stderr + c).slice(-4096)));
  return new Promise((resolve, reject) => {
    child.on('error', (err) =>
      reject(new DomainError('dependency_failed', `cannot run ${what}: ${err.message}`)),
    );
    child.on('close', (code) => {
      if (code === 0) resolve();
      else {
        const detail = stderr.trim().split('\n').slice(-2).join(' | ');
        reject(new DomainError('dependency_failed', `${what} failed (${code}): ${detail}`));
      }
    });
  });
}

/**
 * Exact row counts of every table, keyed `schema.table`, read on `client` (in
 * its open transaction, if any): what a backup records and a verification compares.
 */
export async function rowCounts(client: pg.Client): Promise<Record<string, number>> {
  const { rows } = await client.query<{ schema: string; name: string }>(
    `SELECT n.nspname AS schema, c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
        AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1, 2`,
  );
  const counts: Record<string, number> = {};
  for (const t of rows) {
    const table = `${pg.escapeIdentifier(t.schema)}.${pg.escapeIdentifier(t.name)}`;
    const { rows: n } = await client.query<{ n: string }>(`SELECT count(*) AS n FROM ${table}`);
    counts[`${t.schema}.${t.name}`] = Number(n[0]!.n);
  }
  return counts;
}

export async function snapshotDatabase(
  restic: Restic,
  repo: ResticRepository,
  target: ServiceDatabaseTarget,
  meta: { tags: string[]; host: string; time?: Date; signal?: AbortSignal },
): Promise<BackupSummary & { rowCounts: Record<string, number> }> {
  const client = new pg.Client({
    host: target.host,
    port: target.port,
    user: target.role,
    password: target.password,
    database: target.name,
    application_name: 'aiqso-backup',
  });
  await client.connect();
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    const { rows } = await client.query<{ id: string }>('SELECT pg_export_snapshot() AS id');
    const counts = await rowCounts(client);
    const dump = spawnTool(
      await findPgDump(),
      // Uncompressed (-Z0): restic compresses what it stores, and an uncompressed stream deduplicates
      // against yesterday's (a compressed one differs throughout after the first change).
      ['-Fc', '-Z0', '--no-owner', `--snapshot=${rows[0]!.id}`, ...pgArgs(target)],
      { env: pgEnv(target), stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const dumped = exited(dump, 'pg_dump');
    const stdin = new PassThrough();
    dump.stdout!.pipe(stdin);
    const stored = restic.backupStdin(repo, { ...meta, stdin, filename: DUMP_FILE });
    const [d, s] = await Promise.allSettled([dumped, stored]);
    if (d.status === 'rejected') {
      // restic stored whatever pg_dump wrote before failing: that snapshot must not count as a backup.
      if (s.status === 'fulfilled') await restic.forget(repo, [s.value.snapshotId]);
      throw d.reason;
    }
    if (s.status === 'rejected') throw s.reason;
    return { ...s.value, rowCounts: counts };
  } finally {
    await client.query('ROLLBACK').catch(() => undefined);
    await client.end();
  }
}

export function pgRestoreBinary(pgDump: string): string {
  return pgDump === 'pg_dump' ? 'pg_restore' : path.join(path.dirname(pgDump), 'pg_restore');
}

/**
 * Replace the database's contents with a snapshot's dump, in one
 * transaction: either the whole dump is in place afterwards, or nothing
 * changed. Objects the dump holds are dropped and recreated (--clean).
 */
export async function restoreDatabase(
  restic: Restic,
  repo: ResticRepository,
  snapshotId: string,
  target: ServiceDatabaseTarget,
): Promise<void> {
  const restore = spawnTool(
    pgRestoreBinary(await findPgDump()),
    ['--clean', '--if-exists', '--no-owner', '--single-transaction', '--exit-on-error', ...pgArgs(target)],
    { env: pgEnv(target), stdio: ['pipe', 'ignore', 'pipe'] },
  );
  const restored = exited(restore, 'pg_restore');
  restore.stdin!.on('error', () => undefined);
  const dumped = restic.dump(repo, snapshotId, `/${DUMP_FILE}`, restore.stdin!);
  const [d, r] = await Promise.allSettled([dumped, restored]);
  if (d.status === 'rejected') {
    restore.kill('SIGKILL');
    throw d.reason;
  }
  if (r.status === 'rejected') throw r.reason;
}
