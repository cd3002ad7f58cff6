import { sql } from 'kysely';
import { isManagedName, type ContainerSpec } from '../../core/compute.ts';
import { DomainError } from '../../core/errors.ts';
import { sleep } from '../shared/run.ts';
import type { ProxmoxCluster, VmResource } from './cluster.ts';
import { pickNode, type NodePolicy } from './placement.ts';

/** Creating a guest: where it goes, the clone itself, and waiting out a clone a crash left running. */

export async function cloneFrom(
  cluster: ProxmoxCluster,
  template: number,
  vmid: number,
  spec: ContainerSpec,
  vms: VmResource[],
): Promise<VmResource> {
  const tpl = vms.find((v) => v.vmid === template);
  if (!tpl) throw new DomainError('not_found', `template VMID ${template} not found on the cluster`);
  const node = await placeOn(cluster, spec, vms);
  // A clone inherits `unprivileged`, and it cannot be changed afterwards.
  const tplConfig = await cluster.api.call<{ unprivileged?: number }>(
    'GET',
    `/nodes/${tpl.node}/lxc/${template}/config`,
  );
  if (Number(tplConfig.unprivileged) !== 1) {
    throw new DomainError(
      'deploy_failed',
      `template VMID ${template} is a privileged container, and tenants run only in unprivileged ones: ` +
        `back it up and restore it with unprivileged=1 (pct restore --unprivileged 1), then make it a template again`,
    );
  }
  const clone = (full: boolean) =>
    cluster.api.task('POST', `/nodes/${tpl.node}/lxc/${template}/clone`, {
      newid: vmid,
      hostname: spec.name,
      full,
      ...(full ? { storage: cluster.options.storage } : {}),
      ...(node !== tpl.node ? { target: node } : {}),
    });
  // One clone per template and storage at a time, across every worker: Proxmox
  // locks the template's config during a clone and the others would time out.
  await cluster.options.db.transaction().execute(async (trx) => {
    await sql`SELECT pg_advisory_xact_lock(hashtext(${`aiqso.pve_clone:${template}:${cluster.options.storage}`}))`.execute(
      trx,
    );
    try {
      await clone(tpl.template !== 1);
    } catch (err) {
      if (tpl.template !== 1 || !/linked clone/i.test((err as Error).message)) throw err;
      cluster.options.log.info(
        { template, storage: cluster.options.storage },
        'linked clone unavailable, cloning in full',
      );
      await clone(true);
    }
  });
  return { vmid, node, name: spec.name, status: 'stopped' };
}

/**
 * Create a container from a template volume (an OCI archive pulled or
 * uploaded to the template storage) on the node placement picks; `provide`
 * makes sure that node has the volume and returns its volid. Unprivileged,
 * its root disk allocated on the guests' storage; the rest of its config
 * (network, entrypoint, environment) is applied like any guest's.
 */
export async function createFromTemplate(
  cluster: ProxmoxCluster,
  vmid: number,
  spec: ContainerSpec,
  vms: VmResource[],
  provide: (node: string) => Promise<string>,
): Promise<VmResource> {
  const node = await placeOn(cluster, spec, vms);
  const ostemplate = await provide(node);
  await cluster.api.task('POST', `/nodes/${node}/lxc`, {
    vmid,
    ostemplate,
    hostname: spec.name,
    unprivileged: true,
    rootfs: `${cluster.options.storage}:${Math.max(1, Math.ceil(spec.resources.diskGb))}`,
    memory: spec.resources.memoryMb,
    cores: Math.max(1, Math.ceil(spec.resources.cores)),
  });
  return { vmid, node, name: spec.name, status: 'stopped' };
}

async function placeOn(cluster: ProxmoxCluster, spec: ContainerSpec, vms: VmResource[]): Promise<string> {
  const nodes = await cluster.api.call<
    { node: string; status: string; maxmem: number; mem: number; maxcpu: number; cpu: number }[]
  >('GET', '/cluster/resources', { type: 'node' });
  const hosts = await cluster.options.db
    .selectFrom('hosts')
    .select(['name', 'max_containers', 'draining'])
    .where('driver', '=', 'proxmox')
    .execute();
  const policies = new Map<string, NodePolicy>(
    hosts.map((h) => [h.name, { maxContainers: h.max_containers, draining: h.draining }]),
  );
  const count = (node: string) =>
    vms.filter((v) => v.node === node && v.name && isManagedName(v.name)).length;
  const loads = nodes.map((n) => ({ ...n, online: n.status === 'online', containers: count(n.node) }));
  const node = pickNode(loads, policies, spec.resources.memoryMb * 2 ** 20);
  if (!node) throw new DomainError('capacity_exhausted', 'no Proxmox node is online, undrained and has room');
  return node;
}

/** A crash may leave a clone task running on the cluster: wait for its lock to go. */
export async function waitUnlocked(
  cluster: ProxmoxCluster,
  vmid: number,
  timeoutMs = 600_000,
): Promise<VmResource> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const vm = (await cluster.vms()).find((v) => v.vmid === vmid);
    if (!vm) throw new DomainError('dependency_failed', `VMID ${vmid} vanished while being created; retry`);
    if (!vm.lock) return vm;
    if (Date.now() > deadline)
      throw new DomainError('dependency_failed', `VMID ${vmid} stays locked (${vm.lock})`);
    await sleep(250);
  }
}
