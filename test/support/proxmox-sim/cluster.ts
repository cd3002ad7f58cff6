import { emptyFirewall, type GuestFirewall } from './firewall.ts';
import type { TemplateVolume, Workloads } from './workloads.ts';

/**
 * The simulated cluster's state and behaviour: nodes, storages, containers with
 * config locks, asynchronous tasks with UPIDs (running → stopped with an
 * exitstatus), backups, and injected faults. `server.ts` maps HTTP onto it.
 */

export interface SimNode {
  name: string;
  online: boolean;
  maxmem: number;
  mem: number;
  maxcpu: number;
  cpu: number;
}

export interface SimStorage {
  id: string;
  /** Linked clones need a storage with snapshots (lvmthin, zfs…), not a plain directory. */
  linkedClones: boolean;
  shared: boolean;
}

export interface Guest {
  vmid: number;
  node: string;
  config: Record<string, string>;
  status: 'running' | 'stopped';
  lock?: string;
  template: boolean;
  snapshots: string[];
  startedAt?: number;
  /** Ignores a clean shutdown (an app that traps SIGTERM), so only stop ends it. */
  stubborn?: boolean;
  /** Its firewall options and rules (a clone copies the source's, as `pct clone` does). */
  firewall: GuestFirewall;
  /** The OCI archive it was created from: it really runs (`workloads.ts`) while running. */
  image?: string;
}

export interface Task {
  upid: string;
  node: string;
  type: string;
  id: string;
  status: 'running' | 'stopped';
  exitstatus?: string;
  starttime: number;
  log: string[];
}

export interface Backup {
  volid: string;
  storage: string;
  /** The node that wrote it: on a storage that is not shared, only that node sees it. */
  node: string;
  vmid: number;
  size: number;
  ctime: number;
  config: Record<string, string>;
  firewall?: GuestFirewall;
  image?: string;
}

export interface Fault {
  method?: string;
  path: RegExp;
  kind: 'lock' | 'task';
  times: number;
  message?: string;
}

/** An error the API answers with a status and message (PVE puts the message in the reason phrase). */
export class PveFailure extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly errors?: Record<string, string>,
  ) {
    super(message);
  }
}

export class Cluster {
  readonly nodes = new Map<string, SimNode>();
  readonly storages = new Map<string, SimStorage>();
  readonly guests = new Map<number, Guest>();
  readonly tasks = new Map<string, Task>();
  readonly backups: Backup[] = [];
  /** Container templates (`vztmpl`): OCI archives pulled or uploaded. */
  readonly templates: TemplateVolume[] = [];
  /** Runs containers made from OCI images; without it, creating one fails. */
  workloads?: Workloads;
  readonly faults: Fault[] = [];
  /** Longest a task stays running (ms); each takes a random share of it. */
  taskMs = 30;
  private pid = 1000;
  private readonly cloning = new Map<number, number>();
  maxConcurrentClonesPerTemplate = 0;
  /** The datacenter firewall: container firewalls are enforced only while it is on. */
  firewallEnabled = true;

  addNode(name: string, memGb = 64, cpus = 16, online = true): void {
    this.nodes.set(name, {
      name,
      online,
      maxmem: memGb * 2 ** 30,
      mem: 2 * 2 ** 30,
      maxcpu: cpus,
      cpu: 0.05,
    });
  }

  /** A template container; unprivileged unless said otherwise (Proxmox's default for new containers). */
  addTemplate(vmid: number, node: string, storage: string, options: { privileged?: boolean } = {}): void {
    this.guests.set(vmid, {
      vmid,
      node,
      status: 'stopped',
      template: true,
      snapshots: [],
      firewall: emptyFirewall(),
      config: {
        ...(options.privileged ? {} : { unprivileged: '1' }),
        hostname: `tpl${vmid}`,
        cores: '1',
        memory: '512',
        rootfs: `${storage}:base-${vmid}-disk-0,size=4G`,
        ostype: 'debian',
        arch: 'amd64',
        template: '1',
      },
    });
  }

  inject(fault: Omit<Fault, 'times'> & { times?: number }): void {
    this.faults.push({ times: 1, ...fault });
  }

  /** Consumes a matching fault of `kind` for this request, if any. */
  takeFault(kind: Fault['kind'], method: string, path: string): Fault | undefined {
    const f = this.faults.find(
      (x) => x.kind === kind && x.times > 0 && (!x.method || x.method === method) && x.path.test(path),
    );
    if (f) f.times--;
    return f;
  }

  node(name: string): SimNode {
    const n = this.nodes.get(name);
    if (!n) throw new PveFailure(595, `no such cluster node '${name}'`);
    if (!n.online) throw new PveFailure(595, `Connection refused`);
    return n;
  }

