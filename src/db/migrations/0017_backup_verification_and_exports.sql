-- Backup verification and tenant data exports.

-- Restore verification of backups: each tenant's latest database snapshots
-- restored into a scratch database, their row counts compared with the ones
-- recorded, `restic check --read-data-subset` run on the repository. One row
-- per verification of a tenant, passed or failed (with the reason); the time
-- the restores took is the tenant's measured RTO. A scheduled verification's
-- id is derived from its firing, so a firing seen twice records (and alerts)
-- once.
CREATE TABLE backup_verifications (
  id                text PRIMARY KEY CHECK (id LIKE 'bvf\_%'),
  tenant_id         text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  status            text NOT NULL CHECK (status IN ('passed', 'failed')),
  rto_ms            integer,
  read_data_percent integer NOT NULL,
  snapshots         jsonb NOT NULL DEFAULT '[]',
  error             text,
  started_at        timestamptz NOT NULL,
  finished_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX backup_verifications_tenant_idx ON backup_verifications (tenant_id, started_at DESC);
GRANT SELECT ON backup_verifications TO aiqso_tenant;
ALTER TABLE backup_verifications ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON backup_verifications FOR SELECT TO aiqso_tenant
  USING (tenant_id = aiqso_current_tenant());

-- How long restoring this snapshot took when it was last verified.
ALTER TABLE backups ADD COLUMN restore_ms integer;

-- A tenant's data export (GDPR Art. 20): one archive built from a fresh
-- snapshot by a `tenant-export` resource, kept until `expires_at`, then its
-- file deleted by the retention schedule (status `expired`).
CREATE TABLE tenant_exports (
  id            text PRIMARY KEY CHECK (id LIKE 'exp\_%'),
  tenant_id     text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  status        text NOT NULL DEFAULT 'building' CHECK (status IN ('building', 'ready', 'failed', 'expired')),
  file          text,
  size_bytes    bigint,
  sha256        text,
  requested_by  text,
  error         text,
  expires_at    timestamptz NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now(),
  finished_at   timestamptz
);
CREATE INDEX tenant_exports_tenant_idx ON tenant_exports (tenant_id, created_at DESC);
GRANT SELECT ON tenant_exports TO aiqso_tenant;
ALTER TABLE tenant_exports ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenant_exports FOR SELECT TO aiqso_tenant
  USING (tenant_id = aiqso_current_tenant());
