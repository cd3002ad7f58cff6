import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkBackupRepository } from '../src/backup/doctor.ts';
import { loadConfig } from '../src/config/load.ts';

/** `aiqso doctor` says whether the backup repository base can be used, and how to fix it when not. */
let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'aiqso-backup-doctor-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('doctor: backup repository', { timeout: 60_000 }, () => {
  it('passes a writable path and leaves nothing behind', async () => {
    const base = path.join(dir, 'nas');
    const check = await checkBackupRepository(
      loadConfig({ AIQSO_DATA_DIR: dir, AIQSO_BACKUP_REPOSITORY: base }),
    );
    expect(check).toMatchObject({ part: 'backups', status: 'ok' });
    expect(check.detail).toMatch(/^restic \d+\.\d+\.\d+; .* is writable$/);
    expect(await readdir(base)).toEqual([]);
  });

  it('fails a remote repository that cannot be reached, with the fix', async () => {
    const check = await checkBackupRepository(
      loadConfig({ AIQSO_DATA_DIR: dir, AIQSO_BACKUP_REPOSITORY: 'sftp:aiqso-unreachable.invalid:/backups' }),
    );
    expect(check).toMatchObject({ part: 'backups', status: 'failed' });
    expect(check.detail).toMatch(/backup repository unreachable/);
    expect(check.fix).toMatch(/AIQSO_BACKUP_REPOSITORY/);
  });

  it('fails a path that cannot be written', async () => {
    await writeFile(path.join(dir, 'a-file'), '');
    const check = await checkBackupRepository(
      loadConfig({ AIQSO_DATA_DIR: dir, AIQSO_BACKUP_REPOSITORY: path.join(dir, 'a-file', 'backups') }),
    );
    expect(check).toMatchObject({ part: 'backups', status: 'failed' });
  });
});
