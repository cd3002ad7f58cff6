-- Identity hardening (issue #20).

-- What an API key is for. A tenant dashboard's own key (`dashboard`) may also
-- vouch for the addresses of the users it signs in (X-AIQSO-Client-Address),
-- so the login limits count real clients; a key a tenant owner creates
-- (`integration`) never can, whatever its name.
ALTER TABLE api_keys
  ADD COLUMN purpose text NOT NULL DEFAULT 'integration' CHECK (purpose IN ('integration', 'dashboard'));
UPDATE api_keys SET purpose = 'dashboard' WHERE name = 'dashboard-api-key' AND created_by IS NULL;

-- Personal data outside the hashed audit chain, so a purge can remove it and
-- `aiqso audit verify` still passes. A new row's source address is kept in
-- audit_addresses with a random salt; the row itself (and its hash) holds only
-- the commitment sha256(salt || ':' || address). Deleting the address row
-- leaves a commitment that reveals nothing (the salt is 128 random bits);
-- while it exists, verify checks it against the commitment. Rows written
-- before this migration keep their address in source_ip, as hashed.
ALTER TABLE audit_log ADD COLUMN source_ip_commit text;
CREATE TABLE audit_addresses (
  audit_id  bigint PRIMARY KEY,
  tenant_id text,
  address   inet NOT NULL,
  salt      text NOT NULL
);
CREATE INDEX audit_addresses_tenant_idx ON audit_addresses (tenant_id);
GRANT SELECT ON audit_addresses TO aiqso_tenant;
ALTER TABLE audit_addresses ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_addresses FOR SELECT TO aiqso_tenant
  USING (tenant_id = aiqso_current_tenant());

-- A purged tenant is a tombstone: its id, when it was purged and what was
-- removed (purge_record); the company name goes, the slug stays taken (an old
-- link never reaches a new tenant).
ALTER TABLE tenants ALTER COLUMN company DROP NOT NULL;
ALTER TABLE tenants ADD CONSTRAINT tenants_company_until_purged CHECK (company IS NOT NULL OR status = 'purged');
ALTER TABLE tenants ADD COLUMN purge_record jsonb;
-- An address may be deleted (a purge), never changed.
CREATE TRIGGER audit_addresses_no_update BEFORE UPDATE ON audit_addresses
  FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
