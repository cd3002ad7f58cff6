-- Usage metering (issue #26).

-- An hour with no value is a gap (value NULL), never an invented number. Rows
-- of a tenant as a whole (its dashboard, its edge traffic, its mail) have no
-- tenant service: NULLS NOT DISTINCT makes them unique per hour too.
ALTER TABLE usage_metrics ALTER COLUMN value DROP NOT NULL;
ALTER TABLE usage_metrics
  DROP CONSTRAINT usage_metrics_tenant_id_tenant_service_id_metric_period_sta_key;
ALTER TABLE usage_metrics ADD CONSTRAINT usage_metrics_hour_key
  UNIQUE NULLS NOT DISTINCT (tenant_id, tenant_service_id, metric, period_start);
ALTER TABLE usage_metrics ADD CONSTRAINT usage_metrics_metric_check CHECK (metric IN (
  'cpu_seconds', 'memory_bytes', 'disk_bytes', 'db_bytes', 'net_rx_bytes', 'net_tx_bytes',
  'requests', 'response_bytes', 'mails_sent'));
CREATE INDEX usage_metrics_period_idx ON usage_metrics (period_start);

-- What a collection pass read from a container at an hour boundary: the first
-- reading for (container, hour) is kept, so a second worker or a rerun after a
-- crash never replaces it, and an hour's value is the difference of two stored
-- readings. NULL: not measured by this driver (process containers share the
-- host's network, for one).
CREATE TABLE usage_readings (
  container         text NOT NULL,
  taken_for         timestamptz NOT NULL CHECK (date_trunc('hour', taken_for) = taken_for),
  tenant_id         text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  tenant_service_id text REFERENCES tenant_services (id) ON DELETE CASCADE,
  cpu_seconds       double precision,
  memory_bytes      double precision,
  disk_bytes        double precision,
  db_bytes          double precision,
  net_rx_bytes      double precision,
  net_tx_bytes      double precision,
  read_at           timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (container, taken_for)
);
CREATE INDEX usage_readings_taken_for_idx ON usage_readings (taken_for);

-- Requests the edges served per tenant and hour, one row per edge instance:
-- an edge adds what it counted since its last flush. Edges that run apart from
-- the collector report here.
CREATE TABLE usage_edge_counts (
  edge           text NOT NULL,
  tenant_id      text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  period_start   timestamptz NOT NULL CHECK (date_trunc('hour', period_start) = period_start),
  requests       bigint NOT NULL DEFAULT 0 CHECK (requests >= 0),
  response_bytes bigint NOT NULL DEFAULT 0 CHECK (response_bytes >= 0),
  PRIMARY KEY (edge, tenant_id, period_start)
);
CREATE INDEX usage_edge_counts_period_idx ON usage_edge_counts (period_start);

-- Monthly roll-ups (the month as the platform's time zone reads it), kept
-- longer than hourly rows. gap_hours: hours of the month with a gap.
CREATE TABLE usage_monthly (
  tenant_id         text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  tenant_service_id text REFERENCES tenant_services (id) ON DELETE CASCADE,
  metric            text NOT NULL,
  month             date NOT NULL CHECK (extract(day FROM month) = 1),
  value             double precision NOT NULL,
  hours             integer NOT NULL,
  gap_hours         integer NOT NULL DEFAULT 0,
  updated_at        timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT usage_monthly_key UNIQUE NULLS NOT DISTINCT (tenant_id, tenant_service_id, metric, month)
);
CREATE INDEX usage_monthly_month_idx ON usage_monthly (month);

GRANT SELECT ON usage_monthly TO aiqso_tenant;
ALTER TABLE usage_monthly ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON usage_monthly FOR SELECT TO aiqso_tenant
  USING (tenant_id = aiqso_current_tenant());
