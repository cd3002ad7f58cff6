import { readFile, writeFile } from 'node:fs/promises';
import type { ContainerSpec } from '../../core/compute.ts';
import { badRequest, DomainError } from '../../core/errors.ts';
import type { ProxmoxCluster, VmResource } from './cluster.ts';

/**
 * Export and import on Proxmox: the archive is made by vzdump on the cluster's
 * backup storage and stays there; the local file is a small manifest naming
 * the volume, which `importFrom` restores with `pct restore` semantics
 * (POST /nodes/{node}/lxc with restore=1).
 */
export interface ProxmoxManifest {
  driver: 'proxmox';
  volid: string;
  node: string;
  vmid: number;
  size: number;
}

export async function exportGuest(
  cluster: ProxmoxCluster,
  vm: VmResource,
  file: string,
): Promise<{ bytes: number }> {
  const manifest = await dumpGuest(cluster, vm);
  await writeFile(file, JSON.stringify(manifest), { mode: 0o600 });
  return { bytes: manifest.size };
}

/** vzdump the guest to the backup storage; the manifest names the archive. */
async function dumpGuest(cluster: ProxmoxCluster, vm: VmResource): Promise<ProxmoxManifest> {
  const { backupStorage } = cluster.options;
  const started = Math.floor(Date.now() / 1000) - 1;
  await cluster.api.task('POST', `/nodes/${vm.node}/vzdump`, {
    vmid: String(vm.vmid),
    storage: backupStorage,
    mode: 'snapshot',
    compress: 'zstd',
  });
  const content = await cluster.api.call<{ volid: string; size: number; ctime: number }[]>(
    'GET',
    `/nodes/${vm.node}/storage/${backupStorage}/content`,
    { content: 'backup', vmid: vm.vmid },
  );
  const newest = content.filter((c) => c.ctime >= started).sort((a, b) => b.ctime - a.ctime)[0];
  if (!newest)
    throw new DomainError('dependency_failed', `vzdump of ${vm.vmid} left no archive on ${backupStorage}`);
  return { driver: 'proxmox', volid: newest.volid, node: vm.node, vmid: vm.vmid, size: newest.size };
}

async function readManifest(file: string): Promise<ProxmoxManifest> {
  const text = await readFile(file, 'utf8').catch(() => {
    throw badRequest(`archive ${file} does not exist`);
  });
  try {
    const m = JSON.parse(text) as ProxmoxManifest;
    if (m.driver === 'proxmox' && typeof m.volid === 'string') return m;
  } catch {
    // falls through
  }
  throw badRequest(`${file} is not a proxmox export manifest`);
}

/**
 * A vzdump archive as the backups record it: `<node>/<volid>` (the node whose
 * storage holds it: a backup storage need not be shared).
 */
export const archiveReference = (m: Pick<ProxmoxManifest, 'node' | 'volid'>) => `${m.node}/${m.volid}`;

function parseReference(reference: string): { node: string; volid: string; storage: string } {
  const m = /^([a-zA-Z0-9][a-zA-Z0-9-]*)\/(([a-z][a-z0-9\-_.]*[a-z0-9]):backup\/[^/\s]+)$/i.exec(reference);
  if (!m) throw badRequest(`${reference} is not a vzdump archive reference (<node>/<storage>:backup/<file>)`);
  return { node: m[1]!, volid: m[2]!, storage: m[3]! };
}

/** Whether the archive is still listed on its storage. */
export async function archiveExists(cluster: ProxmoxCluster, reference: string): Promise<boolean> {
  const { node, volid, storage } = parseReference(reference);
  const content = await cluster.api.call<{ volid: string }[]>(
    'GET',
    `/nodes/${node}/storage/${storage}/content`,
    {
      content: 'backup',
    },
  );
  return content.some((c) => c.volid === volid);
}

/** Delete the archive from its storage (a task); one already gone is no error. */
export async function removeArchive(cluster: ProxmoxCluster, reference: string): Promise<boolean> {
  const { node, volid, storage } = parseReference(reference);
  if (!(await archiveExists(cluster, reference))) return false;
  await cluster.api.task('DELETE', `/nodes/${node}/storage/${storage}/content/${encodeURIComponent(volid)}`);
  cluster.options.log.info({ volid, node }, 'vzdump archive removed');
  return true;
}

/** The archive reference a manifest written by `exportGuest` names. */
export async function manifestReference(file: string): Promise<string> {
  return archiveReference(await readManifest(file));
}

/**
 * Replace (or create) the container `spec.name` from the archive; ensure() then applies the spec.
 * An archive no longer on its storage is refused before the container is touched.
 */
export async function importGuest(cluster: ProxmoxCluster, spec: ContainerSpec, file: string): Promise<void> {
  const manifest = await readManifest(file);
  if (!(await archiveExists(cluster, archiveReference(manifest))))
    throw new DomainError(
      'conflict',
      `the archive ${manifest.volid} is no longer on node ${manifest.node}'s storage; ${spec.name} was left as it is`,
    );
  await restoreGuest(cluster, spec.name, spec.port, manifest);
}

/**
 * Restore an archive as `name`, always unprivileged: Proxmox shifts the ids of
 * an archive made from a privileged container as it unpacks it.
 */
async function restoreGuest(
  cluster: ProxmoxCluster,
  name: string,
  port: number,
  manifest: ProxmoxManifest,
): Promise<void> {
  const existing = await cluster.find(name);
  if (existing?.status === 'running')
    await cluster.api.task('POST', `/nodes/${existing.node}/lxc/${existing.vmid}/status/stop`);
  const others = new Set((await cluster.vms()).filter((v) => v.vmid !== existing?.vmid).map((v) => v.vmid));
  const vmid = existing?.vmid ?? (await cluster.registry.allocate(name, port, others));
  const node = existing?.node ?? manifest.node;
  await cluster.api.task('POST', `/nodes/${node}/lxc`, {
    vmid,
    ostemplate: manifest.volid,
    restore: true,
    force: true,
    unprivileged: true,
    storage: cluster.options.storage,
    hostname: name,
  });
}

/**
 * A guest an older version made privileged (`unprivileged` cannot be changed
 * on an existing container): stopped, backed up and restored in place as
 * unprivileged, same VMID, same data. Returns whether it was running (the
 * caller starts it again once its config and firewall are applied).
 */
export async function convertGuest(cluster: ProxmoxCluster, vm: VmResource, port: number): Promise<boolean> {
  const running = vm.status === 'running';
  if (running) await cluster.api.task('POST', `/nodes/${vm.node}/lxc/${vm.vmid}/status/stop`);
  await restoreGuest(cluster, vm.name!, port, await dumpGuest(cluster, { ...vm, status: 'stopped' }));
  cluster.options.log.info({ container: vm.name, vmid: vm.vmid }, 'container restored as unprivileged');
  return running;
}
