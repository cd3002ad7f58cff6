-- Containers the proxmox driver manages, by VMID. VMIDs come from a
-- platform-owned range and are allocated under an advisory lock; the primary
-- key and the unique name make a double allocation impossible even without it
-- (Proxmox's own /cluster/nextid is racy between concurrent creators).
CREATE TABLE proxmox_guests (
  vmid       integer PRIMARY KEY CHECK (vmid BETWEEN 100 AND 999999999),
  name       text NOT NULL UNIQUE,
  port       integer NOT NULL CHECK (port BETWEEN 1 AND 65535),
  created_at timestamptz NOT NULL DEFAULT now()
);
