import type { ColumnType, Generated } from 'kysely';
import type { DriverKind } from '../core/compute.ts';
import type { WebhookDeliveryStatus } from '../core/events.ts';
import type { ApiKeyPurpose, Role } from '../core/identity.ts';
import type { ResourcePhase, StepState } from '../core/reconcile.ts';
import type { RouteAuth, RouteState } from '../core/routes.ts';
import type { TenantServiceStatus } from '../core/services.ts';
import type { TenantStatus } from '../core/tenants.ts';
import type { Metric } from '../core/usage.ts';

/**
 * Row types of the master database, as Kysely sees them. Keep in step with migrations/;
 * a column of a fixed set of strings also goes in `enum-columns.ts`, which the drift test
 * checks against the schema's CHECK constraints.
 */

type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>;
type CreatedAt = ColumnType<Date, Date | string | undefined, never>;
type Json<T = unknown> = ColumnType<T, string | T, string | T>;

export interface UsersTable {
  id: string;
  email: string;
  password_hash: string | null;
  role: Role;
  tenant_id: string | null;
  /** Product e-mails (migration 0018): only when the user opted in. */
  marketing_emails: Generated<boolean>;
  created_at: CreatedAt;
  updated_at: Timestamp;
}

/** A password reset link (migration 0018): the token as SHA-256 only, expiring, spent once. */
export interface PasswordResetsTable {
  token_hash: string;
  user_id: string;
  created_at: CreatedAt;
  expires_at: Date;
  used_at: Date | null;
}

export type ConsentPurpose = 'marketing_emails';
export type ConsentSource = 'signup' | 'api';

/** One grant or withdrawal of a consent (migration 0018). */
export interface ConsentRecordsTable {
  id: Generated<string>;
  user_id: string;
  purpose: ConsentPurpose;
  granted: boolean;
  source: ConsentSource;
  wording: string;
  recorded_at: CreatedAt;
}

export interface HostsTable {
  id: string;
  name: string;
  driver: DriverKind;
  address: string | null;
  memory_mb: number;
  cores: number;
  disk_gb: number;
  max_containers: number | null;
  draining: Generated<boolean>;
  /** When placement first found this host too full (the operator was alerted); null when nothing waits. */
  capacity_short_since: Generated<Date | null>;
  created_at: CreatedAt;
}

export interface TenantsTable {
  id: string;
  slug: string;
  /** null once purged (migration 0010). */
  company: string | null;
  plan: Generated<string>;
  status: Generated<TenantStatus>;
  status_reason: string | null;
  host_id: string | null;
  stripe_customer_id: string | null;
  cancelled_at: Date | null;
  purge_after: Date | null;
  purged_at: Date | null;
  /** What a purge removed (migration 0010). */
  purge_record: Json<Record<string, unknown>> | null;
  created_at: CreatedAt;
  updated_at: Timestamp;
}

export interface ServicesTable {
  id: string;
  key: string;
  name: string;
  description: Generated<string>;
  kind: 'clone' | 'image' | 'app';
  template: Json;
  stripe_price_id: string | null;
  active: Generated<boolean>;
  created_at: CreatedAt;
  updated_at: Timestamp;
}

export interface SubscriptionsTable {
  id: string;
  tenant_id: string;
  stripe_subscription_id: string | null;
  stripe_customer_id: string | null;
  stripe_price_id: string | null;
  status: string;
  current_period_end: Date | null;
  cancel_at_period_end: Generated<boolean>;
  stripe_updated_at: Date | null;
  created_at: CreatedAt;
  updated_at: Timestamp;
}

export interface TenantServicesTable {
  id: string;
  tenant_id: string;
  service_id: string;
  status: Generated<TenantServiceStatus>;
  status_reason: string | null;
  container_name: string | null;
  db_name: string | null;
  db_role: string | null;
  db_password_enc: string | null;
  created_at: CreatedAt;
  updated_at: Timestamp;
  removed_at: Date | null;
}

