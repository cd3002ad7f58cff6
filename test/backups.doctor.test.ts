import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkBackupRepository } from '../src/backup/doctor.ts';
import { loadConfig } from '../src/config/load.ts';

const exec = promisify(execFile);

/**
 * `aiqso doctor` says whether the backup repository base can be used, and how
 * to fix it when not: a writable directory passes, one that does not exist
 * yet passes inside the data directory and warns elsewhere (an unmounted NAS)
 * without being created, a read-only filesystem (a real read-only mount), a
 * file in the path and an unreachable remote fail with the reason.
 */
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
    await mkdir(base);
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
    expect(check.detail).toBe(
      `${path.join(dir, 'a-file', 'backups')}: ${path.join(dir, 'a-file')} is a file, not a directory`,
    );
    expect(check.fix).toMatch(/AIQSO_BACKUP_REPOSITORY/);
  });

  it('does not create a missing base: fine inside the data directory, a warning elsewhere', async () => {
    const inside = path.join(dir, 'backups');
    const ok = await checkBackupRepository(
      loadConfig({ AIQSO_DATA_DIR: dir, AIQSO_BACKUP_REPOSITORY: inside }),
    );
    expect(ok).toMatchObject({ part: 'backups', status: 'ok' });
    expect(ok.detail).toMatch(/backups does not exist yet, the first backup creates it/);
    const elsewhere = await mkdtemp(path.join(os.tmpdir(), 'aiqso-backup-mnt-'));
    try {
      const base = path.join(elsewhere, 'nas', 'aiqso');
      const warned = await checkBackupRepository(
        loadConfig({ AIQSO_DATA_DIR: dir, AIQSO_BACKUP_REPOSITORY: base }),
      );
      expect(warned).toMatchObject({ part: 'backups', status: 'warning' });
      expect(warned.detail).toBe(
        `${base} does not exist: the first backup creates it in ${elsewhere}. If it is a NAS mount, it is not mounted`,
      );
      expect(await readdir(elsewhere)).toEqual([]);
    } finally {
      await rm(elsewhere, { recursive: true, force: true });
    }
    await expect(stat(inside)).rejects.toThrow(/ENOENT/);
  });

  it('fails a base on a read-only filesystem, existing or to be created there', async () => {
    const ro = path.join(dir, 'ro');
    await mkdir(ro);
    await exec('mount', ['-t', 'tmpfs', '-o', 'ro,size=1m', 'aiqso-doctor-ro', ro]);
    try {
      for (const base of [ro, path.join(ro, 'backups')]) {
        const check = await checkBackupRepository(
          loadConfig({ AIQSO_DATA_DIR: dir, AIQSO_BACKUP_REPOSITORY: base }),
        );
        expect(check, base).toMatchObject({ part: 'backups', status: 'failed' });
        expect(check.detail).toMatch(new RegExp(`${ro} is on a read-only filesystem`));
        expect(check.fix).toMatch(/AIQSO_BACKUP_REPOSITORY/);
      }
    } finally {
      await exec('umount', [ro]);
    }
  });
});
