-- The orchestrator's bookkeeping beside graphile-worker's own schema (installed
-- by migrate() into `graphile_worker`).

-- Every running worker process. A process holds the session-level advisory
-- lock (classid 7344212, objid lock_key) for as long as it lives, so PostgreSQL
-- itself says which processes are alive: a killed process loses its lock with
-- its connection, and the jobs its pools had locked are released at once
-- instead of after graphile-worker's four-hour expiry.
CREATE TABLE worker_processes (
  id         text PRIMARY KEY,
  lock_key   integer NOT NULL UNIQUE,
  hostname   text NOT NULL,
  pid        integer NOT NULL,
  pool_ids   text[] NOT NULL DEFAULT '{}',
  started_at timestamptz NOT NULL DEFAULT now()
);

-- Things a driver reports that no spec owns. Seen first at first_seen_at; removed
-- only once they have stayed orphaned for the grace period.
CREATE TABLE orphans (
  source        text NOT NULL,
  name          text NOT NULL,
  first_seen_at timestamptz NOT NULL DEFAULT now(),
  last_seen_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (source, name)
);
