-- Event webhooks: endpoints (the operator's, tenant_id NULL, or a tenant's own),
-- the events the platform emits, one delivery per (endpoint, event) and each
-- attempt at it with the receiver's answer.

CREATE TABLE webhook_endpoints (
  id          text PRIMARY KEY,
  tenant_id   text REFERENCES tenants (id) ON DELETE CASCADE,
  url         text NOT NULL,
  -- Event types or prefixes with '*' (tenant.*, *) this endpoint receives.
  events      text[] NOT NULL CHECK (cardinality(events) > 0),
  description text,
  -- The signing secret, sealed with the master key (bound to the row).
  secret_enc  text NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_endpoints_tenant_idx ON webhook_endpoints (tenant_id);

-- Written in the transaction of the change it reports; seq orders a tenant's events.
CREATE TABLE webhook_events (
  id            text PRIMARY KEY,
  seq           bigserial NOT NULL UNIQUE,
  type          text NOT NULL,
  tenant_id     text REFERENCES tenants (id) ON DELETE CASCADE,
  data          jsonb NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now(),
  -- When its deliveries were made (the outbox item that fans it out was delivered).
  fanned_out_at timestamptz
);
CREATE INDEX webhook_events_pending_idx ON webhook_events (tenant_id, seq) WHERE fanned_out_at IS NULL;

-- Deliveries of one endpoint in one lane (the event's tenant; '' for events of no tenant)
-- go out one at a time in event order.
CREATE TABLE webhook_deliveries (
  id              bigserial PRIMARY KEY,
  endpoint_id     text NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
  event_id        text NOT NULL REFERENCES webhook_events (id) ON DELETE CASCADE,
  event_seq       bigint NOT NULL,
  lane            text NOT NULL,
  -- The endpoint's tenant (NULL: the operator's endpoint), for row level security.
  tenant_id       text REFERENCES tenants (id) ON DELETE CASCADE,
  status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
  attempts        integer NOT NULL DEFAULT 0,
  -- Retries stop this long (AIQSO_WEBHOOKS_RETRY_HOURS) after retry_from; a redelivery resets it.
  retry_from      timestamptz NOT NULL DEFAULT now(),
  next_attempt_at timestamptz NOT NULL DEFAULT now(),
  last_status     integer,
  last_error      text,
  delivered_at    timestamptz,
  created_at      timestamptz NOT NULL DEFAULT now(),
  UNIQUE (endpoint_id, event_id)
);
CREATE INDEX webhook_deliveries_lane_idx ON webhook_deliveries (endpoint_id, lane, event_seq)
  WHERE status = 'pending';
CREATE INDEX webhook_deliveries_event_idx ON webhook_deliveries (event_id);

CREATE TABLE webhook_attempts (
  id               bigserial PRIMARY KEY,
  delivery_id      bigint NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
  attempted_at     timestamptz NOT NULL DEFAULT now(),
  status_code      integer,
  response_excerpt text,
  duration_ms      integer NOT NULL,
  error            text
);
CREATE INDEX webhook_attempts_delivery_idx ON webhook_attempts (delivery_id);

-- A tenant sees and manages only its own endpoints and their deliveries.
GRANT SELECT, INSERT, DELETE ON webhook_endpoints TO aiqso_tenant;
GRANT SELECT ON webhook_deliveries, webhook_attempts, webhook_events TO aiqso_tenant;
ALTER TABLE webhook_endpoints ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook_deliveries ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook_attempts ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook_events ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON webhook_endpoints FOR ALL TO aiqso_tenant
  USING (tenant_id = aiqso_current_tenant()) WITH CHECK (tenant_id = aiqso_current_tenant());
CREATE POLICY tenant_isolation ON webhook_deliveries FOR SELECT TO aiqso_tenant
  USING (tenant_id = aiqso_current_tenant());
CREATE POLICY tenant_isolation ON webhook_events FOR SELECT TO aiqso_tenant
  USING (tenant_id = aiqso_current_tenant());
CREATE POLICY tenant_isolation ON webhook_attempts FOR SELECT TO aiqso_tenant
  USING (EXISTS (SELECT 1 FROM webhook_deliveries d
                  WHERE d.id = webhook_attempts.delivery_id AND d.tenant_id = aiqso_current_tenant()));
