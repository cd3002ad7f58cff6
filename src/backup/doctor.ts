import { randomBytes } from 'node:crypto';
import { access, constants, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Config } from '../config/load.ts';
import type { DoctorCheck } from '../compute/shared/doctor-check.ts';
import { DomainError } from '../core/errors.ts';
import { isLocalBase } from './repositories.ts';
import { Restic } from './restic.ts';

/** What a filesystem error means for the repository base, in words. */
function fsProblem(err: unknown, where: string): string {
  const code = (err as NodeJS.ErrnoException).code;
  switch (code) {
    case 'EROFS':
      return `${where} is on a read-only filesystem`;
    case 'EACCES':
    case 'EPERM':
      return `${where} is not writable by this user (uid ${process.getuid?.() ?? '?'})`;
    case 'ENOTDIR':
      return `${where}: a part of the path is a file, not a directory`;
    case 'ENOSPC':
      return `${where}: no space left on the device`;
    case 'EDQUOT':
      return `${where}: the disk quota is used up`;
    default:
      return `${where}: ${(err as Error).message}`;
  }
}

/** The nearest directory of `p` that exists (itself when it does). */
async function nearestExisting(p: string): Promise<{ dir: string; isDir: boolean }> {
  for (let dir = path.resolve(p); ; dir = path.dirname(dir)) {
    const found = await stat(dir).catch(() => undefined);
    if (found) return { dir, isDir: found.isDirectory() };
    if (path.dirname(dir) === dir) return { dir, isDir: true };
  }
}

/**
 * A path base: an existing directory must take a probe file (written and
 * removed). A base that does not exist is not created here (a NAS that is not
 * mounted would otherwise be replaced by a directory on the local disk): the
 * nearest existing parent must be writable, and the answer says the first
 * backup creates it — a warning unless it is inside the data directory (the
 * default `<data>/backups` on a fresh install).
 */
async function checkLocalBase(base: string, dataDir: string, version: string): Promise<DoctorCheck> {
  const fix = 'set AIQSO_BACKUP_REPOSITORY to a writable directory (or mount the NAS it names)';
  const resolved = path.resolve(base);
  const { dir, isDir } = await nearestExisting(resolved);
  if (!isDir)
    return {
      part: 'backups',
      status: 'failed',
      detail: `${base}: ${dir} is a file, not a directory`,
      fix,
    };
  if (dir === resolved) {
    const probe = path.join(resolved, `.doctor-${randomBytes(6).toString('hex')}`);
    try {
      await writeFile(probe, 'probe', { mode: 0o600 });
      await rm(probe);
    } catch (err) {
      return { part: 'backups', status: 'failed', detail: fsProblem(err, base), fix };
    }
    return { part: 'backups', status: 'ok', detail: `${version}; ${base} is writable` };
  }
  try {
    await access(dir, constants.W_OK);
  } catch (err) {
    return {
      part: 'backups',
      status: 'failed',
      detail: `${base} does not exist, and ${fsProblem(err, dir)} to create it in`,
      fix,
    };
  }
  const inDataDir = (resolved + path.sep).startsWith(path.resolve(dataDir) + path.sep);
  return inDataDir
    ? {
        part: 'backups',
        status: 'ok',
        detail: `${version}; ${base} does not exist yet, the first backup creates it (${dir} is writable)`,
      }
    : {
        part: 'backups',
        status: 'warning',
        detail: `${base} does not exist: the first backup creates it in ${dir}. If it is a NAS mount, it is not mounted`,
        fix: `mount it, or create ${base}`,
      };
}

/**
 * `aiqso doctor`: restic is installed and the backup repository base can be
 * used. A path must be writable (a probe file is written and removed; see
 * `checkLocalBase` for one that does not exist yet); a
 * remote backend must answer (restic opens a probe location there: "no
 * repository" is an answer, an unreachable host or refused login is not).
 */
export async function checkBackupRepository(config: Config): Promise<DoctorCheck> {
  const base = config.backup.repository;
  const restic = new Restic({
    cacheDir: path.join(config.dataDir, 'restic-cache'),
    credentials: config.backup.credentials,
  });
  const fix =
    'set AIQSO_BACKUP_REPOSITORY to a writable path or a reachable restic repository (sftp:, s3:, rest:)';
  try {
    const version = (await restic.version()).split(' ').slice(0, 2).join(' ');
    if (isLocalBase(base)) return await checkLocalBase(base, config.dataDir, version);
    const answered = !(await restic.exists({
      location: `${base.replace(/\/+$/, '')}/doctor-probe`,
      password: 'probe',
    }));
    return {
      part: 'backups',
      status: 'ok',
      detail: `${version}; ${base} answers${answered ? '' : ' (a probe repository exists there)'}`,
    };
  } catch (err) {
    const missing = err instanceof DomainError && /cannot run restic/.test(err.message);
    return {
      part: 'backups',
      status: missing ? 'missing' : 'failed',
      detail: `${base}: ${(err as Error).message}`,
      fix: missing ? 'apt-get install restic' : fix,
    };
  }
}
