import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { run, WORKLOAD_PATH } from '../compute/shared/run.ts';
import { DomainError } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import type { Database } from '../db/database.ts';

/**
 * The final backup of an unsubscribed service: `pg_dump -Fc` of its database,
 * taken with the service's own role (its password through PGPASSWORD, never
 * argv), into `<data>/backups/<tenant slug>/<service>-final-<timestamp>.dump`,
 * and recorded in `backups` with its size and SHA-256. The dump holds the
 * tenant's data: it is created 0600 before pg_dump writes into it (pg_dump
 * itself would create it with the process umask, world-readable by default).
 */

/** Debian's newest pg_dump (`/usr/lib/postgresql/<major>/bin`), else the one on PATH. */
export async function findPgDump(): Promise<string> {
  const root = '/usr/lib/postgresql';
  const majors = (await readdir(root).catch(() => []))
    .filter((d) => /^\d+$/.test(d))
    .sort((a, b) => Number(b) - Number(a));
  for (const major of majors) {
    const bin = path.join(root, major, 'bin', 'pg_dump');
    if (existsSync(bin)) return bin;
  }
  return 'pg_dump';
}

async function sha256(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

export interface FinalBackupTarget {
  tenantId: string;
  tenantSlug: string;
  tenantServiceId: string;
  service: string;
  database: { host: string; port: number; name: string; role: string; password: string };
}

/** The recorded final backup of a tenant service, if one was taken. */
export async function findFinalBackup(db: Database, tenantServiceId: string) {
  return db
    .selectFrom('backups')
    .select(['id', 'location', 'size_bytes', 'sha256'])
    .where('tenant_service_id', '=', tenantServiceId)
    .where('kind', '=', 'database')
    .where('status', '=', 'done')
    .where('location', 'like', '%-final-%')
    .executeTakeFirst();
}

export async function takeFinalBackup(db: Database, dataDir: string, t: FinalBackupTarget): Promise<string> {
  const dir = path.join(dataDir, 'backups', t.tenantSlug);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const file = path.join(dir, `${t.service}-final-${stamp}.dump`);
  const partial = `${file}.partial`;
  const { host, port, name, role, password } = t.database;
  // pg_dump truncates an existing file and keeps its mode; chmod covers a leftover from a crash.
  const created = await open(partial, 'w', 0o600);
  await created.chmod(0o600);
  await created.close();
  const result = await run(
    await findPgDump(),
    ['-Fc', '--no-owner', '-h', host, '-p', String(port), '-U', role, '-d', name, '-f', partial],
    { env: { PATH: WORKLOAD_PATH, PGPASSWORD: password, PGCONNECT_TIMEOUT: '10' }, timeoutMs: 30 * 60_000 },
  );
  if (result.exitCode !== 0) {
    await rm(partial, { force: true });
    const detail = result.stderr.trim().split('\n').slice(-2).join(' | ');
    throw new DomainError('dependency_failed', `pg_dump of ${name} failed (${result.exitCode}): ${detail}`);
  }
  await rename(partial, file);
  const size = (await stat(file)).size;
  await db
    .insertInto('backups')
    .values({
      id: newId('backup'),
      tenant_id: t.tenantId,
      tenant_service_id: t.tenantServiceId,
      kind: 'database',
      status: 'done',
      location: file,
      size_bytes: String(size),
      sha256: await sha256(file),
      finished_at: new Date(),
    })
    .execute();
  return file;
}
