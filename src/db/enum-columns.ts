import type { SelectType } from 'kysely';
import { DRIVER_KINDS } from '../core/compute.ts';
import { WEBHOOK_DELIVERY_STATUSES } from '../core/events.ts';
import { API_KEY_PURPOSES, ROLES } from '../core/identity.ts';
import { RESOURCE_PHASES } from '../core/reconcile.ts';
import { ROUTE_AUTHS, ROUTE_STATES } from '../core/routes.ts';
import { TENANT_SERVICE_STATUSES } from '../core/services.ts';
import { TENANT_STATUSES } from '../core/tenants.ts';
import { METRICS } from '../core/usage.ts';
import type { DB } from './tables.ts';

/** The values a column of `table` may hold, as the row types say (null aside). */
type ColumnValues<T extends keyof DB, C extends keyof DB[T]> = Exclude<SelectType<DB[T][C]>, null>;

/** A union of string literals (not `string`, not a structure). */
type IsStringSet<V> = [V] extends [never]
  ? false
  : [V] extends [string]
    ? string extends V
      ? false
      : true
    : false;

/** `table.column` of every column whose row type is a fixed set of strings. */
export type EnumColumn = {
  [T in keyof DB]: {
    [C in keyof DB[T]]: IsStringSet<ColumnValues<T, C>> extends true ? `${T}.${C & string}` : never;
  }[keyof DB[T]];
}[keyof DB];

type ValuesOf<K extends EnumColumn> = K extends `${infer T extends keyof DB}.${infer C}`
  ? C extends keyof DB[T]
    ? ColumnValues<T, C>
    : never
  : never;

/**
 * Every column whose row type (`tables.ts`) is a fixed set of strings, with that
 * set. The compiler holds this list to the row types, both ways; the schema-drift
 * test holds it to the schema's CHECK constraints, both ways. A new column of
 * that kind goes here, or the build stops naming it.
 */
export const ENUM_COLUMNS = {
  'users.role': ROLES,
  'hosts.driver': DRIVER_KINDS,
  'tenants.status': TENANT_STATUSES,
  'services.kind': ['clone', 'image', 'app'],
  'tenant_services.status': TENANT_SERVICE_STATUSES,
  'backups.kind': ['database', 'container', 'master', 'data'],
  'backups.status': ['running', 'done', 'failed'],
  'backups.purpose': ['scheduled', 'manual', 'safety', 'final'],
  'restores.status': ['running', 'done', 'failed'],
  'backup_verifications.status': ['passed', 'failed'],
  'tenant_exports.status': ['building', 'ready', 'failed', 'expired'],
  'health_checks.target_kind': ['dashboard', 'service'],
  'health_checks.state': ['unknown', 'healthy', 'failing', 'degraded'],
  'incidents.target_kind': ['dashboard', 'service'],
  'usage_metrics.metric': METRICS,
  'audit_log.actor_type': ['user', 'api_key', 'system', 'operator'],
  'audit_log.result': ['success', 'failure', 'denied'],
  'routes.state': ROUTE_STATES,
  'routes.auth': ROUTE_AUTHS,
  'webhook_deliveries.status': WEBHOOK_DELIVERY_STATUSES,
  'outbox.kind': ['email', 'stripe', 'webhook', 'alert'],
  'outbox.status': ['pending', 'delivered', 'failed'],
  'resources.phase': RESOURCE_PHASES,
  'local_billing_objects.kind': ['checkout_session', 'customer', 'subscription', 'billing_portal_session'],
  'certificates.challenge': ['http-01', 'dns-01'],
  'signing_keys.alg': ['EdDSA'],
  'api_keys.role': ROLES,
  'api_keys.purpose': API_KEY_PURPOSES,
  'consent_records.purpose': ['marketing_emails'],
  'consent_records.source': ['signup', 'api'],
  'invitations.role': ['tenant_owner', 'tenant_member'],
} as const satisfies { readonly [K in EnumColumn]: readonly ValuesOf<K>[] };

/** Columns whose row type allows a value ENUM_COLUMNS does not list. */
type Uncovered = {
  [K in EnumColumn]: [Exclude<ValuesOf<K>, (typeof ENUM_COLUMNS)[K][number]>] extends [never] ? never : K;
}[EnumColumn];
// A compile error here names a column whose row type allows more than ENUM_COLUMNS lists.
const covered: [Uncovered] extends [never] ? true : Uncovered = true;
void covered;
