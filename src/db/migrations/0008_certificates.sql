-- Certificates the platform ordered over ACME, so the `certificates` schedule
-- can renew them. One row per certificate, keyed by its first name (the one
-- its files are named after); ordering the same first name again updates it.
--
-- A row is written only once an order has succeeded; a failed renewal keeps
-- the row (and the files on disk) and records `last_error` for the next run.
CREATE TABLE certificates (
  name            text PRIMARY KEY,
  names           text[] NOT NULL CHECK (cardinality(names) > 0 AND names[1] = name),
  -- `<AIQSO_TLS_CERT_DIR>/<file_base>.crt|.key`; a wildcard's is `_wildcard.<rest>`.
  file_base       text NOT NULL,
  challenge       text NOT NULL CHECK (challenge IN ('http-01', 'dns-01')),
  not_after       timestamptz NOT NULL,
  ordered_at      timestamptz NOT NULL,
  last_attempt_at timestamptz NOT NULL,
  last_error      text,
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now()
);