export interface UsageMetricsTable {
  id: Generated<string>;
  tenant_id: string;
  tenant_service_id: string | null;
  metric: Metric;
  /** NULL: a gap (the hour could not be measured). */
  value: number | null;
  period_start: Date;
  collected_at: Timestamp;
}

export interface UsageReadingsTable {
  container: string;
  taken_for: Date;
  tenant_id: string;
  tenant_service_id: string | null;
  cpu_seconds: number | null;
  memory_bytes: number | null;
  disk_bytes: number | null;
  db_bytes: number | null;
  net_rx_bytes: number | null;
  net_tx_bytes: number | null;
  read_at: CreatedAt;
}

export interface UsageEdgeCountsTable {
  edge: string;
  tenant_id: string;
  period_start: Date;
  requests: ColumnType<string, number | string | undefined, number | string>;
  response_bytes: ColumnType<string, number | string | undefined, number | string>;
}

export interface UsageMemoryTable {
  container: string;
  period_start: Date;
  tenant_id: string;
  tenant_service_id: string | null;
  slots: number;
  samples: number;
  sum_bytes: number;
  peak_bytes: number;
  driver_peak_first: number | null;
  driver_peak_last: number | null;
}

export interface UsageLogOffsetsTable {
  edge: string;
  file_id: string;
  read_bytes: ColumnType<string, number | string, number | string>;
  updated_at: Timestamp;
}

export interface UsageMonthlyTable {
  tenant_id: string;
  tenant_service_id: string | null;
  metric: string;
  month: ColumnType<Date, string, string>;
  value: number;
  hours: number;
  gap_hours: ColumnType<number, number | undefined, number>;
  updated_at: Timestamp;
}

export interface BackupsTable {
  id: string;
  tenant_id: string;
  tenant_service_id: string | null;
  kind: 'database' | 'container' | 'master' | 'data';
  status: Generated<'running' | 'done' | 'failed'>;
  location: string | null;
  size_bytes: string | null;
  sha256: string | null;
  error: string | null;
  started_at: CreatedAt;
  finished_at: Date | null;
  run_id: string | null;
  service: string | null;
  snapshot_id: string | null;
  purpose: Generated<'scheduled' | 'manual' | 'safety' | 'final'>;
  row_counts: Json<Record<string, number>> | null;
  added_bytes: string | null;
  duration_ms: number | null;
  verified_at: Date | null;
  restore_ms: number | null;
  archive_files: number | null;
  archive_bytes: string | null;
  archive_volume: string | null;
}

export interface BackupVerificationsTable {
  id: string;
  tenant_id: string;
  status: 'passed' | 'failed';
  rto_ms: number | null;
  read_data_percent: number;
  snapshots: ColumnType<VerifiedSnapshot[], string | undefined, string>;
  error: string | null;
  started_at: Date;
  finished_at: CreatedAt;
}

export interface TenantExportsTable {
  id: string;
  tenant_id: string;
  status: Generated<'building' | 'ready' | 'failed' | 'expired'>;
  file: string | null;
  size_bytes: string | null;
  sha256: string | null;
  requested_by: string | null;
  error: string | null;
  expires_at: Date;
  created_at: CreatedAt;
  finished_at: Date | null;
}

/** One snapshot a verification restored: how long it took, and whether its tables held the recorded rows. */
export interface VerifiedSnapshot {
  service: string;
  snapshot: string;
  /** Absent on verifications recorded before data snapshots were checked: a database snapshot. */
  kind?: 'database' | 'data';
  /** A database snapshot's restore time; null for a data snapshot (listed, not restored). */
  restoreMs: number | null;
  ok: boolean;
  problem?: string;
  /** A data snapshot: how long listing its archive (or finding its volume) took. */
  checkMs?: number;
  /** A data snapshot's tar archive as listed from restic: entries and bytes of regular files. */
  files?: number;
  bytes?: number;
  /** A data snapshot whose archive is a volume on the compute driver's storage. */
  volume?: string;
}

