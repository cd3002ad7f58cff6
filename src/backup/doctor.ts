import { randomBytes } from 'node:crypto';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Config } from '../config/load.ts';
import type { DoctorCheck } from '../compute/shared/doctor-check.ts';
import { DomainError } from '../core/errors.ts';
import { isLocalBase } from './repositories.ts';
import { Restic } from './restic.ts';

/**
 * `aiqso doctor`: restic is installed and the backup repository base can be
 * used. A path must be writable (a probe file is written and removed); a
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
    if (isLocalBase(base)) {
      await mkdir(base, { recursive: true, mode: 0o700 });
      const probe = path.join(base, `.doctor-${randomBytes(6).toString('hex')}`);
      await writeFile(probe, 'probe', { mode: 0o600 });
      await rm(probe);
      return { part: 'backups', status: 'ok', detail: `${version}; ${base} is writable` };
    }
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
