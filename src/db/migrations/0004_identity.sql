-- Identity and access: sessions, API keys, TOTP, JWT signing keys, the tenant
-- role that row-level security applies to, and an append-only audit log.

-- Access-token signing keys. The private half is sealed with the master key.
CREATE TABLE signing_keys (
  kid         text PRIMARY KEY,
  alg         text NOT NULL CHECK (alg IN ('EdDSA')),
  public_jwk  jsonb NOT NULL,
  private_enc text NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  retired_at  timestamptz
);

-- A login: the refresh token (stored as its SHA-256) and the family it rotates in.
CREATE TABLE sessions (
  id          text PRIMARY KEY CHECK (id LIKE 'ses\_%'),
  user_id     text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  family      text NOT NULL,
  token_hash  text NOT NULL UNIQUE,
  created_at  timestamptz NOT NULL DEFAULT now(),
  expires_at  timestamptz NOT NULL,
  revoked_at  timestamptz,
  replaced_by text
);
CREATE INDEX sessions_user_idx ON sessions (user_id);
CREATE INDEX sessions_family_idx ON sessions (family);

CREATE TABLE api_keys (
  id           text PRIMARY KEY CHECK (id LIKE 'key\_%'),
  tenant_id    text REFERENCES tenants (id) ON DELETE CASCADE,
  name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
  role         text NOT NULL CHECK (role IN ('platform_admin', 'tenant_owner', 'tenant_member')),
  prefix       text NOT NULL,
  key_hash     text NOT NULL UNIQUE,
  created_by   text,
  created_at   timestamptz NOT NULL DEFAULT now(),
  expires_at   timestamptz,
  revoked_at   timestamptz,
  last_used_at timestamptz,
  CHECK ((role = 'platform_admin') = (tenant_id IS NULL))
);
CREATE INDEX api_keys_tenant_idx ON api_keys (tenant_id);

-- TOTP: the sealed secret; enabled once the user proved they hold it.
CREATE TABLE user_totp (
  user_id    text PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
  secret_enc text NOT NULL,
  enabled_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now()
);

-- One row per accepted TOTP time step: the primary key makes a code single-use
-- even when many requests present it at the same instant.
CREATE TABLE totp_used_steps (
  user_id text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  step    bigint NOT NULL,
  used_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (user_id, step)
);

CREATE TABLE recovery_codes (
  user_id   text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  code_hash text NOT NULL,
  used_at   timestamptz,
  PRIMARY KEY (user_id, code_hash)
);

-- The audit log is append-only: no UPDATE, DELETE or TRUNCATE, for anyone
-- going through SQL. (A superuser can still disable triggers; the hash chain
-- is what detects that, see `aiqso audit verify`.)
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit_log is append-only' USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
  FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
  FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

-- The role tenant-scoped work runs under (SET LOCAL ROLE inside the
-- transaction). It owns nothing, so row-level security applies to it; the
-- tenant comes from the transaction-local setting aiqso.tenant_id.
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'aiqso_tenant') THEN
    CREATE ROLE aiqso_tenant NOLOGIN;
  END IF;
END;
$$;
DO $$
BEGIN
  EXECUTE format('GRANT aiqso_tenant TO %I', current_user);
EXCEPTION WHEN others THEN
  -- A superuser may already SET ROLE to anything; granting to oneself can fail harmlessly.
  NULL;
END;
$$;

GRANT USAGE ON SCHEMA public TO aiqso_tenant;
GRANT SELECT ON tenants, services TO aiqso_tenant;
GRANT SELECT, INSERT, UPDATE, DELETE ON users, subscriptions, tenant_services, usage_metrics, backups,
  routes, resources, api_keys TO aiqso_tenant;
GRANT SELECT ON audit_log TO aiqso_tenant;

CREATE FUNCTION aiqso_current_tenant() RETURNS text LANGUAGE sql STABLE AS $$
  SELECT nullif(current_setting('aiqso.tenant_id', true), '')
$$;
GRANT EXECUTE ON FUNCTION aiqso_current_tenant() TO aiqso_tenant;

ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenants TO aiqso_tenant USING (id = aiqso_current_tenant());

ALTER TABLE users ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON users TO aiqso_tenant
  USING (tenant_id = aiqso_current_tenant()) WITH CHECK (tenant_id = aiqso_current_tenant());
ALTER TABLE subscriptions ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON subscriptions TO aiqso_tenant
  USING (tenant_id = aiqso_current_tenant()) WITH CHECK (tenant_id = aiqso_current_tenant());
ALTER TABLE tenant_services ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenant_services TO aiqso_tenant
  USING (tenant_id = aiqso_current_tenant()) WITH CHECK (tenant_id = aiqso_current_tenant());
ALTER TABLE usage_metrics ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON usage_metrics TO aiqso_tenant
  USING (tenant_id = aiqso_current_tenant()) WITH CHECK (tenant_id = aiqso_current_tenant());
ALTER TABLE backups ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON backups TO aiqso_tenant
  USING (tenant_id = aiqso_current_tenant()) WITH CHECK (tenant_id = aiqso_current_tenant());
ALTER TABLE routes ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON routes TO aiqso_tenant
  USING (tenant_id = aiqso_current_tenant()) WITH CHECK (tenant_id = aiqso_current_tenant());
ALTER TABLE resources ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON resources TO aiqso_tenant
  USING (tenant_id = aiqso_current_tenant()) WITH CHECK (tenant_id = aiqso_current_tenant());
ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON api_keys TO aiqso_tenant
  USING (tenant_id = aiqso_current_tenant()) WITH CHECK (tenant_id = aiqso_current_tenant());
ALTER TABLE audit_log ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_log FOR SELECT TO aiqso_tenant USING (tenant_id = aiqso_current_tenant());