export interface PlatformBackupsTable {
  id: string;
  snapshot_id: string;
  location: string;
  key_id: string;
  size_bytes: string;
  added_bytes: string;
  duration_ms: number;
  started_at: Date;
  finished_at: CreatedAt;
}

export interface BackupRepositoriesTable {
  id: string;
  tenant_id: string;
  location: string;
  password_enc: string | null;
  created_at: CreatedAt;
  shredded_at: Date | null;
}

export interface RestoresTable {
  id: string;
  tenant_id: string;
  tenant_service_id: string;
  service: string;
  snapshot_id: string;
  data_snapshot_id: string | null;
  safety_run_id: string | null;
  steps_done: Generated<string[]>;
  status: Generated<'running' | 'done' | 'failed'>;
  error: string | null;
  requested_by: string | null;
  created_at: CreatedAt;
  finished_at: Date | null;
}

export interface AuditLogTable {
  id: Generated<string>;
  at: CreatedAt;
  actor_type: 'user' | 'api_key' | 'system' | 'operator';
  actor_id: string | null;
  tenant_id: string | null;
  action: string;
  target_type: string | null;
  target_id: string | null;
  source_ip: string | null;
  /** sha256(salt:address) of the address kept in audit_addresses (migration 0010). */
  source_ip_commit: string | null;
  result: 'success' | 'failure' | 'denied';
  details: Json<Record<string, unknown>>;
  prev_hash: string;
  hash: string;
}

/** A row's source address, outside the hashed chain so a purge can delete it (migration 0010). */
export interface AuditAddressesTable {
  audit_id: string;
  tenant_id: string | null;
  address: string;
  salt: string;
}

/** The audit chain's head (migration 0007): one row, moved only by the append trigger. */
export interface AuditHeadTable {
  singleton: Generated<boolean>;
  last_id: string | null;
  last_hash: string;
  rows: string;
  moved_at: Generated<Date>;
}

export interface IpAllocationsTable {
  pool: string;
  address: string;
  owner: string;
  created_at: CreatedAt;
}

export interface ProxmoxGuestsTable {
  vmid: number;
  name: string;
  port: number;
  created_at: CreatedAt;
}

export interface RoutesTable {
  id: string;
  hostname: string;
  path_prefix: Generated<string>;
  tenant_id: string | null;
  tenant_service_id: string | null;
  upstream_host: string | null;
  upstream_port: number | null;
  strip_prefix: Generated<boolean>;
  state: Generated<RouteState>;
  allow_cidrs: Generated<string[]>;
  deny_cidrs: Generated<string[]>;
  /** Who signs the route's users in (migration 0009): the edge, or the upstream app itself. */
  auth: Generated<RouteAuth>;
  public_paths: Generated<string[]>;
  created_at: CreatedAt;
  updated_at: Timestamp;
}

export interface OutboxTable {
  id: Generated<string>;
  key: string;
  kind: 'email' | 'stripe' | 'webhook' | 'alert';
  payload: Json<Record<string, unknown>>;
  status: Generated<'pending' | 'delivered' | 'failed'>;
  attempts: Generated<number>;
  last_error: string | null;
  created_at: CreatedAt;
  delivered_at: Date | null;
}

export interface InboxTable {
  id: string;
  source: string;
  type: string;
  payload: Json<Record<string, unknown>>;
  received_at: CreatedAt;
  processed_at: Date | null;
  attempts: Generated<number>;
  last_error: string | null;
}

export interface EmailsTable {
  id: string;
  outbox_key: string;
  tenant_id: string | null;
  recipient: string;
  template: string;
  subject: string;
  transport: string;
  message_id: string | null;
  sent_at: CreatedAt;
}

export interface StepStatus {
  name: string;
  state: StepState;
  attempts: number;
  /** While `waiting`: when the step first said "not yet", and what it waits for. */
  waitingSince?: string;
  waitingFor?: string;
  startedAt?: string;
  finishedAt?: string;
  lastError?: string;
  /** While `running`: what the step reported it is doing now (`StepContext.progress`). */
  progress?: string;
  /** Times the orchestrator found this step's effect gone or changed out of band and repaired it. */
  repairs?: number;
}

