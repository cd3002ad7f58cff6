-- Self-healing (issue #24): the health monitor's state per probed target, the
-- state changes it saw (uptime is computed from these, not from one row per
-- probe), and incidents with the repair rungs tried.

ALTER TABLE tenant_services DROP CONSTRAINT tenant_services_status_check;
ALTER TABLE tenant_services ADD CONSTRAINT tenant_services_status_check
  CHECK (status IN ('pending', 'deploying', 'active', 'degraded', 'stopped', 'removing', 'removed', 'failed'));

-- One row per probed target: a tenant's dashboard (target_id = the tenant id)
-- or a tenant service (target_id = its id). `recent` is the rolling window of
-- the last probes ('1' healthy, '0' not), newest last, at most 32 long.
CREATE TABLE health_checks (
  target_id            text PRIMARY KEY,
  target_kind          text NOT NULL CHECK (target_kind IN ('dashboard', 'service')),
  tenant_id            text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  state                text NOT NULL DEFAULT 'unknown' CHECK (state IN ('unknown', 'healthy', 'failing', 'degraded')),
  consecutive_failures integer NOT NULL DEFAULT 0,
  consecutive_ok       integer NOT NULL DEFAULT 0,
  -- The highest repair rung tried since the target was last stably healthy: 0 none, 1 restart, 2 recreate, 3 degraded.
  rung                 integer NOT NULL DEFAULT 0 CHECK (rung BETWEEN 0 AND 3),
  -- No further rung before this time (back-off after a repair).
  next_rung_at         timestamptz,
  last_result          text,
  recent               text NOT NULL DEFAULT '',
  last_probe_at        timestamptz,
  changed_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX health_checks_tenant_idx ON health_checks (tenant_id);

-- A state change of a target: healthy or not since `at`.
CREATE TABLE health_transitions (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  target_id   text NOT NULL,
  tenant_id   text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  healthy     boolean NOT NULL,
  detail      text,
  at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX health_transitions_target_idx ON health_transitions (target_id, at);
CREATE INDEX health_transitions_tenant_idx ON health_transitions (tenant_id);

-- An incident: opened when a target failed enough probes in a row to need a
-- repair, resolved by the first healthy probe after. `rungs` lists each repair
-- tried, with its outcome: [{ rung, action, at, outcome }].
CREATE TABLE incidents (
  id           text PRIMARY KEY CHECK (id LIKE 'inc\_%'),
  tenant_id    text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  target_id    text NOT NULL,
  target_kind  text NOT NULL CHECK (target_kind IN ('dashboard', 'service')),
  target_name  text NOT NULL,
  reason       text NOT NULL,
  rungs        jsonb NOT NULL DEFAULT '[]',
  opened_at    timestamptz NOT NULL DEFAULT now(),
  resolved_at  timestamptz
);
CREATE UNIQUE INDEX incidents_one_open_idx ON incidents (target_id) WHERE resolved_at IS NULL;
CREATE INDEX incidents_tenant_idx ON incidents (tenant_id, opened_at);

GRANT SELECT ON health_checks, health_transitions, incidents TO aiqso_tenant;
ALTER TABLE health_checks ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON health_checks FOR SELECT TO aiqso_tenant
  USING (tenant_id = aiqso_current_tenant());
ALTER TABLE health_transitions ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON health_transitions FOR SELECT TO aiqso_tenant
  USING (tenant_id = aiqso_current_tenant());
ALTER TABLE incidents ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON incidents FOR SELECT TO aiqso_tenant
  USING (tenant_id = aiqso_current_tenant());

-- Whether the admins have been told of the opening / the resolution (alone or in a digest).
ALTER TABLE incidents
  ADD COLUMN admin_opened_alert   boolean NOT NULL DEFAULT false,
  ADD COLUMN admin_resolved_alert boolean NOT NULL DEFAULT false;
