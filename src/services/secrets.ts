import { createHmac, randomBytes } from 'node:crypto';
import type { Database } from '../db/database.ts';
import { sealedContext } from '../identity/rotate-master-key.ts';
import type { SecretBox } from '../identity/secrets.ts';

/**
 * A tenant service's secrets. One random root secret per tenant service,
 * generated on first use and kept sealed in `tenant_services.db_password_enc`
 * (bound to the row, re-sealed by master-key rotation): it is the service
 * database's password, and every `${secret:<name>}` of the template is an
 * HMAC of it, so each is stable across redeploys and differs per service.
 */
export function tenantServiceSecrets(db: Database, box: () => Promise<SecretBox>) {
  return {
    async root(tenantServiceId: string): Promise<string> {
      const context = sealedContext('tenant_services', tenantServiceId);
      const read = () =>
        db
          .selectFrom('tenant_services')
          .select('db_password_enc')
          .where('id', '=', tenantServiceId)
          .executeTakeFirstOrThrow();
      let row = await read();
      if (!row.db_password_enc) {
        // Two runs racing both try; the first write wins and both read it back.
        await db
          .updateTable('tenant_services')
          .set({ db_password_enc: (await box()).seal(randomBytes(24).toString('base64url'), context) })
          .where('id', '=', tenantServiceId)
          .where('db_password_enc', 'is', null)
          .execute();
        row = await read();
      }
      return (await box()).open(row.db_password_enc!, context);
    },
  };
}

export type TenantServiceSecrets = ReturnType<typeof tenantServiceSecrets>;

/** A named secret derived from the root: stable per (tenant service, name). */
export function derivedSecret(root: string, name: string): string {
  return createHmac('sha256', root).update(`secret:${name}`).digest('base64url');
}
