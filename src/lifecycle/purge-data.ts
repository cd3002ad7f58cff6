import { sql, type Transaction } from 'kysely';
import type { Database } from '../db/database.ts';
import type { DB } from '../db/tables.ts';
import { TENANT_KIND } from '../core/kinds.ts';

/**
 * What a purge must find before it deletes anything: the strings that
 * identify the tenant and its people (to find them in mail records, outbox
 * and inbox payloads), and where its files are.
 */
export interface PurgeTargets {
  tenantId: string;
  slug: string;
  /** Strings that identify the tenant or its people: its id, company, users' emails, Stripe ids. */
  needles: string[];
  /** Outbox keys of the mail sent to the tenant or its people (the files mailer names files by them). */
  mailKeys: string[];
  /** Where its backups were recorded (final dumps). */
  backupLocations: string[];
}

export async function purgeTargets(db: Database, tenantId: string): Promise<PurgeTargets | undefined> {
  const tenant = await db
    .selectFrom('tenants')
    .select(['slug', 'company', 'stripe_customer_id'])
    .where('id', '=', tenantId)
    .executeTakeFirst();
  if (!tenant) return undefined;
  const emails = (
    await db.selectFrom('users').select('email').where('tenant_id', '=', tenantId).execute()
  ).map((u) => u.email);
  const subscriptions = (
    await db
      .selectFrom('subscriptions')
      .select(['stripe_subscription_id', 'stripe_customer_id'])
      .where('tenant_id', '=', tenantId)
      .execute()
  ).flatMap((s) => [s.stripe_subscription_id, s.stripe_customer_id]);
  const needles = [tenantId, tenant.company, tenant.stripe_customer_id, ...emails, ...subscriptions]
    .filter((n): n is string => typeof n === 'string' && n.length >= 3)
    // As the text appears inside JSON (payloads are searched as text).
    .map((n) => JSON.stringify(n).slice(1, -1));
  const unique = [...new Set(needles)];
  const mailKeys = (
    await db
      .selectFrom('outbox')
      .select('key')
      .where('kind', 'in', ['email', 'alert'])
      .where(mentions(unique))
      .execute()
  ).map((r) => r.key);
  const backupLocations = (
    await db.selectFrom('backups').select('location').where('tenant_id', '=', tenantId).execute()
  )
    .map((b) => b.location)
    .filter((l): l is string => l !== null);
  return { tenantId, slug: tenant.slug, needles: unique, mailKeys, backupLocations };
}

/** A payload (as JSON text) that contains any of `needles`. */
function mentions(needles: string[], column = 'payload') {
  const text = sql.ref(column);
  return sql<boolean>`EXISTS (SELECT 1 FROM unnest(${needles}::text[]) AS n
    WHERE position(n IN ${text}::text) > 0)`;
}

const count = (r: { numDeletedRows?: bigint; numUpdatedRows?: bigint }[]) =>
  Number(r[0]?.numDeletedRows ?? r[0]?.numUpdatedRows ?? 0);

/**
 * Remove the tenant's personal data in `trx`: its people, credentials,
 * routes, billing records, backup records and health history go; mail records and outbox and
 * inbox payloads that name it are anonymised; the source addresses of its
 * audit rows are deleted (the chain holds only commitments to them, so it
 * still verifies); its resource's spec loses the company name. Returns what
 * was removed, by kind.
 */
export async function removePersonalData(
  trx: Transaction<DB>,
  t: PurgeTargets,
): Promise<Record<string, number>> {
  const id = t.tenantId;
  const del = async (
    table:
      | 'users'
      | 'api_keys'
      | 'tenant_secrets'
      | 'routes'
      | 'subscriptions'
      | 'backups'
      | 'health_checks'
      | 'health_transitions'
      | 'incidents',
  ) => count(await trx.deleteFrom(table).where('tenant_id', '=', id).execute());
  const removed: Record<string, number> = {
    users: await del('users'),
    apiKeys: await del('api_keys'),
    secrets: await del('tenant_secrets'),
    routes: await del('routes'),
    subscriptions: await del('subscriptions'),
    backups: await del('backups'),
    // Health history: incidents name the workspace and its services.
    healthRecords:
      (await del('health_checks')) + (await del('health_transitions')) + (await del('incidents')),
    billingObjects: count(
      await trx.deleteFrom('local_billing_objects').where('tenant_id', '=', id).execute(),
    ),
    // The tenant's own webhook endpoints (their URLs and secrets), with their deliveries.
    webhookEndpoints: count(await trx.deleteFrom('webhook_endpoints').where('tenant_id', '=', id).execute()),
  };
  removed.emailRecords = count(
    await trx
      .updateTable('emails')
      .set({ recipient: '[purged]', subject: '[purged]' })
      .where((eb) => eb.or([eb('tenant_id', '=', id), mentions(t.needles, 'recipient')]))
      .execute(),
  );
  removed.outboxPayloads = count(
    await trx
      .updateTable('outbox')
      .set({
        payload: sql`jsonb_build_object('purged', true, 'tenantId', ${id}::text)`,
        status: sql`CASE WHEN status = 'pending' THEN 'failed' ELSE status END`,
        last_error: sql`CASE WHEN status = 'pending' THEN 'the tenant was purged before delivery' ELSE last_error END`,
      })
      .where(mentions(t.needles))
      .execute(),
  );
  // Events not yet processed keep their payload: processing still needs it (and finds no tenant).
  removed.inboxPayloads = count(
    await trx
      .updateTable('inbox')
      .set({ payload: sql`jsonb_build_object('id', id, 'type', type, 'purged', true)` })
      .where('processed_at', 'is not', null)
      .where(mentions(t.needles))
      .execute(),
  );
  // Addresses of the tenant's own people and of anonymous callers on it; an admin's stay.
  removed.auditAddresses = count(
    await trx
      .deleteFrom('audit_addresses')
      .where('audit_addresses.tenant_id', '=', id)
      .where((eb) =>
        eb.not(
          eb.exists(
            eb
              .selectFrom('audit_log as l')
              .innerJoin('users as u', 'u.id', 'l.actor_id')
              .select('l.id')
              .whereRef('l.id', '=', 'audit_addresses.audit_id')
              .where('u.role', '=', 'platform_admin'),
          ),
        ),
      )
      .execute(),
  );
  await trx
    .updateTable('resources')
    .set({ spec: sql`spec || jsonb_build_object('company', '')` })
    .where('kind', '=', TENANT_KIND)
    .where('id', '=', id)
    .execute();
  return removed;
}
