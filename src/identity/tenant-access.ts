import { sql, type Transaction } from 'kysely';
import { conflict, DomainError, notFound } from '../core/errors.ts';
import type { Database } from '../db/database.ts';
import type { DB } from '../db/tables.ts';
import { isPlatformAdmin, requireRole, type Principal } from './principal.ts';
import type { Role } from '../core/identity.ts';

/**
 * The one door to tenant-owned data. `forTenant` resolves the tenant the
 * caller named (id or slug), refuses callers from another tenant (as "not
 * found", so ids and slugs of others do not leak), and runs the work in a
 * transaction under the `aiqso_tenant` role with `aiqso.tenant_id` set: row
 * level security then hides every other tenant's rows even from a query that
 * forgot its own `WHERE tenant_id`.
 */
export type TenantTx = Transaction<DB>;

export interface TenantScope {
  tenantId: string;
  trx: TenantTx;
}

export async function runAsTenant<T>(
  db: Database,
  tenantId: string,
  fn: (trx: TenantTx) => Promise<T>,
): Promise<T> {
  return db.transaction().execute(async (trx) => {
    await sql`SELECT set_config('aiqso.tenant_id', ${tenantId}, true)`.execute(trx);
    await sql`SET LOCAL ROLE aiqso_tenant`.execute(trx);
    return fn(trx);
  });
}

export function createTenantAccess(db: Database) {
  async function resolve(principal: Principal, ref: string): Promise<string> {
    const column = ref.startsWith('ten_') ? 'id' : 'slug';
    if (isPlatformAdmin(principal)) {
      const row = await db.selectFrom('tenants').select('id').where(column, '=', ref).executeTakeFirst();
      if (row) return row.id;
    } else if (principal.tenantId) {
      const own = principal.tenantId;
      const row = await runAsTenant(db, own, (trx) =>
        trx
          .selectFrom('tenants')
          .select('id')
          .where(column, '=', ref)
          .where('id', '=', own)
          .executeTakeFirst(),
      );
      if (row) return row.id;
    }
    throw notFound(`tenant ${ref}`);
  }

  return {
    /** Run `fn` inside tenant `ref` for `principal`, who needs at least role `min`. */
    async forTenant<T>(principal: Principal, ref: string, min: Role, fn: (scope: TenantScope) => Promise<T>) {
      const tenantId = await resolve(principal, ref);
      requireRole(principal, min);
      return runAsTenant(db, tenantId, (trx) => fn({ tenantId, trx }));
    },
  };
}

export type TenantAccess = ReturnType<typeof createTenantAccess>;

/** Tenants that may not gain users or credentials: not in good standing, or gone. */
const CLOSED = new Set(['suspended', 'cancelled', 'purged']);

/**
 * Refuse to add `what` (users, API keys) to a suspended, cancelled or purged
 * tenant: whoever still holds its credentials must not be able to mint more
 * access to a workspace that is closed or about to be purged.
 */
export async function requireOpenTenant(trx: TenantTx, tenantId: string, what: string): Promise<void> {
  const tenant = await trx
    .selectFrom('tenants')
    .select(['slug', 'status'])
    .where('id', '=', tenantId)
    .executeTakeFirst();
  if (!tenant) throw notFound(`tenant ${tenantId}`);
  if (CLOSED.has(tenant.status)) {
    throw conflict(`${tenant.slug} is ${tenant.status}; ${what} cannot be added to it`, {
      status: tenant.status,
    });
  }
}

/**
 * API keys do not make API keys: a leaked key that could mint its own
 * successor would outlive its revocation. A signed-in user (with a second
 * factor, for admins) creates keys.
 */
export function requireUserForKeys(principal: Principal): void {
  if (principal.kind === 'api_key') {
    throw new DomainError(
      'forbidden',
      'API keys cannot create API keys (a leaked key could otherwise outlive its revocation); sign in as a user',
    );
  }
}

/**
 * What is handed to a person of the tenant and to nobody else (an archive of
 * all its data, a link into its billing account): the caller must be a
 * signed-in user of this very tenant, not an API key and not a platform
 * operator (the route's role check has made them an owner). `refusal` says,
 * for this thing, why each other caller is refused.
 */
export function requireTenantsOwnUser(
  principal: Principal,
  tenantId: string,
  refusal: { apiKey: string; operator: string },
): void {
  if (principal.kind !== 'user') throw new DomainError('forbidden', refusal.apiKey);
  if (principal.tenantId !== tenantId) throw new DomainError('forbidden', refusal.operator);
}
