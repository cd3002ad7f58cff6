-- The audit chain's head: one row naming the newest audit_log row (id, hash)
-- and how many rows were ever appended. The hash chain alone cannot show
-- that its newest rows were deleted (the chain just ends earlier); the head
-- can, because `aiqso audit verify` compares the end of the chain with it.
--
-- The head moves only inside the trigger that accepts an append, in the
-- statement that inserts the row: an append that does not link to the head is
-- refused, and the head row is locked until the append commits, so appends are
-- serialised even by writers that skip appendAudit's advisory lock.
--
-- What an attacker can and cannot hide (see also src/identity/audit.ts):
-- * With plain DML (UPDATE/DELETE/TRUNCATE rights, e.g. SQL injection through
--   the app's connection): nothing. Both tables refuse UPDATE, DELETE and
--   TRUNCATE by trigger; an INSERT must link to the head and then becomes part
--   of the chain (the chain proves integrity and order, not who wrote a row).
-- * Bypassing triggers on audit_log only (the owner's DISABLE TRIGGER, or a
--   superuser's session_replication_role): an edited row fails its hash, a
--   deleted middle row breaks the next row's link, and deleted newest rows no
--   longer reach the head, all reported by `aiqso audit verify`.
-- * Bypassing triggers on both tables and recomputing every later hash and the
--   head: undetectable from inside the database. Only a head recorded outside
--   it catches that: `aiqso audit verify --expect <id>:<hash>`.
CREATE TABLE audit_head (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  last_id   bigint,
  last_hash text NOT NULL,
  rows      bigint NOT NULL CHECK (rows >= 0),
  moved_at  timestamptz NOT NULL DEFAULT now()
);

-- Start from the chain as it is now (a truncation made before this migration cannot be seen).
INSERT INTO audit_head (last_id, last_hash, rows)
SELECT (SELECT id FROM audit_log ORDER BY id DESC LIMIT 1),
       coalesce((SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1), repeat('0', 64)),
       (SELECT count(*) FROM audit_log);

CREATE FUNCTION audit_log_advance_head() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  head audit_head%ROWTYPE;
BEGIN
  SELECT * INTO head FROM audit_head WHERE singleton FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'audit_head is missing' USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF NEW.prev_hash IS DISTINCT FROM head.last_hash THEN
    RAISE EXCEPTION 'audit_log append does not link to the chain head (id %)', head.last_id
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  UPDATE audit_head
     SET last_id = NEW.id, last_hash = NEW.hash, rows = head.rows + 1, moved_at = now()
   WHERE singleton;
  RETURN NEW;
END;
$$;
CREATE TRIGGER audit_log_advance_head BEFORE INSERT ON audit_log
  FOR EACH ROW EXECUTE FUNCTION audit_log_advance_head();

-- Only the append trigger above may move the head (it runs one trigger level deeper).
CREATE FUNCTION audit_head_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'UPDATE' AND pg_trigger_depth() > 1 THEN
    RETURN NEW;
  END IF;
  RAISE EXCEPTION 'audit_head moves only with an audit_log append' USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER audit_head_guard BEFORE INSERT OR UPDATE OR DELETE ON audit_head
  FOR EACH ROW EXECUTE FUNCTION audit_head_guard();
CREATE TRIGGER audit_head_no_truncate BEFORE TRUNCATE ON audit_head
  FOR EACH STATEMENT EXECUTE FUNCTION audit_head_guard();

REVOKE ALL ON audit_head FROM PUBLIC;
