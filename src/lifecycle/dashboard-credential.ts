import { sql } from 'kysely';
import type { Database } from '../db/database.ts';
import { createApiKey } from '../identity/api-keys.ts';
import { sealedContext } from '../identity/rotate-master-key.ts';
import type { SecretBox } from '../identity/secrets.ts';

const NAME = 'dashboard-api-key';
const secretId = (tenantId: string) => `${tenantId}/${NAME}`;

/**
 * The tenant dashboard's credential: a tenant-scoped, read-level API key
 * marked as the dashboard's (so the API believes the client addresses it
 * forwards at sign-in, which no key a tenant makes can do), created once and kept sealed so every (re)deploy of the dashboard container
 * gets the same key. A crash between creating the key and storing it leaves
 * an unused key, which the next attempt revokes.
 */
export function dashboardCredentials(db: Database, box: () => Promise<SecretBox>) {
  const revokeKeys = async (tenantId: string) => {
    await db
      .updateTable('api_keys')
      .set({ revoked_at: sql`now()` })
      .where('tenant_id', '=', tenantId)
      .where('name', '=', NAME)
      .where('revoked_at', 'is', null)
      .execute();
  };
  return {
    async get(tenantId: string): Promise<string> {
      const id = secretId(tenantId);
      const context = sealedContext('tenant_secrets', id);
      const existing = await db
        .selectFrom('tenant_secrets')
        .select('value_enc')
        .where('id', '=', id)
        .executeTakeFirst();
      if (existing) return (await box()).open(existing.value_enc, context);
      await revokeKeys(tenantId);
      const created = await createApiKey(db, {
        tenantId,
        role: 'tenant_member',
        name: NAME,
        createdBy: null,
        purpose: 'dashboard',
      });
      await db
        .insertInto('tenant_secrets')
        .values({ id, tenant_id: tenantId, name: NAME, value_enc: (await box()).seal(created.key, context) })
        .onConflict((oc) => oc.column('id').doNothing())
        .execute();
      const stored = await db
        .selectFrom('tenant_secrets')
        .select('value_enc')
        .where('id', '=', id)
        .executeTakeFirstOrThrow();
      return (await box()).open(stored.value_enc, context);
    },
    async revoke(tenantId: string): Promise<void> {
      await revokeKeys(tenantId);
      await db.deleteFrom('tenant_secrets').where('id', '=', secretId(tenantId)).execute();
    },
  };
}
