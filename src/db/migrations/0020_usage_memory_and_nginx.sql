-- Usage metering leftovers (issue #26): memory average and peak per hour, and the nginx edge's requests.

ALTER TABLE usage_metrics DROP CONSTRAINT usage_metrics_metric_check;
ALTER TABLE usage_metrics ADD CONSTRAINT usage_metrics_metric_check CHECK (metric IN (
  'cpu_seconds', 'net_rx_bytes', 'net_tx_bytes', 'requests', 'response_bytes', 'mails_sent',
  'memory_bytes', 'memory_avg_bytes', 'disk_bytes', 'db_bytes', 'memory_peak_bytes'));

-- The memory samples of one container in one hour as running aggregates (no row per sample). `slots`
-- is a bitmask of the hour's sample slots already counted: a sample adds to the row only when its
-- slot's bit is not set yet (in the same statement that sets it), so a pass run again after a crash,
-- or by a second worker, in the same slot counts nothing twice. `driver_peak_first`/`_last`: the
-- driver's own peak since the workload started (VmHWM, cgroup memory.peak), at the hour's first sample
-- and the highest seen since: when it grew, the hour reached it.
CREATE TABLE usage_memory (
  container         text NOT NULL,
  period_start      timestamptz NOT NULL CHECK (date_trunc('hour', period_start) = period_start),
  tenant_id         text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  tenant_service_id text REFERENCES tenant_services (id) ON DELETE CASCADE,
  slots             integer NOT NULL,
  samples           integer NOT NULL CHECK (samples > 0),
  sum_bytes         double precision NOT NULL,
  peak_bytes        double precision NOT NULL,
  driver_peak_first double precision,
  driver_peak_last  double precision,
  PRIMARY KEY (container, period_start)
);
CREATE INDEX usage_memory_period_idx ON usage_memory (period_start);

-- How far the usage reader of an nginx edge has read that edge's access log: the file (device and
-- inode, so a rotated log starts again at 0) and the byte offset after the last line counted. Moved in
-- the transaction that adds the lines' requests to usage_edge_counts: a reader killed mid-way counts
-- those lines again from the old offset, never twice.
CREATE TABLE usage_log_offsets (
  edge       text PRIMARY KEY,
  file_id    text NOT NULL,
  read_bytes bigint NOT NULL CHECK (read_bytes >= 0),
  updated_at timestamptz NOT NULL DEFAULT now()
);