export interface ResourcesTable {
  kind: string;
  id: string;
  tenant_id: string | null;
  spec: Json<Record<string, unknown>>;
  deleted: Generated<boolean>;
  generation: Generated<number>;
  observed_generation: Generated<number>;
  phase: Generated<ResourcePhase>;
  steps: Json<StepStatus[]>;
  last_error: string | null;
  failures: Generated<number>;
  created_at: CreatedAt;
  updated_at: Timestamp;
}

export interface LocalBillingObjectsTable {
  id: string;
  kind: 'checkout_session' | 'customer' | 'subscription' | 'billing_portal_session';
  tenant_id: string | null;
  data: Json<Record<string, unknown>>;
  created_at: CreatedAt;
  updated_at: Timestamp;
}

export interface TenantSecretsTable {
  id: string;
  tenant_id: string;
  name: string;
  value_enc: string;
  created_at: CreatedAt;
}

export interface WorkerProcessesTable {
  id: string;
  lock_key: number;
  hostname: string;
  pid: number;
  pool_ids: Generated<string[]>;
  started_at: CreatedAt;
}

export interface OrphansTable {
  source: string;
  name: string;
  first_seen_at: Generated<Date>;
  last_seen_at: Generated<Date>;
}

export interface CertificatesTable {
  name: string;
  names: string[];
  file_base: string;
  challenge: 'http-01' | 'dns-01';
  not_after: Date;
  /** Last successful order or renewal. */
  ordered_at: Date;
  last_attempt_at: Date;
  last_error: string | null;
  created_at: CreatedAt;
  updated_at: Timestamp;
}

export interface DB {
  users: UsersTable;
  hosts: HostsTable;
  tenants: TenantsTable;
  services: ServicesTable;
  subscriptions: SubscriptionsTable;
  tenant_services: TenantServicesTable;
  usage_metrics: UsageMetricsTable;
  usage_readings: UsageReadingsTable;
  usage_edge_counts: UsageEdgeCountsTable;
  usage_monthly: UsageMonthlyTable;
  usage_memory: UsageMemoryTable;
  usage_log_offsets: UsageLogOffsetsTable;
  backups: BackupsTable;
  backup_repositories: BackupRepositoriesTable;
  platform_backups: PlatformBackupsTable;
  backup_verifications: BackupVerificationsTable;
  tenant_exports: TenantExportsTable;
  restores: RestoresTable;
  audit_log: AuditLogTable;
  audit_addresses: AuditAddressesTable;
  audit_head: AuditHeadTable;
  ip_allocations: IpAllocationsTable;
  proxmox_guests: ProxmoxGuestsTable;
  routes: RoutesTable;
  outbox: OutboxTable;
  inbox: InboxTable;
  emails: EmailsTable;
  resources: ResourcesTable;
  local_billing_objects: LocalBillingObjectsTable;
  signing_keys: SigningKeysTable;
  sessions: SessionsTable;
  api_keys: ApiKeysTable;
  user_totp: UserTotpTable;
  totp_used_steps: TotpUsedStepsTable;
  recovery_codes: RecoveryCodesTable;
  worker_processes: WorkerProcessesTable;
  orphans: OrphansTable;
  tenant_secrets: TenantSecretsTable;
  certificates: CertificatesTable;
  health_checks: HealthChecksTable;
  health_transitions: HealthTransitionsTable;
  incidents: IncidentsTable;
  webhook_endpoints: WebhookEndpointsTable;
  invitations: InvitationsTable;
  webhook_events: WebhookEventsTable;
  webhook_deliveries: WebhookDeliveriesTable;
  webhook_attempts: WebhookAttemptsTable;
  password_resets: PasswordResetsTable;
  consent_records: ConsentRecordsTable;
}

// Self-healing (migration 0040).

export type HealthTargetKind = 'dashboard' | 'service';
export type HealthState = 'unknown' | 'healthy' | 'failing' | 'degraded';

