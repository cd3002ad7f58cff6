import { isManagedName } from '../../core/compute.ts';
import type {
  AddressRoom,
  ComputeDriver,
  ExportVolumes,
  ContainerInfo,
  ContainerSpec,
  ContainerStats,
  ResourceLimits,
} from '../../core/compute.ts';
import { badRequest, conflict, DomainError } from '../../core/errors.ts';
import type { Database } from '../../db/database.ts';
import type { Logger } from '../../observability/logger.ts';
import { macFor } from '../lxc/config.ts';
import { IpPool } from '../shared/ip-pool.ts';
import { KeyedMutex } from '../shared/run.ts';
import type { Egress } from '../lxc/netpolicy.ts';
import {
  archiveExists,
  convertGuest,
  exportGuest,
  importGuest,
  manifestReference,
  removeArchive,
} from './backup.ts';
import os from 'node:os';
import nodePath from 'node:path';
import { sql } from 'kysely';
import { proxmoxImageRefusal } from '../../core/compute.ts';
import { appArchive, type AppArchive } from './apps.ts';
import { imageBoot, needsBoot } from './boot.ts';
import { cloneFrom, createFromTemplate, waitUnlocked } from './create.ts';
import { hasTemplate, imageFilename, ProxmoxImages, templateVolid } from './images.ts';
import { describe, markApplied, readDigests, reportedDigest } from './digest.ts';
import { PveClient, type PveClientOptions } from './client.ts';
import { applyGuestFirewall, firewallPlan } from './firewall.ts';
import type { ProxmoxCluster, VmResource } from './cluster.ts';
import { GuestRegistry } from './guests.ts';

export interface ProxmoxDriverOptions {
  db: Database;
  log: Logger;
  api: Omit<PveClientOptions, 'log'>;
  /** Storage for full clones and restores (e.g. local-lvm). */
  storage: string;
  /** Storage vzdump writes backups to. */
  backupStorage: string;
  /** Storage holding container templates (`vztmpl`): pulled images and the platform's app archives. */
  templateStorage: string;
  /** Where app archives are built before their upload (default a directory under the system's tmp). */
  workDir?: string;
  bridge: string;
  subnet: string;
  vmidRange: [number, number];
  /** Containers' internet access through their firewall: none (default), or beyond the bridge's subnet. */
  egress?: Egress;
}

/**
 * `lxc.init.cmd` from an argv (Proxmox's `entrypoint` is one string, split
 * by liblxc on blanks with quotes grouping): a word with blanks is quoted.
 */
