CREATE SCHEMA public;

CREATE FUNCTION public.aiqso_current_tenant() RETURNS text
    LANGUAGE sql STABLE
    AS $$
  SELECT nullif(current_setting('aiqso.tenant_id', true), '')
$$;

CREATE FUNCTION public.audit_head_guard() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
  IF TG_OP = 'UPDATE' AND pg_trigger_depth() > 1 THEN
    RETURN NEW;
  END IF;
  RAISE EXCEPTION 'audit_head moves only with an audit_log append' USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE FUNCTION public.audit_log_advance_head() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
DECLARE
  head audit_head%ROWTYPE;
BEGIN
  SELECT * INTO head FROM audit_head WHERE singleton FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'audit_head is missing' USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF NEW.prev_hash IS DISTINCT FROM head.last_hash THEN
    RAISE EXCEPTION 'audit_log append does not link to the chain head (id %)', head.last_id
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  UPDATE audit_head
     SET last_id = NEW.id, last_hash = NEW.hash, rows = head.rows + 1, moved_at = now()
   WHERE singleton;
  RETURN NEW;
END;
$$;

CREATE FUNCTION public.audit_log_append_only() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
  RAISE EXCEPTION 'audit_log is append-only' USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE FUNCTION public.routes_notify() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
  PERFORM pg_notify('aiqso_routes', COALESCE(NEW.hostname, OLD.hostname));
  RETURN NULL;
END;
$$;

CREATE TABLE public.api_keys (
    id text NOT NULL,
    tenant_id text,
    name text NOT NULL,
    role text NOT NULL,
    prefix text NOT NULL,
    key_hash text NOT NULL,
    created_by text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    expires_at timestamp with time zone,
    revoked_at timestamp with time zone,
    last_used_at timestamp with time zone,
    purpose text DEFAULT 'integration'::text NOT NULL,
    CONSTRAINT api_keys_check CHECK (((role = 'platform_admin'::text) = (tenant_id IS NULL))),
    CONSTRAINT api_keys_id_check CHECK ((id ~~ 'key\_%'::text)),
    CONSTRAINT api_keys_name_check CHECK (((length(name) >= 1) AND (length(name) <= 100))),
    CONSTRAINT api_keys_purpose_check CHECK ((purpose = ANY (ARRAY['integration'::text, 'dashboard'::text]))),
    CONSTRAINT api_keys_role_check CHECK ((role = ANY (ARRAY['platform_admin'::text, 'tenant_owner'::text, 'tenant_member'::text])))
);

CREATE TABLE public.audit_addresses (
    audit_id bigint NOT NULL,
    tenant_id text,
    address inet NOT NULL,
    salt text NOT NULL
);

CREATE TABLE public.audit_head (
    singleton boolean DEFAULT true NOT NULL,
    last_id bigint,
    last_hash text NOT NULL,
    rows bigint NOT NULL,
    moved_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT audit_head_rows_check CHECK ((rows >= 0)),
    CONSTRAINT audit_head_singleton_check CHECK (singleton)
);

CREATE TABLE public.audit_log (
    id bigint NOT NULL,
    at timestamp with time zone DEFAULT now() NOT NULL,
    actor_type text NOT NULL,
    actor_id text,
    tenant_id text,
    action text NOT NULL,
    target_type text,
    target_id text,
    source_ip inet,
    result text NOT NULL,
    details jsonb DEFAULT '{}'::jsonb NOT NULL,
    prev_hash text NOT NULL,
    hash text NOT NULL,
    source_ip_commit text,
    CONSTRAINT audit_log_actor_type_check CHECK ((actor_type = ANY (ARRAY['user'::text, 'api_key'::text, 'system'::text, 'operator'::text]))),
    CONSTRAINT audit_log_result_check CHECK ((result = ANY (ARRAY['success'::text, 'failure'::text, 'denied'::text])))
);

ALTER TABLE public.audit_log ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.audit_log_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE public.backup_repositories (
    id text NOT NULL,
    tenant_id text NOT NULL,
    location text NOT NULL,
    password_enc text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    shredded_at timestamp with time zone,
    CONSTRAINT backup_repositories_check CHECK (((password_enc IS NULL) = (shredded_at IS NOT NULL))),
    CONSTRAINT backup_repositories_id_check CHECK ((id ~~ 'brp\_%'::text))
);

CREATE TABLE public.backup_verifications (
    id text NOT NULL,
    tenant_id text NOT NULL,
    status text NOT NULL,
    rto_ms integer,
    read_data_percent integer NOT NULL,
    snapshots jsonb DEFAULT '[]'::jsonb NOT NULL,
    error text,
    started_at timestamp with time zone NOT NULL,
    finished_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT backup_verifications_id_check CHECK ((id ~~ 'bvf\_%'::text)),
    CONSTRAINT backup_verifications_status_check CHECK ((status = ANY (ARRAY['passed'::text, 'failed'::text])))
);

CREATE TABLE public.backups (
    id text NOT NULL,
    tenant_id text NOT NULL,
    tenant_service_id text,
    kind text NOT NULL,
    status text DEFAULT 'running'::text NOT NULL,
    location text,
    size_bytes bigint,
    sha256 text,
    error text,
    started_at timestamp with time zone DEFAULT now() NOT NULL,
    finished_at timestamp with time zone,
    run_id text,
    service text,
    snapshot_id text,
    purpose text DEFAULT 'scheduled'::text NOT NULL,
    row_counts jsonb,
    added_bytes bigint,
    duration_ms integer,
    verified_at timestamp with time zone,
    restore_ms integer,
    archive_files integer,
    archive_bytes bigint,
    archive_volume text,
    CONSTRAINT backups_archive_bytes_check CHECK ((archive_bytes >= 0)),
    CONSTRAINT backups_archive_files_check CHECK ((archive_files >= 0)),
    CONSTRAINT backups_id_check CHECK ((id ~~ 'bkp\_%'::text)),
    CONSTRAINT backups_kind_check CHECK ((kind = ANY (ARRAY['database'::text, 'container'::text, 'master'::text, 'data'::text]))),
    CONSTRAINT backups_purpose_check CHECK ((purpose = ANY (ARRAY['scheduled'::text, 'manual'::text, 'safety'::text, 'final'::text]))),
    CONSTRAINT backups_status_check CHECK ((status = ANY (ARRAY['running'::text, 'done'::text, 'failed'::text])))
);

CREATE TABLE public.certificates (
    name text NOT NULL,
    names text[] NOT NULL,
    file_base text NOT NULL,
    challenge text NOT NULL,
    not_after timestamp with time zone NOT NULL,
    ordered_at timestamp with time zone NOT NULL,
    last_attempt_at timestamp with time zone NOT NULL,
    last_error text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT certificates_challenge_check CHECK ((challenge = ANY (ARRAY['http-01'::text, 'dns-01'::text]))),
    CONSTRAINT certificates_check CHECK (((cardinality(names) > 0) AND (names[1] = name)))
);

