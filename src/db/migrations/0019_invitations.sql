-- Invitations to a tenant's team: an owner invites an e-mail address with a
-- role; the invitee gets a link (the token, stored here only as its SHA-256)
-- that works once, until it expires, and sets their password.

CREATE TABLE invitations (
  id          text PRIMARY KEY CHECK (id LIKE 'inv\_%'),
  tenant_id   text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  email       text NOT NULL,
  role        text NOT NULL CHECK (role IN ('tenant_owner', 'tenant_member')),
  token_hash  text NOT NULL UNIQUE,
  invited_by  text,
  created_at  timestamptz NOT NULL DEFAULT now(),
  expires_at  timestamptz NOT NULL,
  accepted_at timestamptz,
  revoked_at  timestamptz
);
CREATE INDEX invitations_tenant_idx ON invitations (tenant_id);

GRANT SELECT, INSERT, UPDATE ON invitations TO aiqso_tenant;
ALTER TABLE invitations ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON invitations TO aiqso_tenant
  USING (tenant_id = aiqso_current_tenant()) WITH CHECK (tenant_id = aiqso_current_tenant());
