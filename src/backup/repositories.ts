import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { sql } from 'kysely';
import { DomainError } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import type { Database } from '../db/database.ts';
import { sealedContext } from '../identity/rotate-master-key.ts';
import type { SecretBox } from '../identity/secrets.ts';
import type { ResticRepository } from './restic.ts';

/**
 * Where a tenant's restic repository lives, and its key. One repository per
 * tenant, `<base>/tenants/<tenant id>`: the base is a path or a restic
 * backend URL (`sftp:host:/dir`, `s3:host/bucket/dir`, `rest:https://…/`),
 * joined the way that backend spells a sub-path. Each repository's password
 * is 32 random bytes, sealed with the master key in `backup_repositories`
 * (re-sealed by master-key rotation). Destroying that row's password is the
 * crypto-shredding of the tenant's backups.
 */
export function repositoryLocation(base: string, tenantId: string): string {
  if (!/^ten_[0-9a-z]{26}$/.test(tenantId)) throw new Error(`not a tenant id: ${tenantId}`);
  if (/^[a-z0-9]+:/.test(base)) return `${base.replace(/\/+$/, '')}/tenants/${tenantId}`;
  return path.join(path.resolve(base), 'tenants', tenantId);
}

/** True for a base on this machine's filesystem (a path, or a NAS mounted on one). */
export const isLocalBase = (base: string): boolean => !/^[a-z0-9]+:/.test(base);

export interface RepositoryKeys {
  /** The tenant's repository, its key created on first use. */
  forTenant(tenantId: string): Promise<ResticRepository>;
  /** The tenant's repository if it has one; undefined when none was ever made. */
  existing(tenantId: string): Promise<ResticRepository | undefined>;
}

export function repositoryKeys(db: Database, box: () => Promise<SecretBox>, base: string): RepositoryKeys {
  const read = (tenantId: string) =>
    db
      .selectFrom('backup_repositories')
      .select(['id', 'location', 'password_enc', 'shredded_at'])
      .where('tenant_id', '=', tenantId)
      .executeTakeFirst();
  const open = async (row: NonNullable<Awaited<ReturnType<typeof read>>>): Promise<ResticRepository> => {
    if (!row.password_enc)
      throw new DomainError(
        'conflict',
        `this tenant's backup key was destroyed at purge (${row.shredded_at?.toISOString()}); its backups cannot be read`,
      );
    const password = (await box()).open(row.password_enc, sealedContext('backup_repositories', row.id));
    return { location: row.location, password };
  };
  return {
    async existing(tenantId) {
      const row = await read(tenantId);
      return row ? open(row) : undefined;
    },
    async forTenant(tenantId) {
      let row = await read(tenantId);
      if (!row) {
        const id = newId('backupRepository');
        const password = randomBytes(32).toString('base64url');
        // Two runs racing both try; the first insert wins and both read it back.
        await db
          .insertInto('backup_repositories')
          .values({
            id,
            tenant_id: tenantId,
            location: repositoryLocation(base, tenantId),
            password_enc: (await box()).seal(password, sealedContext('backup_repositories', id)),
          })
          .onConflict((oc) => oc.column('tenant_id').doNothing())
          .execute();
        row = await read(tenantId);
      }
      return open(row!);
    },
  };
}

/**
 * Crypto-shredding: forget the tenant's repository key. Whatever copies of
 * the repository exist (a NAS snapshot, an offsite sync) are unreadable from
 * this moment. Returns the repository's location (for the caller to delete),
 * or undefined when the tenant never had one. Idempotent.
 */
export async function shredRepositoryKey(db: Database, tenantId: string): Promise<string | undefined> {
  const row = await db
    .updateTable('backup_repositories')
    .set({ password_enc: null, shredded_at: sql`coalesce(shredded_at, now())` })
    .where('tenant_id', '=', tenantId)
    .returning('location')
    .executeTakeFirst();
  return row?.location;
}

/**
 * A purged tenant's backups: the key destroyed first (from then on nothing
 * can read them, wherever copies are), then the repository itself when it is
 * on this machine's filesystem (a remote one stays as unreadable ciphertext
 * for its operator to delete). Idempotent.
 */
export async function shredTenantBackups(
  db: Database,
  tenantId: string,
): Promise<{ keyDestroyed: boolean; repositoryRemoved: string | null }> {
  const location = await shredRepositoryKey(db, tenantId);
  if (!location) return { keyDestroyed: false, repositoryRemoved: null };
  // Only the directory this tenant's repository was made in, whatever else the row says.
  const local = isLocalBase(location) && location.endsWith(`${path.sep}tenants${path.sep}${tenantId}`);
  if (local) await rm(location, { recursive: true, force: true });
  return { keyDestroyed: true, repositoryRemoved: local ? location : null };
}