CREATE TABLE public.consent_records (
    id bigint NOT NULL,
    user_id text NOT NULL,
    purpose text NOT NULL,
    granted boolean NOT NULL,
    source text NOT NULL,
    wording text NOT NULL,
    recorded_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT consent_records_purpose_check CHECK ((purpose = 'marketing_emails'::text)),
    CONSTRAINT consent_records_source_check CHECK ((source = ANY (ARRAY['signup'::text, 'api'::text])))
);

ALTER TABLE public.consent_records ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.consent_records_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE public.emails (
    id text NOT NULL,
    outbox_key text NOT NULL,
    tenant_id text,
    recipient text NOT NULL,
    template text NOT NULL,
    subject text NOT NULL,
    transport text NOT NULL,
    message_id text,
    sent_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT emails_id_check CHECK ((id ~~ 'eml\_%'::text))
);

CREATE TABLE public.health_checks (
    target_id text NOT NULL,
    target_kind text NOT NULL,
    tenant_id text NOT NULL,
    state text DEFAULT 'unknown'::text NOT NULL,
    consecutive_failures integer DEFAULT 0 NOT NULL,
    consecutive_ok integer DEFAULT 0 NOT NULL,
    rung integer DEFAULT 0 NOT NULL,
    next_rung_at timestamp with time zone,
    last_result text,
    recent text DEFAULT ''::text NOT NULL,
    last_probe_at timestamp with time zone,
    changed_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT health_checks_rung_check CHECK (((rung >= 0) AND (rung <= 3))),
    CONSTRAINT health_checks_state_check CHECK ((state = ANY (ARRAY['unknown'::text, 'healthy'::text, 'failing'::text, 'degraded'::text]))),
    CONSTRAINT health_checks_target_kind_check CHECK ((target_kind = ANY (ARRAY['dashboard'::text, 'service'::text])))
);

CREATE TABLE public.health_transitions (
    id bigint NOT NULL,
    target_id text NOT NULL,
    tenant_id text NOT NULL,
    healthy boolean NOT NULL,
    detail text,
    at timestamp with time zone DEFAULT now() NOT NULL
);

ALTER TABLE public.health_transitions ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.health_transitions_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE public.hosts (
    id text NOT NULL,
    name text NOT NULL,
    driver text NOT NULL,
    address text,
    memory_mb integer NOT NULL,
    cores integer NOT NULL,
    disk_gb integer NOT NULL,
    max_containers integer,
    draining boolean DEFAULT false NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    capacity_short_since timestamp with time zone,
    CONSTRAINT hosts_cores_check CHECK ((cores > 0)),
    CONSTRAINT hosts_disk_gb_check CHECK ((disk_gb > 0)),
    CONSTRAINT hosts_driver_check CHECK ((driver = ANY (ARRAY['process'::text, 'lxc'::text, 'proxmox'::text]))),
    CONSTRAINT hosts_id_check CHECK ((id ~~ 'hst\_%'::text)),
    CONSTRAINT hosts_memory_mb_check CHECK ((memory_mb > 0))
);

CREATE TABLE public.inbox (
    id text NOT NULL,
    source text NOT NULL,
    type text NOT NULL,
    payload jsonb NOT NULL,
    received_at timestamp with time zone DEFAULT now() NOT NULL,
    processed_at timestamp with time zone,
    attempts integer DEFAULT 0 NOT NULL,
    last_error text
);

CREATE TABLE public.incidents (
    id text NOT NULL,
    tenant_id text NOT NULL,
    target_id text NOT NULL,
    target_kind text NOT NULL,
    target_name text NOT NULL,
    reason text NOT NULL,
    rungs jsonb DEFAULT '[]'::jsonb NOT NULL,
    opened_at timestamp with time zone DEFAULT now() NOT NULL,
    resolved_at timestamp with time zone,
    admin_opened_alert boolean DEFAULT false NOT NULL,
    admin_resolved_alert boolean DEFAULT false NOT NULL,
    CONSTRAINT incidents_id_check CHECK ((id ~~ 'inc\_%'::text)),
    CONSTRAINT incidents_target_kind_check CHECK ((target_kind = ANY (ARRAY['dashboard'::text, 'service'::text])))
);

CREATE TABLE public.invitations (
    id text NOT NULL,
    tenant_id text NOT NULL,
    email text NOT NULL,
    role text NOT NULL,
    token_hash text NOT NULL,
    invited_by text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    expires_at timestamp with time zone NOT NULL,
    accepted_at timestamp with time zone,
    revoked_at timestamp with time zone,
    CONSTRAINT invitations_id_check CHECK ((id ~~ 'inv\_%'::text)),
    CONSTRAINT invitations_role_check CHECK ((role = ANY (ARRAY['tenant_owner'::text, 'tenant_member'::text])))
);

CREATE TABLE public.ip_allocations (
    pool cidr NOT NULL,
    address inet NOT NULL,
    owner text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL
);

CREATE TABLE public.local_billing_objects (
    id text NOT NULL,
    kind text NOT NULL,
    tenant_id text,
    data jsonb NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT local_billing_objects_kind_check CHECK ((kind = ANY (ARRAY['checkout_session'::text, 'customer'::text, 'subscription'::text, 'billing_portal_session'::text])))
);

CREATE TABLE public.orphans (
    source text NOT NULL,
    name text NOT NULL,
    first_seen_at timestamp with time zone DEFAULT now() NOT NULL,
    last_seen_at timestamp with time zone DEFAULT now() NOT NULL
);

CREATE TABLE public.outbox (
    id bigint NOT NULL,
    key text NOT NULL,
    kind text NOT NULL,
    payload jsonb NOT NULL,
    status text DEFAULT 'pending'::text NOT NULL,
    attempts integer DEFAULT 0 NOT NULL,
    last_error text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    delivered_at timestamp with time zone,
    CONSTRAINT outbox_kind_check CHECK ((kind = ANY (ARRAY['email'::text, 'stripe'::text, 'webhook'::text, 'alert'::text]))),
    CONSTRAINT outbox_status_check CHECK ((status = ANY (ARRAY['pending'::text, 'delivered'::text, 'failed'::text])))
);

ALTER TABLE public.outbox ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.outbox_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE public.password_resets (
    token_hash text NOT NULL,
    user_id text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    expires_at timestamp with time zone NOT NULL,
    used_at timestamp with time zone
);

CREATE TABLE public.platform_backups (
    id text NOT NULL,
    snapshot_id text NOT NULL,
    location text NOT NULL,
    key_id text NOT NULL,
    size_bytes bigint NOT NULL,
    added_bytes bigint NOT NULL,
    duration_ms integer NOT NULL,
    started_at timestamp with time zone NOT NULL,
    finished_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT platform_backups_id_check CHECK ((id ~~ 'bkp\_%'::text))
);

