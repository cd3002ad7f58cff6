import { existsSync } from 'node:fs';
import { cp, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { repositoryKeys } from '../src/backup/repositories.ts';
import { Restic } from '../src/backup/restic.ts';
import { newId } from '../src/core/ids.ts';
import { createSecretBox, generateMasterKey, parseMasterKey } from '../src/identity/secrets.ts';
import { startPurge } from '../src/lifecycle/purge.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';

/**
 * Crypto-shredding: purging a tenant destroys its backup repository's key,
 * then the repository. A copy of the repository made before (a NAS snapshot,
 * an offsite sync) cannot be opened afterwards: the platform no longer has
 * the key, and no other key opens it. The audit log records it.
 */
let db: TestDatabase;
let dir: string;
beforeAll(async () => {
  db = await createTestDatabase();
  dir = await mkdtemp(path.join(os.tmpdir(), 'aiqso-shred-'));
});
afterAll(async () => {
  await db.drop();
  await rm(dir, { recursive: true, force: true });
});

describe('crypto-shredding on purge', { timeout: 120_000 }, () => {
  it("destroys the tenant's backup key, then its repository; a copy stays unreadable", async () => {
    const tenantId = newId('tenant');
    await db.db
      .insertInto('tenants')
      .values({ id: tenantId, slug: 'shredco', company: 'Shred Co', status: 'cancelled' })
      .execute();
    const box = createSecretBox(parseMasterKey(generateMasterKey()));
    const dataDir = path.join(dir, 'data');
    const keys = repositoryKeys(db.db, () => Promise.resolve(box), path.join(dataDir, 'backups'));
    const restic = new Restic({ cacheDir: path.join(dir, 'cache') });
    const repo = await keys.forTenant(tenantId);
    expect(repo.location).toBe(path.join(dataDir, 'backups', 'tenants', tenantId));
    await restic.init(repo);
    await restic.backupStdin(repo, {
      stdin: Readable.from(['secret customer rows']),
      filename: 'database.dump',
      tags: [`tenant=${tenantId}`, 'service=notes', 'kind=database', 'run=run_x'],
      host: 'aiqso',
    });
    const copy = path.join(dir, 'nas-copy');
    await cp(repo.location, copy, { recursive: true });
    // The sealed key is in the database, never the plain password.
    const sealed = await db.db
      .selectFrom('backup_repositories')
      .select('password_enc')
      .where('tenant_id', '=', tenantId)
      .executeTakeFirstOrThrow();
    expect(sealed.password_enc).not.toContain(repo.password);

    expect(await startPurge(db.db, tenantId, { ignoreGrace: true, dataDir })).toBe('purged');

    const row = await db.db
      .selectFrom('backup_repositories')
      .select(['password_enc', 'shredded_at'])
      .where('tenant_id', '=', tenantId)
      .executeTakeFirstOrThrow();
    expect(row.password_enc).toBeNull();
    expect(row.shredded_at).toBeInstanceOf(Date);
    expect(existsSync(repo.location)).toBe(false);
    await expect(keys.existing(tenantId)).rejects.toThrow(/backup key was destroyed at purge/);
    await expect(keys.forTenant(tenantId)).rejects.toThrow(/backup key was destroyed at purge/);
    // The copy is ciphertext only: no key the platform could produce opens it.
    await expect(restic.snapshots({ location: copy, password: 'any other password' })).rejects.toThrow(
      /key does not open it/,
    );
    const audit = await db.db
      .selectFrom('audit_log')
      .select('details')
      .where('action', '=', 'tenant.purged')
      .where('tenant_id', '=', tenantId)
      .executeTakeFirstOrThrow();
    expect((audit.details as { removed: { backupRepository: unknown } }).removed.backupRepository).toEqual({
      keyDestroyed: true,
      repositoryRemoved: repo.location,
    });
  });
});