export interface HealthChecksTable {
  target_id: string;
  target_kind: HealthTargetKind;
  tenant_id: string;
  state: Generated<HealthState>;
  consecutive_failures: Generated<number>;
  consecutive_ok: Generated<number>;
  rung: Generated<number>;
  next_rung_at: Date | null;
  last_result: string | null;
  recent: Generated<string>;
  last_probe_at: Date | null;
  changed_at: Generated<Date>;
}

export interface HealthTransitionsTable {
  id: Generated<string>;
  target_id: string;
  tenant_id: string;
  healthy: boolean;
  detail: string | null;
  at: Generated<Date>;
}

export interface IncidentRung {
  rung: number;
  action: 'restart' | 'recreate' | 'degraded';
  at: string;
  outcome: string;
}

export interface IncidentsTable {
  id: string;
  tenant_id: string;
  target_id: string;
  target_kind: HealthTargetKind;
  target_name: string;
  reason: string;
  rungs: ColumnType<IncidentRung[], string | undefined, string>;
  opened_at: Generated<Date>;
  resolved_at: Date | null;
  admin_opened_alert: Generated<boolean>;
  admin_resolved_alert: Generated<boolean>;
}

// Identity (migration 0004).

export interface SigningKeysTable {
  kid: string;
  alg: 'EdDSA';
  public_jwk: Json<Record<string, unknown>>;
  private_enc: string;
  created_at: CreatedAt;
  retired_at: Date | null;
}

export interface SessionsTable {
  id: string;
  user_id: string;
  family: string;
  token_hash: string;
  created_at: CreatedAt;
  expires_at: Date;
  revoked_at: Date | null;
  replaced_by: string | null;
}

export interface ApiKeysTable {
  id: string;
  tenant_id: string | null;
  name: string;
  role: Role;
  prefix: string;
  key_hash: string;
  created_by: string | null;
  created_at: CreatedAt;
  expires_at: Date | null;
  revoked_at: Date | null;
  last_used_at: Date | null;
  /** Migration 0010. */
  purpose: Generated<ApiKeyPurpose>;
}

export interface UserTotpTable {
  user_id: string;
  secret_enc: string;
  enabled_at: Date | null;
  created_at: CreatedAt;
}

export interface TotpUsedStepsTable {
  user_id: string;
  step: string | number;
  used_at: CreatedAt;
}

export interface RecoveryCodesTable {
  user_id: string;
  code_hash: string;
  used_at: Date | null;
}

// Team invitations (migration 0018).

export interface InvitationsTable {
  id: string;
  tenant_id: string;
  email: string;
  role: 'tenant_owner' | 'tenant_member';
  token_hash: string;
  invited_by: string | null;
  created_at: CreatedAt;
  expires_at: Date;
  accepted_at: Date | null;
  revoked_at: Date | null;
}

// Event webhooks (migration 0015).

export interface WebhookEndpointsTable {
  id: string;
  tenant_id: string | null;
  url: string;
  events: string[];
  description: string | null;
  secret_enc: string;
  created_at: CreatedAt;
}

export interface WebhookEventsTable {
  id: string;
  seq: Generated<string>;
  /** An EventType (core/events.ts); no CHECK, so a new event needs no migration. */
  type: string;
  tenant_id: string | null;
  data: Json<Record<string, unknown>>;
  created_at: CreatedAt;
  fanned_out_at: Date | null;
}

export interface WebhookDeliveriesTable {
  id: Generated<string>;
  endpoint_id: string;
  event_id: string;
  event_seq: string;
  lane: string;
  tenant_id: string | null;
  status: Generated<WebhookDeliveryStatus>;
  attempts: Generated<number>;
  retry_from: Generated<Date>;
  next_attempt_at: Generated<Date>;
  last_status: number | null;
  last_error: string | null;
  delivered_at: Date | null;
  created_at: CreatedAt;
}

export interface WebhookAttemptsTable {
  id: Generated<string>;
  delivery_id: string;
  attempted_at: CreatedAt;
  status_code: number | null;
  response_excerpt: string | null;
  duration_ms: number;
  error: string | null;
}