CREATE TABLE public.proxmox_guests (
    vmid integer NOT NULL,
    name text NOT NULL,
    port integer NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT proxmox_guests_port_check CHECK (((port >= 1) AND (port <= 65535))),
    CONSTRAINT proxmox_guests_vmid_check CHECK (((vmid >= 100) AND (vmid <= 999999999)))
);

CREATE TABLE public.recovery_codes (
    user_id text NOT NULL,
    code_hash text NOT NULL,
    used_at timestamp with time zone
);

CREATE TABLE public.resources (
    kind text NOT NULL,
    id text NOT NULL,
    tenant_id text,
    spec jsonb DEFAULT '{}'::jsonb NOT NULL,
    deleted boolean DEFAULT false NOT NULL,
    generation integer DEFAULT 1 NOT NULL,
    observed_generation integer DEFAULT 0 NOT NULL,
    phase text DEFAULT 'pending'::text NOT NULL,
    steps jsonb DEFAULT '[]'::jsonb NOT NULL,
    last_error text,
    failures integer DEFAULT 0 NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT resources_phase_check CHECK ((phase = ANY (ARRAY['pending'::text, 'reconciling'::text, 'ready'::text, 'failed'::text, 'deleted'::text])))
);

CREATE TABLE public.restores (
    id text NOT NULL,
    tenant_id text NOT NULL,
    tenant_service_id text NOT NULL,
    service text NOT NULL,
    snapshot_id text NOT NULL,
    data_snapshot_id text,
    safety_run_id text,
    steps_done text[] DEFAULT '{}'::text[] NOT NULL,
    status text DEFAULT 'running'::text NOT NULL,
    error text,
    requested_by text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    finished_at timestamp with time zone,
    CONSTRAINT restores_id_check CHECK ((id ~~ 'rst\_%'::text)),
    CONSTRAINT restores_status_check CHECK ((status = ANY (ARRAY['running'::text, 'done'::text, 'failed'::text])))
);

CREATE TABLE public.routes (
    id text NOT NULL,
    hostname text NOT NULL,
    path_prefix text DEFAULT ''::text NOT NULL,
    tenant_id text,
    tenant_service_id text,
    upstream_host text,
    upstream_port integer,
    strip_prefix boolean DEFAULT true NOT NULL,
    state text DEFAULT 'active'::text NOT NULL,
    allow_cidrs text[] DEFAULT '{}'::text[] NOT NULL,
    deny_cidrs text[] DEFAULT '{}'::text[] NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    auth text DEFAULT 'edge'::text NOT NULL,
    public_paths text[] DEFAULT '{}'::text[] NOT NULL,
    CONSTRAINT routes_auth_check CHECK ((auth = ANY (ARRAY['edge'::text, 'app'::text]))),
    CONSTRAINT routes_id_check CHECK ((id ~~ 'rte\_%'::text)),
    CONSTRAINT routes_path_prefix_check CHECK (((path_prefix = ''::text) OR (path_prefix ~ '^/[a-z0-9][a-z0-9-]*$'::text))),
    CONSTRAINT routes_public_paths_check CHECK ((array_position(public_paths, NULL::text) IS NULL)),
    CONSTRAINT routes_state_check CHECK ((state = ANY (ARRAY['active'::text, 'provisioning'::text, 'suspended'::text, 'unavailable'::text]))),
    CONSTRAINT routes_upstream_port_check CHECK (((upstream_port >= 1) AND (upstream_port <= 65535)))
);

CREATE TABLE public.schema_migrations (
    version integer NOT NULL,
    name text NOT NULL,
    applied_at timestamp with time zone DEFAULT now() NOT NULL
);

CREATE TABLE public.services (
    id text NOT NULL,
    key text NOT NULL,
    name text NOT NULL,
    description text DEFAULT ''::text NOT NULL,
    kind text NOT NULL,
    template jsonb NOT NULL,
    stripe_price_id text,
    active boolean DEFAULT true NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT services_id_check CHECK ((id ~~ 'svc\_%'::text)),
    CONSTRAINT services_key_check CHECK ((key ~ '^[a-z][a-z0-9-]{0,30}$'::text)),
    CONSTRAINT services_kind_check CHECK ((kind = ANY (ARRAY['clone'::text, 'image'::text, 'app'::text])))
);

CREATE TABLE public.sessions (
    id text NOT NULL,
    user_id text NOT NULL,
    family text NOT NULL,
    token_hash text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    expires_at timestamp with time zone NOT NULL,
    revoked_at timestamp with time zone,
    replaced_by text,
    CONSTRAINT sessions_id_check CHECK ((id ~~ 'ses\_%'::text))
);

CREATE TABLE public.signing_keys (
    kid text NOT NULL,
    alg text NOT NULL,
    public_jwk jsonb NOT NULL,
    private_enc text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    retired_at timestamp with time zone,
    CONSTRAINT signing_keys_alg_check CHECK ((alg = 'EdDSA'::text))
);

CREATE TABLE public.subscriptions (
    id text NOT NULL,
    tenant_id text NOT NULL,
    stripe_subscription_id text,
    stripe_customer_id text,
    stripe_price_id text,
    status text NOT NULL,
    current_period_end timestamp with time zone,
    cancel_at_period_end boolean DEFAULT false NOT NULL,
    stripe_updated_at timestamp with time zone,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT subscriptions_id_check CHECK ((id ~~ 'sub\_%'::text))
);

CREATE TABLE public.tenant_exports (
    id text NOT NULL,
    tenant_id text NOT NULL,
    status text DEFAULT 'building'::text NOT NULL,
    file text,
    size_bytes bigint,
    sha256 text,
    requested_by text,
    error text,
    expires_at timestamp with time zone NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    finished_at timestamp with time zone,
    CONSTRAINT tenant_exports_id_check CHECK ((id ~~ 'exp\_%'::text)),
    CONSTRAINT tenant_exports_status_check CHECK ((status = ANY (ARRAY['building'::text, 'ready'::text, 'failed'::text, 'expired'::text])))
);

CREATE TABLE public.tenant_secrets (
    id text NOT NULL,
    tenant_id text NOT NULL,
    name text NOT NULL,
    value_enc text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT tenant_secrets_check CHECK ((id = ((tenant_id || '/'::text) || name)))
);

CREATE TABLE public.tenant_services (
    id text NOT NULL,
    tenant_id text NOT NULL,
    service_id text NOT NULL,
    status text DEFAULT 'pending'::text NOT NULL,
    status_reason text,
    container_name text,
    db_name text,
    db_role text,
    db_password_enc text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    removed_at timestamp with time zone,
    CONSTRAINT tenant_services_id_check CHECK ((id ~~ 'tsv\_%'::text)),
    CONSTRAINT tenant_services_status_check CHECK ((status = ANY (ARRAY['pending'::text, 'deploying'::text, 'active'::text, 'degraded'::text, 'stopped'::text, 'removing'::text, 'removed'::text, 'failed'::text])))
);

