import { DomainError } from '../core/errors.ts';
import type { Database } from './database.ts';

/** The email address of a tenant's owner (the first, if several), whom the platform's mail goes to. */
export async function tenantOwnerEmail(db: Database, tenantId: string): Promise<string> {
  const owner = await db
    .selectFrom('users')
    .select('email')
    .where('tenant_id', '=', tenantId)
    .where('role', '=', 'tenant_owner')
    .orderBy('id')
    .executeTakeFirst();
  if (!owner) throw new DomainError('not_found', 'tenant has no owner to write to');
  return owner.email;
}
