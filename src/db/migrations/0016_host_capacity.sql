-- Waiting for capacity: when placement first found this host too full for a tenant or service (one
-- alert per such episode); null again once nothing waits for room on it.
ALTER TABLE hosts ADD COLUMN capacity_short_since timestamptz;