  guest(node: string, vmid: number): Guest {
    const g = this.guests.get(vmid);
    if (!g || g.node !== node)
      throw new PveFailure(500, `Configuration file 'nodes/${node}/lxc/${vmid}.conf' does not exist`);
    return g;
  }

  lockTimeout(vmid: number): PveFailure {
    return new PveFailure(500, `can't lock file '/run/lock/lxc/pve-config-${vmid}.conf' - got timeout`);
  }

  checkUnlocked(g: Guest): void {
    if (g.lock) throw new PveFailure(500, `CT is locked (${g.lock})`);
  }

  /** Start a task; `work` runs when it finishes and its throw (or rejection) becomes the exitstatus. */
  task(
    node: string,
    type: string,
    id: string,
    fault: Fault | undefined,
    work: () => void | Promise<void>,
  ): string {
    const starttime = Math.floor(Date.now() / 1000);
    const hex = (n: number, w = 8) => n.toString(16).toUpperCase().padStart(w, '0');
    const upid = `UPID:${node}:${hex(++this.pid)}:${hex(this.pid * 7)}:${hex(starttime)}:${type}:${id}:aiqso@pve!test:`;
    const t: Task = { upid, node, type, id, status: 'running', starttime, log: [`starting ${type} ${id}`] };
    this.tasks.set(upid, t);
    setTimeout(
      async () => {
        try {
          if (fault) throw new Error(fault.message ?? `${type} failed: injected failure`);
          await work();
          t.exitstatus = 'OK';
        } catch (err) {
          t.exitstatus = (err as Error).message;
          t.log.push(`TASK ERROR: ${t.exitstatus}`);
        }
        t.status = 'stopped';
      },
      Math.round(this.taskMs * (0.5 + Math.random() / 2)),
    );
    return upid;
  }

  clone(node: string, vmid: number, p: Record<string, string>, fault: Fault | undefined): string {
    const src = this.guest(node, vmid);
    const newid = Number(p.newid);
    if (this.guests.has(newid))
      throw new PveFailure(
        500,
        `unable to create CT ${newid} - CT ${newid} already exists on node '${this.guests.get(newid)!.node}'`,
      );
    if ((this.cloning.get(vmid) ?? 0) > 0) throw this.lockTimeout(vmid);
    const full = p.full === undefined ? !src.template : truthy(p.full);
    if (!full && p.storage)
      throw new PveFailure(400, 'Parameter verification failed.', {
        storage: 'parameter is only allowed for full clones',
      });
    const target = p.target ?? node;
    if (target !== node) this.node(target);
    const storageId = p.storage ?? src.config.rootfs!.split(':')[0]!;
    const storage = this.storages.get(storageId);
    if (!storage) throw new PveFailure(500, `storage '${storageId}' does not exist`);
    if (target !== node && !storage.shared)
      throw new PveFailure(500, `Can't clone to non-shared storage '${storageId}'`);
    const guest: Guest = {
      vmid: newid,
      node: target,
      status: 'stopped',
      lock: 'create',
      template: false,
      snapshots: [],
      firewall: structuredClone(src.firewall),
      config: {
        ...src.config,
        hostname: p.hostname ?? `CT${newid}`,
        rootfs: `${storageId}:vm-${newid}-disk-0,size=${/size=(\w+)/.exec(src.config.rootfs!)?.[1] ?? '4G'}`,
      },
    };
    delete guest.config.template;
    this.guests.set(newid, guest);
    this.cloning.set(vmid, (this.cloning.get(vmid) ?? 0) + 1);
    this.maxConcurrentClonesPerTemplate = Math.max(
      this.maxConcurrentClonesPerTemplate,
      this.cloning.get(vmid)!,
    );
    return this.task(node, 'vzclone', String(vmid), undefined, () => {
      this.cloning.set(vmid, this.cloning.get(vmid)! - 1);
      try {
        if (fault) throw new Error(fault.message ?? 'clone failed: injected failure');
        if (!full && !storage.linkedClones)
          throw new Error(
            `clone failed: linked clone feature for 'rootfs' is not available on storage '${storageId}'`,
          );
        delete guest.lock;
      } catch (err) {
        this.guests.delete(newid);
        throw err;
      }
    });
  }
}

export function truthy(v: string | undefined): boolean {
  return v !== undefined && /^(1|true|yes|on)$/i.test(v);
}

export function parseSize(s: string): number {
  const m = /^(\d+(?:\.\d+)?)([KMGT]?)$/.exec(s);
  if (!m) return NaN;
  return Number(m[1]) * 1024 ** ' KMGT'.indexOf(m[2] || ' ');
}
