-- The master database: the seed's seven tables plus what the platform needs.
-- Ids are prefixed ULIDs made by the application (src/core/ids.ts).

CREATE TABLE users (
  id            text PRIMARY KEY CHECK (id LIKE 'usr\_%'),
  email         text NOT NULL UNIQUE CHECK (email = lower(email)),
  password_hash text,
  role          text NOT NULL CHECK (role IN ('platform_admin', 'tenant_owner', 'tenant_member')),
  tenant_id     text,
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now(),
  CHECK ((role = 'platform_admin') = (tenant_id IS NULL))
);

CREATE TABLE hosts (
  id             text PRIMARY KEY CHECK (id LIKE 'hst\_%'),
  name           text NOT NULL UNIQUE,
  driver         text NOT NULL CHECK (driver IN ('process', 'lxc', 'proxmox')),
  address        text,
  memory_mb      integer NOT NULL CHECK (memory_mb > 0),
  cores          integer NOT NULL CHECK (cores > 0),
  disk_gb        integer NOT NULL CHECK (disk_gb > 0),
  max_containers integer,
  draining       boolean NOT NULL DEFAULT false,
  created_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tenants (
  id                 text PRIMARY KEY CHECK (id LIKE 'ten\_%'),
  slug               text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
  company            text NOT NULL CHECK (length(company) BETWEEN 1 AND 200),
  plan               text NOT NULL DEFAULT 'starter',
  status             text NOT NULL DEFAULT 'pending_payment'
                       CHECK (status IN ('pending_payment', 'provisioning', 'active', 'suspended',
                                         'cancelled', 'purged', 'failed')),
  status_reason      text,
  host_id            text REFERENCES hosts (id),
  stripe_customer_id text UNIQUE,
  cancelled_at       timestamptz,
  purge_after        timestamptz,
  purged_at          timestamptz,
  created_at         timestamptz NOT NULL DEFAULT now(),
  updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tenants_status_idx ON tenants (status);

ALTER TABLE users ADD CONSTRAINT users_tenant_fk FOREIGN KEY (tenant_id) REFERENCES tenants (id) ON DELETE CASCADE;
CREATE INDEX users_tenant_idx ON users (tenant_id);

-- The service catalog, synchronised from catalog/*.yaml at start-up.
CREATE TABLE services (
  id              text PRIMARY KEY CHECK (id LIKE 'svc\_%'),
  key             text NOT NULL UNIQUE CHECK (key ~ '^[a-z][a-z0-9-]{0,30}$'),
  name            text NOT NULL,
  description     text NOT NULL DEFAULT '',
  kind            text NOT NULL CHECK (kind IN ('clone', 'image', 'app')),
  template        jsonb NOT NULL,
  stripe_price_id text,
  active          boolean NOT NULL DEFAULT true,
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Stripe subscription tracking. `stripe_updated_at` orders out-of-order events.
CREATE TABLE subscriptions (
  id                     text PRIMARY KEY CHECK (id LIKE 'sub\_%'),
  tenant_id              text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  stripe_subscription_id text UNIQUE,
  stripe_customer_id     text,
  stripe_price_id        text,
  status                 text NOT NULL,
  current_period_end     timestamptz,
  cancel_at_period_end   boolean NOT NULL DEFAULT false,
  stripe_updated_at      timestamptz,
  created_at             timestamptz NOT NULL DEFAULT now(),
  updated_at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX subscriptions_tenant_idx ON subscriptions (tenant_id);

CREATE TABLE tenant_services (
  id              text PRIMARY KEY CHECK (id LIKE 'tsv\_%'),
  tenant_id       text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  service_id      text NOT NULL REFERENCES services (id),
  status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'deploying', 'active', 'stopped', 'removing', 'removed', 'failed')),
  status_reason   text,
  container_name  text UNIQUE,
  db_name         text UNIQUE,
  db_role         text UNIQUE,
  db_password_enc text,
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  removed_at      timestamptz,
  UNIQUE (tenant_id, service_id)
);

CREATE TABLE usage_metrics (
  id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  tenant_id         text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  tenant_service_id text REFERENCES tenant_services (id) ON DELETE CASCADE,
  metric            text NOT NULL,
  value             double precision NOT NULL,
  period_start      timestamptz NOT NULL,
  collected_at      timestamptz NOT NULL DEFAULT now(),
  UNIQUE (tenant_id, tenant_service_id, metric, period_start)
);

CREATE TABLE backups (
  id                text PRIMARY KEY CHECK (id LIKE 'bkp\_%'),
  tenant_id         text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  tenant_service_id text REFERENCES tenant_services (id) ON DELETE SET NULL,
  kind              text NOT NULL CHECK (kind IN ('database', 'container', 'master')),
  status            text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'done', 'failed')),
  location          text,
  size_bytes        bigint,
  sha256            text,
  error             text,
  started_at        timestamptz NOT NULL DEFAULT now(),
  finished_at       timestamptz
);
CREATE INDEX backups_tenant_idx ON backups (tenant_id, started_at DESC);

-- Append-only, hash-chained: each row carries the hash of the one before it.
CREATE TABLE audit_log (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  at          timestamptz NOT NULL DEFAULT now(),
  actor_type  text NOT NULL CHECK (actor_type IN ('user', 'api_key', 'system', 'operator')),
  actor_id    text,
  tenant_id   text,
  action      text NOT NULL,
  target_type text,
  target_id   text,
  source_ip   inet,
  result      text NOT NULL CHECK (result IN ('success', 'failure', 'denied')),
  details     jsonb NOT NULL DEFAULT '{}',
  prev_hash   text NOT NULL,
  hash        text NOT NULL UNIQUE
);
CREATE INDEX audit_log_tenant_idx ON audit_log (tenant_id, at);
CREATE INDEX audit_log_actor_idx ON audit_log (actor_id, at);

-- Static addresses handed to containers from a platform-managed pool.
CREATE TABLE ip_allocations (
  pool       cidr NOT NULL,
  address    inet NOT NULL,
  owner      text NOT NULL UNIQUE,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (pool, address)
);

-- The edge's route table. A change notifies every edge instance (see the trigger below).
CREATE TABLE routes (
  id                text PRIMARY KEY CHECK (id LIKE 'rte\_%'),
  hostname          text NOT NULL,
  path_prefix       text NOT NULL DEFAULT '' CHECK (path_prefix = '' OR path_prefix ~ '^/[a-z0-9][a-z0-9-]*$'),
  tenant_id         text REFERENCES tenants (id) ON DELETE CASCADE,
  tenant_service_id text REFERENCES tenant_services (id) ON DELETE CASCADE,
  upstream_host     text,
  upstream_port     integer CHECK (upstream_port BETWEEN 1 AND 65535),
  strip_prefix      boolean NOT NULL DEFAULT true,
  state             text NOT NULL DEFAULT 'active'
                      CHECK (state IN ('active', 'provisioning', 'suspended', 'unavailable')),
  allow_cidrs       text[] NOT NULL DEFAULT '{}',
  deny_cidrs        text[] NOT NULL DEFAULT '{}',
  created_at        timestamptz NOT NULL DEFAULT now(),
  updated_at        timestamptz NOT NULL DEFAULT now(),
  UNIQUE (hostname, path_prefix)
);
CREATE INDEX routes_tenant_idx ON routes (tenant_id);

CREATE FUNCTION routes_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('aiqso_routes', COALESCE(NEW.hostname, OLD.hostname));
  RETURN NULL;
END;
$$;
CREATE TRIGGER routes_notify AFTER INSERT OR UPDATE OR DELETE ON routes
  FOR EACH ROW EXECUTE FUNCTION routes_notify();

-- Side effects outside the database, written in the same transaction as the
-- state change that causes them and delivered once per key by a worker.
CREATE TABLE outbox (
  id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  key          text NOT NULL UNIQUE,
  kind         text NOT NULL CHECK (kind IN ('email', 'stripe', 'webhook', 'alert')),
  payload      jsonb NOT NULL,
  status       text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
  attempts     integer NOT NULL DEFAULT 0,
  last_error   text,
  created_at   timestamptz NOT NULL DEFAULT now(),
  delivered_at timestamptz
);
CREATE INDEX outbox_pending_idx ON outbox (id) WHERE status = 'pending';

-- Incoming events (Stripe), keyed by the sender's event id: a redelivery is a no-op.
CREATE TABLE inbox (
  id           text PRIMARY KEY,
  source       text NOT NULL,
  type         text NOT NULL,
  payload      jsonb NOT NULL,
  received_at  timestamptz NOT NULL DEFAULT now(),
  processed_at timestamptz,
  attempts     integer NOT NULL DEFAULT 0,
  last_error   text
);
CREATE INDEX inbox_unprocessed_idx ON inbox (received_at) WHERE processed_at IS NULL;

-- Every message the platform sent, for support and for "exactly once" checks.
CREATE TABLE emails (
  id         text PRIMARY KEY CHECK (id LIKE 'eml\_%'),
  outbox_key text NOT NULL UNIQUE,
  tenant_id  text REFERENCES tenants (id) ON DELETE SET NULL,
  recipient  text NOT NULL,
  template   text NOT NULL,
  subject    text NOT NULL,
  transport  text NOT NULL,
  message_id text,
  sent_at    timestamptz NOT NULL DEFAULT now()
);

-- Desired state and observed state of every managed resource (tenant,
-- tenant service, route, host, backup schedule). `generation` moves when the
-- spec changes; `observed_generation` when a reconcile converged on it.
CREATE TABLE resources (
  kind                text NOT NULL,
  id                  text NOT NULL,
  tenant_id           text REFERENCES tenants (id) ON DELETE CASCADE,
  spec                jsonb NOT NULL DEFAULT '{}',
  deleted             boolean NOT NULL DEFAULT false,
  generation          integer NOT NULL DEFAULT 1,
  observed_generation integer NOT NULL DEFAULT 0,
  phase               text NOT NULL DEFAULT 'pending'
                        CHECK (phase IN ('pending', 'reconciling', 'ready', 'failed', 'deleted')),
  steps               jsonb NOT NULL DEFAULT '[]',
  last_error          text,
  failures            integer NOT NULL DEFAULT 0,
  created_at          timestamptz NOT NULL DEFAULT now(),
  updated_at          timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (kind, id)
);
CREATE INDEX resources_tenant_idx ON resources (tenant_id);
