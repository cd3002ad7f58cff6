-- Password reset by e-mail and the opt-in to product e-mails (issue #25).

-- A password reset link: its token is kept only as SHA-256, for one user,
-- expiring, spent once (used_at). Resetting spends every other open link of
-- the user too. Goes with the user (a purge).
CREATE TABLE password_resets (
  token_hash text PRIMARY KEY,
  user_id    text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  created_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL,
  used_at    timestamptz
);
CREATE INDEX password_resets_user_idx ON password_resets (user_id);

-- Product e-mails (the seed's explicit marketing consent): off unless the
-- user ticked the unticked box at signup or turned them on later.
ALTER TABLE users ADD COLUMN marketing_emails boolean NOT NULL DEFAULT false;

-- The consent record: every grant and withdrawal, when, where it was made
-- and the words the user agreed to. Goes with the user (a purge).
CREATE TABLE consent_records (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  user_id     text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  purpose     text NOT NULL CHECK (purpose IN ('marketing_emails')),
  granted     boolean NOT NULL,
  source      text NOT NULL CHECK (source IN ('signup', 'api')),
  wording     text NOT NULL,
  recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX consent_records_user_idx ON consent_records (user_id, recorded_at DESC);
