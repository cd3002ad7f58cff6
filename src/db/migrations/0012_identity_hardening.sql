-- Identity hardening (issue #20).

-- What an API key is for. A tenant dashboard's own key (`dashboard`) may also
-- vouch for the addresses of the users it signs in (X-AIQSO-Client-Address),
-- so the login limits count real clients; a key a tenant owner creates
-- (`integration`) never can, whatever its name.
ALTER TABLE api_keys
  ADD COLUMN purpose text NOT NULL DEFAULT 'integration' CHECK (purpose IN ('integration', 'dashboard'));
UPDATE api_keys SET purpose = 'dashboard' WHERE name = 'dashboard-api-key' AND created_by IS NULL;
