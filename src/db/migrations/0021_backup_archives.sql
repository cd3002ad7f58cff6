-- Backups (issue #22): what a data snapshot's archive holds, so a verification can check it, and
-- the volume a compute driver keeps it on outside restic (a Proxmox vzdump archive).

-- The number of entries and the bytes of the regular files in a data snapshot's tar archive, read
-- from its listing as it was stored; a verification lists the archive dumped from restic again and
-- compares.
ALTER TABLE backups ADD COLUMN archive_files integer CHECK (archive_files >= 0);
ALTER TABLE backups ADD COLUMN archive_bytes bigint CHECK (archive_bytes >= 0);
-- A data snapshot whose archive stays on the compute driver's storage (the snapshot holds a manifest
-- naming it): `<node>/<volid>` on Proxmox. Retention and purge delete it with the snapshot.
ALTER TABLE backups ADD COLUMN archive_volume text;
CREATE INDEX backups_archive_volume_idx ON backups (tenant_id) WHERE archive_volume IS NOT NULL;