CREATE TABLE public.tenants (
    id text NOT NULL,
    slug text NOT NULL,
    company text,
    plan text DEFAULT 'starter'::text NOT NULL,
    status text DEFAULT 'pending_payment'::text NOT NULL,
    status_reason text,
    host_id text,
    stripe_customer_id text,
    cancelled_at timestamp with time zone,
    purge_after timestamp with time zone,
    purged_at timestamp with time zone,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    purge_record jsonb,
    CONSTRAINT tenants_company_check CHECK (((length(company) >= 1) AND (length(company) <= 200))),
    CONSTRAINT tenants_company_until_purged CHECK (((company IS NOT NULL) OR (status = 'purged'::text))),
    CONSTRAINT tenants_id_check CHECK ((id ~~ 'ten\_%'::text)),
    CONSTRAINT tenants_slug_check CHECK ((slug ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'::text)),
    CONSTRAINT tenants_status_check CHECK ((status = ANY (ARRAY['pending_payment'::text, 'provisioning'::text, 'active'::text, 'suspended'::text, 'cancelled'::text, 'purged'::text, 'failed'::text])))
);

CREATE TABLE public.totp_used_steps (
    user_id text NOT NULL,
    step bigint NOT NULL,
    used_at timestamp with time zone DEFAULT now() NOT NULL
);

CREATE TABLE public.usage_edge_counts (
    edge text NOT NULL,
    tenant_id text NOT NULL,
    period_start timestamp with time zone NOT NULL,
    requests bigint DEFAULT 0 NOT NULL,
    response_bytes bigint DEFAULT 0 NOT NULL,
    CONSTRAINT usage_edge_counts_period_start_check CHECK ((date_trunc('hour'::text, period_start) = period_start)),
    CONSTRAINT usage_edge_counts_requests_check CHECK ((requests >= 0)),
    CONSTRAINT usage_edge_counts_response_bytes_check CHECK ((response_bytes >= 0))
);

CREATE TABLE public.usage_log_offsets (
    edge text NOT NULL,
    file_id text NOT NULL,
    read_bytes bigint NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT usage_log_offsets_read_bytes_check CHECK ((read_bytes >= 0))
);

CREATE TABLE public.usage_memory (
    container text NOT NULL,
    period_start timestamp with time zone NOT NULL,
    tenant_id text NOT NULL,
    tenant_service_id text,
    slots integer NOT NULL,
    samples integer NOT NULL,
    sum_bytes double precision NOT NULL,
    peak_bytes double precision NOT NULL,
    driver_peak_first double precision,
    driver_peak_last double precision,
    CONSTRAINT usage_memory_period_start_check CHECK ((date_trunc('hour'::text, period_start) = period_start)),
    CONSTRAINT usage_memory_samples_check CHECK ((samples > 0))
);

CREATE TABLE public.usage_metrics (
    id bigint NOT NULL,
    tenant_id text NOT NULL,
    tenant_service_id text,
    metric text NOT NULL,
    value double precision,
    period_start timestamp with time zone NOT NULL,
    collected_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT usage_metrics_metric_check CHECK ((metric = ANY (ARRAY['cpu_seconds'::text, 'net_rx_bytes'::text, 'net_tx_bytes'::text, 'requests'::text, 'response_bytes'::text, 'mails_sent'::text, 'memory_bytes'::text, 'memory_avg_bytes'::text, 'disk_bytes'::text, 'db_bytes'::text, 'memory_peak_bytes'::text])))
);

ALTER TABLE public.usage_metrics ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.usage_metrics_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE public.usage_monthly (
    tenant_id text NOT NULL,
    tenant_service_id text,
    metric text NOT NULL,
    month date NOT NULL,
    value double precision NOT NULL,
    hours integer NOT NULL,
    gap_hours integer DEFAULT 0 NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT usage_monthly_month_check CHECK ((EXTRACT(day FROM month) = (1)::numeric))
);

CREATE TABLE public.usage_readings (
    container text NOT NULL,
    taken_for timestamp with time zone NOT NULL,
    tenant_id text NOT NULL,
    tenant_service_id text,
    cpu_seconds double precision,
    memory_bytes double precision,
    disk_bytes double precision,
    db_bytes double precision,
    net_rx_bytes double precision,
    net_tx_bytes double precision,
    read_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT usage_readings_taken_for_check CHECK ((date_trunc('hour'::text, taken_for) = taken_for))
);

CREATE TABLE public.user_totp (
    user_id text NOT NULL,
    secret_enc text NOT NULL,
    enabled_at timestamp with time zone,
    created_at timestamp with time zone DEFAULT now() NOT NULL
);

CREATE TABLE public.users (
    id text NOT NULL,
    email text NOT NULL,
    password_hash text,
    role text NOT NULL,
    tenant_id text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    marketing_emails boolean DEFAULT false NOT NULL,
    CONSTRAINT users_check CHECK (((role = 'platform_admin'::text) = (tenant_id IS NULL))),
    CONSTRAINT users_email_check CHECK ((email = lower(email))),
    CONSTRAINT users_id_check CHECK ((id ~~ 'usr\_%'::text)),
    CONSTRAINT users_role_check CHECK ((role = ANY (ARRAY['platform_admin'::text, 'tenant_owner'::text, 'tenant_member'::text])))
);

CREATE TABLE public.webhook_attempts (
    id bigint NOT NULL,
    delivery_id bigint NOT NULL,
    attempted_at timestamp with time zone DEFAULT now() NOT NULL,
    status_code integer,
    response_excerpt text,
    duration_ms integer NOT NULL,
    error text
);

CREATE SEQUENCE public.webhook_attempts_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE public.webhook_attempts_id_seq OWNED BY public.webhook_attempts.id;

CREATE TABLE public.webhook_deliveries (
    id bigint NOT NULL,
    endpoint_id text NOT NULL,
    event_id text NOT NULL,
    event_seq bigint NOT NULL,
    lane text NOT NULL,
    tenant_id text,
    status text DEFAULT 'pending'::text NOT NULL,
    attempts integer DEFAULT 0 NOT NULL,
    retry_from timestamp with time zone DEFAULT now() NOT NULL,
    next_attempt_at timestamp with time zone DEFAULT now() NOT NULL,
    last_status integer,
    last_error text,
    delivered_at timestamp with time zone,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT webhook_deliveries_status_check CHECK ((status = ANY (ARRAY['pending'::text, 'delivered'::text, 'failed'::text])))
);

CREATE SEQUENCE public.webhook_deliveries_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE public.webhook_deliveries_id_seq OWNED BY public.webhook_deliveries.id;

CREATE TABLE public.webhook_endpoints (
    id text NOT NULL,
    tenant_id text,
    url text NOT NULL,
    events text[] NOT NULL,
    description text,
    secret_enc text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT webhook_endpoints_events_check CHECK ((cardinality(events) > 0))
);

CREATE TABLE public.webhook_events (
    id text NOT NULL,
    seq bigint NOT NULL,
    type text NOT NULL,
    tenant_id text,
    data jsonb NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    fanned_out_at timestamp with time zone
);

CREATE SEQUENCE public.webhook_events_seq_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE public.webhook_events_seq_seq OWNED BY public.webhook_events.seq;

CREATE TABLE public.worker_processes (
    id text NOT NULL,
    lock_key integer NOT NULL,
    hostname text NOT NULL,
    pid integer NOT NULL,
    pool_ids text[] DEFAULT '{}'::text[] NOT NULL,
    started_at timestamp with time zone DEFAULT now() NOT NULL
);

ALTER TABLE ONLY public.webhook_attempts ALTER COLUMN id SET DEFAULT nextval('public.webhook_attempts_id_seq'::regclass);

ALTER TABLE ONLY public.webhook_deliveries ALTER COLUMN id SET DEFAULT nextval('public.webhook_deliveries_id_seq'::regclass);

ALTER TABLE ONLY public.webhook_events ALTER COLUMN seq SET DEFAULT nextval('public.webhook_events_seq_seq'::regclass);

ALTER TABLE ONLY public.api_keys
    ADD CONSTRAINT api_keys_key_hash_key UNIQUE (key_hash);

ALTER TABLE ONLY public.api_keys
    ADD CONSTRAINT api_keys_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.audit_addresses
    ADD CONSTRAINT audit_addresses_pkey PRIMARY KEY (audit_id);

ALTER TABLE ONLY public.audit_head
    ADD CONSTRAINT audit_head_pkey PRIMARY KEY (singleton);

ALTER TABLE ONLY public.audit_log
    ADD CONSTRAINT audit_log_hash_key UNIQUE (hash);

ALTER TABLE ONLY public.audit_log
    ADD CONSTRAINT audit_log_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.backup_repositories
    ADD CONSTRAINT backup_repositories_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.backup_repositories
    ADD CONSTRAINT backup_repositories_tenant_id_key UNIQUE (tenant_id);

ALTER TABLE ONLY public.backup_verifications
    ADD CONSTRAINT backup_verifications_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.backups
    ADD CONSTRAINT backups_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.certificates
    ADD CONSTRAINT certificates_pkey PRIMARY KEY (name);

ALTER TABLE ONLY public.consent_records
    ADD CONSTRAINT consent_records_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.emails
    ADD CONSTRAINT emails_outbox_key_key UNIQUE (outbox_key);

ALTER TABLE ONLY public.emails
    ADD CONSTRAINT emails_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.health_checks
    ADD CONSTRAINT health_checks_pkey PRIMARY KEY (target_id);

ALTER TABLE ONLY public.health_transitions
    ADD CONSTRAINT health_transitions_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.hosts
    ADD CONSTRAINT hosts_name_key UNIQUE (name);

ALTER TABLE ONLY public.hosts
    ADD CONSTRAINT hosts_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.inbox
    ADD CONSTRAINT inbox_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.incidents
    ADD CONSTRAINT incidents_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.invitations
    ADD CONSTRAINT invitations_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.invitations
    ADD CONSTRAINT invitations_token_hash_key UNIQUE (token_hash);

ALTER TABLE ONLY public.ip_allocations
    ADD CONSTRAINT ip_allocations_owner_key UNIQUE (owner);

ALTER TABLE ONLY public.ip_allocations
    ADD CONSTRAINT ip_allocations_pkey PRIMARY KEY (pool, address);

ALTER TABLE ONLY public.local_billing_objects
    ADD CONSTRAINT local_billing_objects_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.orphans
    ADD CONSTRAINT orphans_pkey PRIMARY KEY (source, name);

ALTER TABLE ONLY public.outbox
    ADD CONSTRAINT outbox_key_key UNIQUE (key);

ALTER TABLE ONLY public.outbox
    ADD CONSTRAINT outbox_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.password_resets
    ADD CONSTRAINT password_resets_pkey PRIMARY KEY (token_hash);

ALTER TABLE ONLY public.platform_backups
    ADD CONSTRAINT platform_backups_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.platform_backups
    ADD CONSTRAINT platform_backups_snapshot_id_key UNIQUE (snapshot_id);

ALTER TABLE ONLY public.proxmox_guests
    ADD CONSTRAINT proxmox_guests_name_key UNIQUE (name);

ALTER TABLE ONLY public.proxmox_guests
    ADD CONSTRAINT proxmox_guests_pkey PRIMARY KEY (vmid);

ALTER TABLE ONLY public.recovery_codes
    ADD CONSTRAINT recovery_codes_pkey PRIMARY KEY (user_id, code_hash);

ALTER TABLE ONLY public.resources
    ADD CONSTRAINT resources_pkey PRIMARY KEY (kind, id);

ALTER TABLE ONLY public.restores
    ADD CONSTRAINT restores_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.routes
    ADD CONSTRAINT routes_hostname_path_prefix_key UNIQUE (hostname, path_prefix);

ALTER TABLE ONLY public.routes
    ADD CONSTRAINT routes_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.schema_migrations
    ADD CONSTRAINT schema_migrations_pkey PRIMARY KEY (version);

ALTER TABLE ONLY public.services
    ADD CONSTRAINT services_key_key UNIQUE (key);

ALTER TABLE ONLY public.services
    ADD CONSTRAINT services_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.sessions
    ADD CONSTRAINT sessions_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.sessions
    ADD CONSTRAINT sessions_token_hash_key UNIQUE (token_hash);

ALTER TABLE ONLY public.signing_keys
    ADD CONSTRAINT signing_keys_pkey PRIMARY KEY (kid);

ALTER TABLE ONLY public.subscriptions
    ADD CONSTRAINT subscriptions_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.subscriptions
    ADD CONSTRAINT subscriptions_stripe_subscription_id_key UNIQUE (stripe_subscription_id);

ALTER TABLE ONLY public.tenant_exports
    ADD CONSTRAINT tenant_exports_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.tenant_secrets
    ADD CONSTRAINT tenant_secrets_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.tenant_secrets
    ADD CONSTRAINT tenant_secrets_tenant_id_name_key UNIQUE (tenant_id, name);

ALTER TABLE ONLY public.tenant_services
    ADD CONSTRAINT tenant_services_container_name_key UNIQUE (container_name);

ALTER TABLE ONLY public.tenant_services
    ADD CONSTRAINT tenant_services_db_name_key UNIQUE (db_name);

ALTER TABLE ONLY public.tenant_services
    ADD CONSTRAINT tenant_services_db_role_key UNIQUE (db_role);

ALTER TABLE ONLY public.tenant_services
    ADD CONSTRAINT tenant_services_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.tenant_services
    ADD CONSTRAINT tenant_services_tenant_id_service_id_key UNIQUE (tenant_id, service_id);

ALTER TABLE ONLY public.tenants
    ADD CONSTRAINT tenants_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.tenants
    ADD CONSTRAINT tenants_slug_key UNIQUE (slug);

ALTER TABLE ONLY public.tenants
    ADD CONSTRAINT tenants_stripe_customer_id_key UNIQUE (stripe_customer_id);

ALTER TABLE ONLY public.totp_used_steps
    ADD CONSTRAINT totp_used_steps_pkey PRIMARY KEY (user_id, step);

ALTER TABLE ONLY public.usage_edge_counts
    ADD CONSTRAINT usage_edge_counts_pkey PRIMARY KEY (edge, tenant_id, period_start);

ALTER TABLE ONLY public.usage_log_offsets
    ADD CONSTRAINT usage_log_offsets_pkey PRIMARY KEY (edge);

ALTER TABLE ONLY public.usage_memory
    ADD CONSTRAINT usage_memory_pkey PRIMARY KEY (container, period_start);

ALTER TABLE ONLY public.usage_metrics
    ADD CONSTRAINT usage_metrics_hour_key UNIQUE NULLS NOT DISTINCT (tenant_id, tenant_service_id, metric, period_start);

ALTER TABLE ONLY public.usage_metrics
    ADD CONSTRAINT usage_metrics_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.usage_monthly
    ADD CONSTRAINT usage_monthly_key UNIQUE NULLS NOT DISTINCT (tenant_id, tenant_service_id, metric, month);

ALTER TABLE ONLY public.usage_readings
    ADD CONSTRAINT usage_readings_pkey PRIMARY KEY (container, taken_for);

ALTER TABLE ONLY public.user_totp
    ADD CONSTRAINT user_totp_pkey PRIMARY KEY (user_id);

ALTER TABLE ONLY public.users
    ADD CONSTRAINT users_email_key UNIQUE (email);

ALTER TABLE ONLY public.users
    ADD CONSTRAINT users_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.webhook_attempts
    ADD CONSTRAINT webhook_attempts_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.webhook_deliveries
    ADD CONSTRAINT webhook_deliveries_endpoint_id_event_id_key UNIQUE (endpoint_id, event_id);

ALTER TABLE ONLY public.webhook_deliveries
    ADD CONSTRAINT webhook_deliveries_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.webhook_endpoints
    ADD CONSTRAINT webhook_endpoints_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.webhook_events
    ADD CONSTRAINT webhook_events_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.webhook_events
    ADD CONSTRAINT webhook_events_seq_key UNIQUE (seq);

ALTER TABLE ONLY public.worker_processes
    ADD CONSTRAINT worker_processes_lock_key_key UNIQUE (lock_key);

ALTER TABLE ONLY public.worker_processes
    ADD CONSTRAINT worker_processes_pkey PRIMARY KEY (id);

CREATE INDEX api_keys_tenant_idx ON public.api_keys USING btree (tenant_id);

CREATE INDEX audit_addresses_tenant_idx ON public.audit_addresses USING btree (tenant_id);

CREATE INDEX audit_log_actor_idx ON public.audit_log USING btree (actor_id, at);

CREATE INDEX audit_log_tenant_idx ON public.audit_log USING btree (tenant_id, at);

CREATE INDEX backup_verifications_tenant_idx ON public.backup_verifications USING btree (tenant_id, started_at DESC);

CREATE INDEX backups_archive_volume_idx ON public.backups USING btree (tenant_id) WHERE (archive_volume IS NOT NULL);

CREATE UNIQUE INDEX backups_run_service_kind_key ON public.backups USING btree (run_id, service, kind) WHERE (run_id IS NOT NULL);

CREATE INDEX backups_tenant_idx ON public.backups USING btree (tenant_id, started_at DESC);

CREATE INDEX backups_tenant_started_idx ON public.backups USING btree (tenant_id, started_at);

CREATE INDEX consent_records_user_idx ON public.consent_records USING btree (user_id, recorded_at DESC);

CREATE INDEX health_checks_tenant_idx ON public.health_checks USING btree (tenant_id);

CREATE INDEX health_transitions_target_idx ON public.health_transitions USING btree (target_id, at);

CREATE INDEX health_transitions_tenant_idx ON public.health_transitions USING btree (tenant_id);

CREATE INDEX inbox_unprocessed_idx ON public.inbox USING btree (received_at) WHERE (processed_at IS NULL);

CREATE UNIQUE INDEX incidents_one_open_idx ON public.incidents USING btree (target_id) WHERE (resolved_at IS NULL);

CREATE INDEX incidents_tenant_idx ON public.incidents USING btree (tenant_id, opened_at);

CREATE INDEX invitations_tenant_idx ON public.invitations USING btree (tenant_id);

CREATE INDEX local_billing_objects_tenant_idx ON public.local_billing_objects USING btree (tenant_id);

CREATE UNIQUE INDEX local_billing_portal_secret_idx ON public.local_billing_objects USING btree (((data ->> 'secret_sha256'::text))) WHERE (kind = 'billing_portal_session'::text);

CREATE INDEX outbox_pending_idx ON public.outbox USING btree (id) WHERE (status = 'pending'::text);

CREATE INDEX password_resets_user_idx ON public.password_resets USING btree (user_id);

CREATE INDEX resources_tenant_idx ON public.resources USING btree (tenant_id);

CREATE INDEX routes_tenant_idx ON public.routes USING btree (tenant_id);

CREATE INDEX sessions_family_idx ON public.sessions USING btree (family);

CREATE INDEX sessions_user_idx ON public.sessions USING btree (user_id);

CREATE INDEX subscriptions_tenant_idx ON public.subscriptions USING btree (tenant_id);

CREATE INDEX tenant_exports_tenant_idx ON public.tenant_exports USING btree (tenant_id, created_at DESC);

CREATE INDEX tenants_status_idx ON public.tenants USING btree (status);

CREATE INDEX usage_edge_counts_period_idx ON public.usage_edge_counts USING btree (period_start);

CREATE INDEX usage_memory_period_idx ON public.usage_memory USING btree (period_start);

CREATE INDEX usage_metrics_period_idx ON public.usage_metrics USING btree (period_start);

CREATE INDEX usage_monthly_month_idx ON public.usage_monthly USING btree (month);

CREATE INDEX usage_readings_taken_for_idx ON public.usage_readings USING btree (taken_for);

CREATE INDEX users_tenant_idx ON public.users USING btree (tenant_id);

CREATE INDEX webhook_attempts_delivery_idx ON public.webhook_attempts USING btree (delivery_id);

CREATE INDEX webhook_deliveries_event_idx ON public.webhook_deliveries USING btree (event_id);

CREATE INDEX webhook_deliveries_lane_idx ON public.webhook_deliveries USING btree (endpoint_id, lane, event_seq) WHERE (status = 'pending'::text);

CREATE INDEX webhook_endpoints_tenant_idx ON public.webhook_endpoints USING btree (tenant_id);

CREATE INDEX webhook_events_pending_idx ON public.webhook_events USING btree (tenant_id, seq) WHERE (fanned_out_at IS NULL);

CREATE TRIGGER audit_addresses_no_update BEFORE UPDATE ON public.audit_addresses FOR EACH ROW EXECUTE FUNCTION public.audit_log_append_only();

CREATE TRIGGER audit_head_guard BEFORE INSERT OR DELETE OR UPDATE ON public.audit_head FOR EACH ROW EXECUTE FUNCTION public.audit_head_guard();

CREATE TRIGGER audit_head_no_truncate BEFORE TRUNCATE ON public.audit_head FOR EACH STATEMENT EXECUTE FUNCTION public.audit_head_guard();

CREATE TRIGGER audit_log_advance_head BEFORE INSERT ON public.audit_log FOR EACH ROW EXECUTE FUNCTION public.audit_log_advance_head();

CREATE TRIGGER audit_log_append_only BEFORE DELETE OR UPDATE ON public.audit_log FOR EACH ROW EXECUTE FUNCTION public.audit_log_append_only();

CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON public.audit_log FOR EACH STATEMENT EXECUTE FUNCTION public.audit_log_append_only();

CREATE TRIGGER routes_notify AFTER INSERT OR DELETE OR UPDATE ON public.routes FOR EACH ROW EXECUTE FUNCTION public.routes_notify();

ALTER TABLE ONLY public.api_keys
    ADD CONSTRAINT api_keys_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES public.tenants(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.backup_repositories
    ADD CONSTRAINT backup_repositories_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES public.tenants(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.backup_verifications
    ADD CONSTRAINT backup_verifications_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES public.tenants(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.backups
    ADD CONSTRAINT backups_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES public.tenants(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.backups
    ADD CONSTRAINT backups_tenant_service_id_fkey FOREIGN KEY (tenant_service_id) REFERENCES public.tenant_services(id) ON DELETE SET NULL;

ALTER TABLE ONLY public.consent_records
    ADD CONSTRAINT consent_records_user_id_fkey FOREIGN KEY (user_id) REFERENCES public.users(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.emails
    ADD CONSTRAINT emails_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES public.tenants(id) ON DELETE SET NULL;

ALTER TABLE ONLY public.health_checks
    ADD CONSTRAINT health_checks_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES public.tenants(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.health_transitions
    ADD CONSTRAINT health_transitions_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES public.tenants(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.incidents
    ADD CONSTRAINT incidents_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES public.tenants(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.invitations
    ADD CONSTRAINT invitations_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES public.tenants(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.local_billing_objects
    ADD CONSTRAINT local_billing_objects_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES public.tenants(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.password_resets
    ADD CONSTRAINT password_resets_user_id_fkey FOREIGN KEY (user_id) REFERENCES public.users(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.recovery_codes
    ADD CONSTRAINT recovery_codes_user_id_fkey FOREIGN KEY (user_id) REFERENCES public.users(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.resources
    ADD CONSTRAINT resources_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES public.tenants(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.restores
    ADD CONSTRAINT restores_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES public.tenants(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.routes
    ADD CONSTRAINT routes_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES public.tenants(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.routes
    ADD CONSTRAINT routes_tenant_service_id_fkey FOREIGN KEY (tenant_service_id) REFERENCES public.tenant_services(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.sessions
    ADD CONSTRAINT sessions_user_id_fkey FOREIGN KEY (user_id) REFERENCES public.users(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.subscriptions
    ADD CONSTRAINT subscriptions_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES public.tenants(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.tenant_exports
    ADD CONSTRAINT tenant_exports_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES public.tenants(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.tenant_secrets
    ADD CONSTRAINT tenant_secrets_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES public.tenants(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.tenant_services
    ADD CONSTRAINT tenant_services_service_id_fkey FOREIGN KEY (service_id) REFERENCES public.services(id);

ALTER TABLE ONLY public.tenant_services
    ADD CONSTRAINT tenant_services_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES public.tenants(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.tenants
    ADD CONSTRAINT tenants_host_id_fkey FOREIGN KEY (host_id) REFERENCES public.hosts(id);

ALTER TABLE ONLY public.totp_used_steps
    ADD CONSTRAINT totp_used_steps_user_id_fkey FOREIGN KEY (user_id) REFERENCES public.users(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.usage_edge_counts
    ADD CONSTRAINT usage_edge_counts_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES public.tenants(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.usage_memory
    ADD CONSTRAINT usage_memory_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES public.tenants(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.usage_memory
    ADD CONSTRAINT usage_memory_tenant_service_id_fkey FOREIGN KEY (tenant_service_id) REFERENCES public.tenant_services(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.usage_metrics
    ADD CONSTRAINT usage_metrics_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES public.tenants(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.usage_metrics
    ADD CONSTRAINT usage_metrics_tenant_service_id_fkey FOREIGN KEY (tenant_service_id) REFERENCES public.tenant_services(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.usage_monthly
    ADD CONSTRAINT usage_monthly_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES public.tenants(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.usage_monthly
    ADD CONSTRAINT usage_monthly_tenant_service_id_fkey FOREIGN KEY (tenant_service_id) REFERENCES public.tenant_services(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.usage_readings
    ADD CONSTRAINT usage_readings_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES public.tenants(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.usage_readings
    ADD CONSTRAINT usage_readings_tenant_service_id_fkey FOREIGN KEY (tenant_service_id) REFERENCES public.tenant_services(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.user_totp
    ADD CONSTRAINT user_totp_user_id_fkey FOREIGN KEY (user_id) REFERENCES public.users(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.users
    ADD CONSTRAINT users_tenant_fk FOREIGN KEY (tenant_id) REFERENCES public.tenants(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.webhook_attempts
    ADD CONSTRAINT webhook_attempts_delivery_id_fkey FOREIGN KEY (delivery_id) REFERENCES public.webhook_deliveries(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.webhook_deliveries
    ADD CONSTRAINT webhook_deliveries_endpoint_id_fkey FOREIGN KEY (endpoint_id) REFERENCES public.webhook_endpoints(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.webhook_deliveries
    ADD CONSTRAINT webhook_deliveries_event_id_fkey FOREIGN KEY (event_id) REFERENCES public.webhook_events(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.webhook_deliveries
    ADD CONSTRAINT webhook_deliveries_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES public.tenants(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.webhook_endpoints
    ADD CONSTRAINT webhook_endpoints_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES public.tenants(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.webhook_events
    ADD CONSTRAINT webhook_events_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES public.tenants(id) ON DELETE CASCADE;

ALTER TABLE public.api_keys ENABLE ROW LEVEL SECURITY;

ALTER TABLE public.audit_addresses ENABLE ROW LEVEL SECURITY;

ALTER TABLE public.audit_log ENABLE ROW LEVEL SECURITY;

ALTER TABLE public.backup_repositories ENABLE ROW LEVEL SECURITY;

ALTER TABLE public.backup_verifications ENABLE ROW LEVEL SECURITY;

ALTER TABLE public.backups ENABLE ROW LEVEL SECURITY;

ALTER TABLE public.health_checks ENABLE ROW LEVEL SECURITY;

ALTER TABLE public.health_transitions ENABLE ROW LEVEL SECURITY;

ALTER TABLE public.incidents ENABLE ROW LEVEL SECURITY;

ALTER TABLE public.invitations ENABLE ROW LEVEL SECURITY;

ALTER TABLE public.platform_backups ENABLE ROW LEVEL SECURITY;

ALTER TABLE public.resources ENABLE ROW LEVEL SECURITY;

ALTER TABLE public.restores ENABLE ROW LEVEL SECURITY;

ALTER TABLE public.routes ENABLE ROW LEVEL SECURITY;

ALTER TABLE public.subscriptions ENABLE ROW LEVEL SECURITY;

ALTER TABLE public.tenant_exports ENABLE ROW LEVEL SECURITY;

CREATE POLICY tenant_isolation ON public.api_keys TO aiqso_tenant USING ((tenant_id = public.aiqso_current_tenant())) WITH CHECK ((tenant_id = public.aiqso_current_tenant()));

CREATE POLICY tenant_isolation ON public.audit_addresses FOR SELECT TO aiqso_tenant USING ((tenant_id = public.aiqso_current_tenant()));

CREATE POLICY tenant_isolation ON public.audit_log FOR SELECT TO aiqso_tenant USING ((tenant_id = public.aiqso_current_tenant()));

CREATE POLICY tenant_isolation ON public.backup_verifications FOR SELECT TO aiqso_tenant USING ((tenant_id = public.aiqso_current_tenant()));

CREATE POLICY tenant_isolation ON public.backups TO aiqso_tenant USING ((tenant_id = public.aiqso_current_tenant())) WITH CHECK ((tenant_id = public.aiqso_current_tenant()));

CREATE POLICY tenant_isolation ON public.health_checks FOR SELECT TO aiqso_tenant USING ((tenant_id = public.aiqso_current_tenant()));

CREATE POLICY tenant_isolation ON public.health_transitions FOR SELECT TO aiqso_tenant USING ((tenant_id = public.aiqso_current_tenant()));

CREATE POLICY tenant_isolation ON public.incidents FOR SELECT TO aiqso_tenant USING ((tenant_id = public.aiqso_current_tenant()));

CREATE POLICY tenant_isolation ON public.invitations TO aiqso_tenant USING ((tenant_id = public.aiqso_current_tenant())) WITH CHECK ((tenant_id = public.aiqso_current_tenant()));

CREATE POLICY tenant_isolation ON public.resources TO aiqso_tenant USING ((tenant_id = public.aiqso_current_tenant())) WITH CHECK ((tenant_id = public.aiqso_current_tenant()));

CREATE POLICY tenant_isolation ON public.restores FOR SELECT TO aiqso_tenant USING ((tenant_id = public.aiqso_current_tenant()));

CREATE POLICY tenant_isolation ON public.routes TO aiqso_tenant USING ((tenant_id = public.aiqso_current_tenant())) WITH CHECK ((tenant_id = public.aiqso_current_tenant()));

CREATE POLICY tenant_isolation ON public.subscriptions TO aiqso_tenant USING ((tenant_id = public.aiqso_current_tenant())) WITH CHECK ((tenant_id = public.aiqso_current_tenant()));

CREATE POLICY tenant_isolation ON public.tenant_exports FOR SELECT TO aiqso_tenant USING ((tenant_id = public.aiqso_current_tenant()));

CREATE POLICY tenant_isolation ON public.tenant_services TO aiqso_tenant USING ((tenant_id = public.aiqso_current_tenant())) WITH CHECK ((tenant_id = public.aiqso_current_tenant()));

CREATE POLICY tenant_isolation ON public.tenants TO aiqso_tenant USING ((id = public.aiqso_current_tenant()));

CREATE POLICY tenant_isolation ON public.usage_metrics TO aiqso_tenant USING ((tenant_id = public.aiqso_current_tenant())) WITH CHECK ((tenant_id = public.aiqso_current_tenant()));

CREATE POLICY tenant_isolation ON public.usage_monthly FOR SELECT TO aiqso_tenant USING ((tenant_id = public.aiqso_current_tenant()));

CREATE POLICY tenant_isolation ON public.users TO aiqso_tenant USING ((tenant_id = public.aiqso_current_tenant())) WITH CHECK ((tenant_id = public.aiqso_current_tenant()));

CREATE POLICY tenant_isolation ON public.webhook_attempts FOR SELECT TO aiqso_tenant USING ((EXISTS ( SELECT 1
   FROM public.webhook_deliveries d
  WHERE ((d.id = webhook_attempts.delivery_id) AND (d.tenant_id = public.aiqso_current_tenant())))));

CREATE POLICY tenant_isolation ON public.webhook_deliveries FOR SELECT TO aiqso_tenant USING ((tenant_id = public.aiqso_current_tenant()));

CREATE POLICY tenant_isolation ON public.webhook_endpoints TO aiqso_tenant USING ((tenant_id = public.aiqso_current_tenant())) WITH CHECK ((tenant_id = public.aiqso_current_tenant()));

CREATE POLICY tenant_isolation ON public.webhook_events FOR SELECT TO aiqso_tenant USING ((tenant_id = public.aiqso_current_tenant()));

ALTER TABLE public.tenant_services ENABLE ROW LEVEL SECURITY;

ALTER TABLE public.tenants ENABLE ROW LEVEL SECURITY;

ALTER TABLE public.usage_metrics ENABLE ROW LEVEL SECURITY;

ALTER TABLE public.usage_monthly ENABLE ROW LEVEL SECURITY;

ALTER TABLE public.users ENABLE ROW LEVEL SECURITY;

ALTER TABLE public.webhook_attempts ENABLE ROW LEVEL SECURITY;

ALTER TABLE public.webhook_deliveries ENABLE ROW LEVEL SECURITY;

ALTER TABLE public.webhook_endpoints ENABLE ROW LEVEL SECURITY;

ALTER TABLE public.webhook_events ENABLE ROW LEVEL SECURITY;
