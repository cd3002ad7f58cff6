-- Credentials the platform hands to a tenant's containers (e.g. the dashboard's
-- tenant-scoped API key), sealed with the master key. The id is deterministic,
-- `<tenant id>/<name>`, so a reconcile that crashed after creating one finds it.
CREATE TABLE tenant_secrets (
  id         text PRIMARY KEY,
  tenant_id  text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  name       text NOT NULL,
  value_enc  text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (tenant_id, name),
  CHECK (id = tenant_id || '/' || name)
);
