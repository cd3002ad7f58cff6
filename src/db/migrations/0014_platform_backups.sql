-- The platform repository: one restic repository for the master database
-- (`pg_dump -Fc` snapshots tagged kind=master), its password derived from the
-- master key, so it opens with the master key alone when the master database
-- is gone. Each recorded snapshot is a row here; the snapshot of a run does
-- not hold its own row (it is written after the dump).
CREATE TABLE platform_backups (
  id           text PRIMARY KEY CHECK (id LIKE 'bkp\_%'),
  snapshot_id  text NOT NULL UNIQUE,
  location     text NOT NULL,
  key_id       text NOT NULL,
  size_bytes   bigint NOT NULL,
  added_bytes  bigint NOT NULL,
  duration_ms  integer NOT NULL,
  started_at   timestamptz NOT NULL,
  finished_at  timestamptz NOT NULL DEFAULT now()
);
-- No grant to aiqso_tenant: the platform's own backups are the operator's.
ALTER TABLE platform_backups ENABLE ROW LEVEL SECURITY;
