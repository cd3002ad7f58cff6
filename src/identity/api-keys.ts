import { createHash, randomBytes } from 'node:crypto';
import { DomainError, notFound } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import type { Database } from '../db/database.ts';
import type { ApiKeyPurpose, Role } from '../core/identity.ts';
import type { Principal } from './principal.ts';
import type { TenantTx } from './tenant-access.ts';

/**
 * API keys for integrators: `aiqso_` + 256 random bits, shown once, stored as
 * SHA-256 (the key has full entropy, so a slow hash adds nothing), scoped to
 * one tenant or to the platform.
 */
export const API_KEY_PREFIX = 'aiqso_';

export const hashApiKey = (key: string) => createHash('sha256').update(key).digest('hex');

export interface NewApiKey {
  tenantId: string | null;
  role: Role;
  name: string;
  expiresAt?: Date | null;
  createdBy: string | null;
  /** `dashboard`: a tenant dashboard's own key, which may also vouch for its users' addresses at login. */
  purpose?: ApiKeyPurpose;
}

export function publicKey(row: {
  id: string;
  tenant_id: string | null;
  name: string;
  role: Role;
  prefix: string;
  created_at: Date;
  expires_at: Date | null;
  revoked_at: Date | null;
  last_used_at: Date | null;
  created_by: string | null;
}) {
  return {
    id: row.id,
    tenantId: row.tenant_id,
    name: row.name,
    role: row.role,
    prefix: row.prefix,
    createdAt: row.created_at.toISOString(),
    expiresAt: row.expires_at?.toISOString() ?? null,
    revokedAt: row.revoked_at?.toISOString() ?? null,
    lastUsedAt: row.last_used_at?.toISOString() ?? null,
    createdBy: row.created_by,
  };
}

/** `db` is a tenant-scoped transaction for tenant keys; the platform database for platform keys. */
export async function createApiKey(db: Database | TenantTx, input: NewApiKey) {
  if ((input.role === 'platform_admin') !== (input.tenantId === null)) {
    throw new DomainError(
      'validation_failed',
      'platform keys have the platform_admin role; tenant keys a tenant role',
    );
  }
  if (input.expiresAt && input.expiresAt.getTime() <= Date.now()) {
    throw new DomainError('validation_failed', 'expiresAt must be in the future', {
      details: { field: 'expiresAt' },
    });
  }
  const key = API_KEY_PREFIX + randomBytes(32).toString('base64url');
  const row = await db
    .insertInto('api_keys')
    .values({
      id: newId('apiKey'),
      tenant_id: input.tenantId,
      name: input.name,
      role: input.role,
      prefix: key.slice(0, API_KEY_PREFIX.length + 6),
      key_hash: hashApiKey(key),
      created_by: input.createdBy,
      expires_at: input.expiresAt ?? null,
      purpose: input.purpose ?? 'integration',
    })
    .returningAll()
    .executeTakeFirstOrThrow();
  return { ...publicKey(row), key };
}

export async function listApiKeys(trx: TenantTx, tenantId: string) {
  const rows = await trx
    .selectFrom('api_keys')
    .selectAll()
    .where('tenant_id', '=', tenantId)
    .orderBy('id')
    .execute();
  return rows.map(publicKey);
}

export async function revokeApiKey(trx: TenantTx, tenantId: string, keyId: string) {
  const row = await trx
    .updateTable('api_keys')
    .set({ revoked_at: new Date() })
    .where('id', '=', keyId)
    .where('tenant_id', '=', tenantId)
    .where('revoked_at', 'is', null)
    .returningAll()
    .executeTakeFirst();
  if (!row) throw notFound(`active API key ${keyId}`);
  return publicKey(row);
}

export async function listPlatformApiKeys(db: Database) {
  const rows = await db
    .selectFrom('api_keys')
    .selectAll()
    .where('tenant_id', 'is', null)
    .orderBy('id')
    .execute();
  return rows.map(publicKey);
}

export async function revokePlatformApiKey(db: Database, keyId: string) {
  const row = await db
    .updateTable('api_keys')
    .set({ revoked_at: new Date() })
    .where('id', '=', keyId)
    .where('tenant_id', 'is', null)
    .where('revoked_at', 'is', null)
    .returningAll()
    .executeTakeFirst();
  if (!row) throw notFound(`active platform API key ${keyId}`);
  return publicKey(row);
}

/** The tenant whose dashboard `key` belongs to: a live key made for a dashboard, else undefined. */
export async function dashboardKeyTenant(db: Database, key: string): Promise<string | undefined> {
  if (!key.startsWith(API_KEY_PREFIX) || key.length > 256) return undefined;
  const row = await db
    .selectFrom('api_keys')
    .select('tenant_id')
    .where('key_hash', '=', hashApiKey(key))
    .where('purpose', '=', 'dashboard')
    .where('revoked_at', 'is', null)
    .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', new Date())]))
    .executeTakeFirst();
  return row?.tenant_id ?? undefined;
}

/** How stale `last_used_at` may get: recording every use would make each request a write. */
const LAST_USE_GRANULARITY_MS = 60_000;

/** The principal an API key stands for; records its use (to the minute). */
export async function authenticateApiKey(db: Database, key: string): Promise<Principal> {
  const now = new Date();
  const row = await db
    .selectFrom('api_keys')
    .select(['id', 'role', 'tenant_id', 'last_used_at'])
    .where('key_hash', '=', hashApiKey(key))
    .where('revoked_at', 'is', null)
    .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', now)]))
    .executeTakeFirst();
  if (!row) throw new DomainError('unauthenticated', 'the API key is unknown, revoked or expired');
  if (!row.last_used_at || now.getTime() - row.last_used_at.getTime() > LAST_USE_GRANULARITY_MS) {
    await db.updateTable('api_keys').set({ last_used_at: now }).where('id', '=', row.id).execute();
  }
  return { kind: 'api_key', id: row.id, role: row.role, tenantId: row.tenant_id };
}