export function initCommand(argv: string[]): string {
  return argv
    .map((a) => {
      if (/^[^\s'"]+$/.test(a)) return a;
      if (!a.includes("'")) return `'${a}'`;
      if (!a.includes('"')) return `"${a}"`;
      throw new DomainError(
        'deploy_failed',
        `argument ${JSON.stringify(a)} holds both quote characters, which a Proxmox entrypoint cannot carry`,
      );
    })
    .join(' ');
}

/**
 * Containers on a Proxmox VE cluster through its REST API: linked (else full)
 * clones of an unprivileged template VMID, or containers created from an OCI
 * image the cluster pulls (`images.ts`) or from an app archive the platform
 * uploads (`apps.ts`); static IPs from the platform pool, limits in the
 * container config, VMIDs from a platform-owned range, each walled by its
 * own firewall. Proxmox offers no exec channel for LXC over the API, so
 * `exec` is unavailable.
 */
export class ProxmoxDriver implements ComputeDriver, ProxmoxCluster {
  readonly kind = 'proxmox' as const;
  readonly api: PveClient;
  readonly pool: IpPool;
  readonly registry: GuestRegistry;
  readonly images: ProxmoxImages;
  private readonly locks = new KeyedMutex();
  private readonly archives = new Map<string, Promise<AppArchive>>();

  constructor(readonly options: ProxmoxDriverOptions) {
    this.api = new PveClient({ ...options.api, log: options.log });
    this.pool = new IpPool(options.db, options.subnet);
    this.registry = new GuestRegistry(options.db, options.vmidRange);
    this.images = new ProxmoxImages(this);
  }

  /** The archive of an app workload, built once per process (and per content digest on disk). */
  private archive(dir: string, entry: string): Promise<AppArchive> {
    const key = `${dir}\0${entry}`;
    let p = this.archives.get(key);
    if (!p) {
      const workDir = this.options.workDir ?? nodePath.join(os.tmpdir(), 'aiqso-proxmox-apps');
      p = appArchive(workDir, dir, entry);
      p.catch(() => this.archives.delete(key));
      this.archives.set(key, p);
    }
    return p;
  }

  /** The app's archive on `node`'s template storage, uploaded unless it is there. */
  private async uploadApp(node: string, archive: AppArchive): Promise<string> {
    const { templateStorage } = this.options;
    await this.options.db.transaction().execute(async (trx) => {
      await sql`SELECT pg_advisory_xact_lock(hashtext(${`aiqso.pve_upload:${node}:${archive.filename}`}))`.execute(
        trx,
      );
      if (await hasTemplate(this, node, archive.filename)) return;
      this.options.log.info({ node, archive: archive.filename }, 'uploading app archive to proxmox');
      await this.api.upload(
        `/nodes/${node}/storage/${templateStorage}/upload`,
        { content: 'vztmpl' },
        archive.file,
      );
    });
    return templateVolid(this, archive.filename);
  }

  /** Where a new guest for `workload` comes from on `node`: its template volume, pulled or uploaded there. */
  private async templateOn(node: string, spec: ContainerSpec): Promise<string> {
    const w = spec.workload;
    if (w.kind === 'image') {
      await this.images.pullOn(node, w.image);
      return templateVolid(this, imageFilename(w.image));
    }
    if (w.kind === 'app') return this.uploadApp(node, await this.archive(w.dir, w.entry));
    throw new DomainError('internal', 'a clone has no template volume');
  }

  /** The `entrypoint` a spec sets, or undefined to keep the image's own. */
  private async entrypointOf(spec: ContainerSpec): Promise<string | undefined> {
    const w = spec.workload;
    if (w.kind === 'app') return (await this.archive(w.dir, w.entry)).entrypoint;
    if (w.kind === 'image' && w.entrypoint) return initCommand([...w.entrypoint, ...(w.command ?? [])]);
    return undefined;
  }

  async vms(): Promise<VmResource[]> {
    const all = await this.api.call<(VmResource & { type: string })[]>('GET', '/cluster/resources', {
      type: 'vm',
    });
    return all.filter((r) => r.type === 'lxc');
  }

  /** The guest behind `name`, or undefined when it does not exist (yet). */
  async find(name: string): Promise<(VmResource & { port: number }) | undefined> {
    const row = await this.registry.lookup(name);
    if (!row) return undefined;
    const vm = (await this.vms()).find((v) => v.vmid === row.vmid);
    return vm ? { ...vm, port: row.port } : undefined;
  }

  private async must(name: string) {
    const vm = await this.find(name);
    if (!vm) throw new DomainError('not_found', `container ${name} not found`);
    return vm;
  }

  async ensure(spec: ContainerSpec): Promise<ContainerInfo> {
    const w = spec.workload;
    if (w.kind === 'clone' && !/^\d+$/.test(w.template))
      throw badRequest('a clone workload on the proxmox driver names a template VMID');
    if (w.kind === 'image') {
      const refusal = proxmoxImageRefusal(w);
      if (refusal) throw new DomainError('deploy_failed', `${w.image}: ${refusal}`);
    }
    return this.locks.run(spec.name, async () => {
      const ip = await this.pool.allocate(spec.name, spec.ip);
      const vms = await this.vms();
      const mine = await this.registry.lookup(spec.name);
      const others = new Set(vms.filter((v) => v.vmid !== mine?.vmid).map((v) => v.vmid));
      const vmid = await this.registry.allocate(spec.name, spec.port, others);
      let vm = vms.find((v) => v.vmid === vmid);
      if (vm && vm.name !== spec.name && vm.lock !== 'create')
        throw conflict(`VMID ${vmid} is used by ${vm.name}`);
      if (!vm) {
        vm =
          w.kind === 'clone'
            ? await cloneFrom(this, Number(w.template), vmid, spec, vms)
            : await createFromTemplate(this, vmid, spec, vms, (node) => this.templateOn(node, spec));
      }
      if (vm.lock) vm = await waitUnlocked(this, vmid);
      await this.configure(vm, spec, ip);
      return this.info(spec.name);
    });
  }

  /**
   * The spec onto the guest: unprivileged (a guest an older version made
   * privileged is restored as unprivileged first: Proxmox fixes the setting at
   * creation), limits, network with its firewall, environment, then the
   * firewall's options and rules (`firewall.ts`).
   */
  private async configure(vm: VmResource, spec: ContainerSpec, ip: string): Promise<void> {
    const { subnet } = this.pool;
    const path = `/nodes/${vm.node}/lxc/${vm.vmid}`;
    const current = await this.api.call<{ unprivileged?: number }>('GET', `${path}/config`);
    const restart = Number(current.unprivileged) === 1 ? false : await convertGuest(this, vm, spec.port);
    const before = await this.api.call<{ description?: string; env?: string; entrypoint?: string }>(
      'GET',
      `${path}/config`,
    );
    // An image's own environment (which Proxmox copied into `env` at creation) stays under the spec's.
    const inherited =
      spec.workload.kind === 'clone'
        ? {}
        : Object.fromEntries(
            (before.env ?? '')
              .split('\0')
              .filter((kv) => kv.includes('='))
              .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
          );
    const w = spec.workload;
    // Booted through the script, the catalog's entrypoint goes into the script, not into `entrypoint`.
    let entrypoint = w.kind === 'image' && needsBoot(w) ? undefined : await this.entrypointOf(spec);
    let boot: Record<string, string> = {};
    if (w.kind === 'image') {
      // Init commands and a working directory: the image's shell boots it (`boot.ts`).
      const planned = imageBoot(w, entrypoint, { entrypoint: before.entrypoint, env: inherited });
      for (const k of planned.drop) delete inherited[k];
      entrypoint = planned.entrypoint;
      boot = planned.env;
    }
    const env = Object.entries({ ...inherited, ...spec.env, ...boot, PORT: String(spec.port) }).map(
      ([k, v]) => `${k}=${v}`,
    );
    await this.api.call('PUT', `${path}/config`, {
      hostname: spec.name,
      cores: Math.max(1, Math.ceil(spec.resources.cores)),
      memory: spec.resources.memoryMb,
      net0: `name=eth0,bridge=${this.options.bridge},firewall=1,ip=${ip}/${subnet.prefix},gw=${subnet.gateway},hwaddr=${macFor(spec.name).toUpperCase()}`,
      env: env.join('\0'),
      ...(entrypoint ? { entrypoint } : {}),
      tags: 'aiqso',
      // A running container keeps what it started with until a restart applies the rest.
      description: describe(spec, readDigests(before.description).applied),
    });
    const config = await this.api.call<{ rootfs?: string }>('GET', `${path}/config`);
    if (diskGb(config.rootfs) < spec.resources.diskGb) {
      await this.api.task('PUT', `${path}/resize`, { disk: 'rootfs', size: `${spec.resources.diskGb}G` });
    }
    const plan = firewallPlan({
      subnet,
      port: spec.port,
      hostPorts: spec.hostPorts ?? [],
      egress: this.options.egress ?? 'none',
    });
    await applyGuestFirewall(this.api, path, plan);
    if (restart) await this.api.task('POST', `${path}/status/start`);
  }

  async start(name: string): Promise<ContainerInfo> {
    return this.locks.run(name, async () => {
      const vm = await this.must(name);
      if (vm.status !== 'running') {
        const path = `/nodes/${vm.node}/lxc/${vm.vmid}`;
        const { description } = await this.api.call<{ description?: string }>('GET', `${path}/config`);
        if (description)
          await this.api.call('PUT', `${path}/config`, { description: markApplied(description) });
        await this.api.task('POST', `${path}/status/start`);
      }
      return this.info(name);
    });
  }

  async stop(name: string, options: { timeoutMs?: number } = {}): Promise<void> {
    await this.locks.run(name, async () => {
      const vm = await this.find(name);
      if (!vm || vm.status !== 'running') return;
      const base = `/nodes/${vm.node}/lxc/${vm.vmid}/status`;
      const timeout = Math.max(1, Math.ceil((options.timeoutMs ?? 30_000) / 1000));
      try {
        await this.api.task('POST', `${base}/shutdown`, { timeout }, (options.timeoutMs ?? 30_000) + 30_000);
      } catch (err) {
        this.options.log.warn({ err, container: name }, 'clean shutdown failed, stopping');
        await this.api.task('POST', `${base}/stop`);
      }
    });
  }

  async restart(name: string): Promise<ContainerInfo> {
    await this.must(name);
    await this.stop(name);
    return this.start(name);
  }

  async destroy(name: string): Promise<void> {
    await this.locks.run(name, async () => {
      const vm = await this.find(name);
      if (vm) {
        const path = `/nodes/${vm.node}/lxc/${vm.vmid}`;
        if (vm.status === 'running') await this.api.task('POST', `${path}/status/stop`);
        await this.api.task('DELETE', path, { purge: true, 'destroy-unreferenced-disks': true });
      }
      await this.registry.release(name);
      await this.pool.release(name);
    });
  }

  async status(name: string): Promise<ContainerInfo> {
    return (await this.find(name)) ? this.info(name) : { name, state: 'missing' };
  }

  async stats(name: string): Promise<ContainerStats> {
    const vm = await this.must(name);
    const s = await this.api.call<Record<string, number>>(
      'GET',
      `/nodes/${vm.node}/lxc/${vm.vmid}/status/current`,
    );
    return {
      // Proxmox reports utilisation, not a cumulative counter: this is an estimate over the uptime.
      cpuSeconds: (s.cpu ?? 0) * (s.cpus ?? 1) * (s.uptime ?? 0),
      memoryBytes: s.mem ?? 0,
      diskBytes: s.disk ?? 0,
      netRxBytes: s.netin ?? 0,
      netTxBytes: s.netout ?? 0,
    };
  }

  exec(): Promise<never> {
    return Promise.reject(
      new DomainError('unavailable', 'the Proxmox API has no exec for containers; use pct exec on the node'),
    );
  }

  async exportTo(name: string, file: string): Promise<{ bytes: number }> {
    return exportGuest(this, await this.must(name), file);
  }

  async importFrom(spec: ContainerSpec, file: string): Promise<ContainerInfo> {
    await importGuest(this, spec, file);
    return this.ensure(spec);
  }

  /** vzdump archives stay on the backup storage; a backup's manifest names one as `<node>/<volid>`. */
  readonly exportVolumes: ExportVolumes = {
    named: (file) => manifestReference(file),
    exists: (volume) => archiveExists(this, volume),
    remove: (volume) => removeArchive(this, volume),
  };

  /** A named snapshot (Proxmox-specific; rollback stays an operator action). */
  async snapshot(name: string, snapname: string): Promise<void> {
    const vm = await this.must(name);
    await this.api.task('POST', `/nodes/${vm.node}/lxc/${vm.vmid}/snapshot`, { snapname });
  }

  /** The guests' gateway on their bridge, where the control plane is expected to answer. */
  addressRoom(): Promise<AddressRoom> {
    return this.pool.room();
  }

  hostAddress(): Promise<string> {
    return Promise.resolve(this.pool.subnet.gateway);
  }

  /** The guests this platform made (its `proxmox_guests` rows): never another platform's on the same cluster. */
  async list(): Promise<ContainerInfo[]> {
    const mine = new Map(
      (await this.options.db.selectFrom('proxmox_guests').select(['name', 'vmid']).execute()).map((r) => [
        r.vmid,
        r.name,
      ]),
    );
    const vms = (await this.vms()).filter(
      (v) => v.name && isManagedName(v.name) && v.template !== 1 && mine.get(v.vmid) === v.name,
    );
    return Promise.all(vms.map((v) => this.info(v.name!)));
  }

  async close(): Promise<void> {
    await this.api.close();
  }

  private async info(name: string): Promise<ContainerInfo> {
    const vm = await this.must(name);
    const ip = await this.pool.lookup(name);
    const config = await this.api.call<{
      cores?: number;
      memory?: number;
      rootfs?: string;
      description?: string;
    }>('GET', `/nodes/${vm.node}/lxc/${vm.vmid}/config`);
    const running = vm.status === 'running';
    const digest = reportedDigest(config.description, running);
    const limits: Partial<ResourceLimits> = {
      ...(config.cores ? { cores: Number(config.cores) } : {}),
      ...(config.memory ? { memoryMb: Number(config.memory) } : {}),
      ...(config.rootfs ? { diskGb: diskGb(config.rootfs) } : {}),
    };
    return {
      name,
      state: running ? 'running' : 'stopped',
      ...(ip ? { ip, endpoint: { host: ip, port: vm.port } } : {}),
      handle: `${vm.node}/${vm.vmid}`,
      limits,
      ...(digest ? { configDigest: digest } : {}),
    };
  }
}

/** Size in GiB from a volume string such as `local-lvm:vm-101-disk-0,size=8G`. */
export function diskGb(volume: string | undefined): number {
  const m = /size=(\d+(?:\.\d+)?)([KMGT]?)/.exec(volume ?? '');
  if (!m) return 0;
  return (Number(m[1]) * 1024 ** ' KMGT'.indexOf(m[2] || ' ')) / 2 ** 30;
}
