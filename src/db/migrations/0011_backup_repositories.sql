-- Backups with restic (issue #22).

-- One restic repository per tenant, each with its own random password sealed
-- with the master key (context `backup_repositories:<id>`). Purge destroys the
-- password first (crypto-shredding: `shredded_at` set, `password_enc` NULL),
-- then the repository. No grant to aiqso_tenant: a tenant never reads its key.
CREATE TABLE backup_repositories (
  id           text PRIMARY KEY CHECK (id LIKE 'brp\_%'),
  tenant_id    text NOT NULL UNIQUE REFERENCES tenants (id) ON DELETE CASCADE,
  location     text NOT NULL,
  password_enc text,
  created_at   timestamptz NOT NULL DEFAULT now(),
  shredded_at  timestamptz,
  CHECK ((password_enc IS NULL) = (shredded_at IS NOT NULL))
);

-- A backup row is now one restic snapshot: of a service's database (with the
-- row count of each table), of its data, or a safety snapshot a restore takes
-- before overwriting. `run_id` groups the snapshots of one backup run.
ALTER TABLE backups DROP CONSTRAINT backups_kind_check;
ALTER TABLE backups ADD CONSTRAINT backups_kind_check
  CHECK (kind IN ('database', 'container', 'master', 'data'));
ALTER TABLE backups
  ADD COLUMN run_id text,
  ADD COLUMN service text,
  ADD COLUMN snapshot_id text,
  ADD COLUMN purpose text NOT NULL DEFAULT 'scheduled' CHECK (purpose IN ('scheduled', 'manual', 'safety', 'final')),
  ADD COLUMN row_counts jsonb,
  ADD COLUMN added_bytes bigint,
  ADD COLUMN duration_ms integer,
  ADD COLUMN verified_at timestamptz;
UPDATE backups SET purpose = 'final' WHERE location LIKE '%-final-%';
CREATE UNIQUE INDEX backups_run_service_kind_key ON backups (run_id, service, kind) WHERE run_id IS NOT NULL;
CREATE INDEX backups_tenant_started_idx ON backups (tenant_id, started_at);

-- A restore of one tenant service to a snapshot: which steps are done, so a
-- restore interrupted by a crash resumes, and one that failed half-way says so.
CREATE TABLE restores (
  id                 text PRIMARY KEY CHECK (id LIKE 'rst\_%'),
  tenant_id          text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  tenant_service_id  text NOT NULL,
  service            text NOT NULL,
  snapshot_id        text NOT NULL,
  data_snapshot_id   text,
  safety_run_id      text,
  steps_done         text[] NOT NULL DEFAULT '{}',
  status             text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'done', 'failed')),
  error              text,
  requested_by       text,
  created_at         timestamptz NOT NULL DEFAULT now(),
  finished_at        timestamptz
);
GRANT SELECT ON restores TO aiqso_tenant;
ALTER TABLE restores ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON restores FOR SELECT TO aiqso_tenant
  USING (tenant_id = aiqso_current_tenant());
ALTER TABLE backup_repositories ENABLE ROW LEVEL SECURITY;
