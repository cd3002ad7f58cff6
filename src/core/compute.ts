import { createHash } from 'node:crypto';

/**
 * The compute port: where tenant containers come from. Core code and the
 * reconcilers talk only to this interface; `src/compute/<driver>/` holds the
 * real drivers (process, lxc, proxmox). Every method is idempotent and safe to
 * repeat after a crash: names are deterministic (see `containerName`), so a
 * retry finds what an interrupted attempt created.
 */

/** What runs inside a container. */
export type Workload =
  /**
   * A Node.js app shipped with the platform: `node <entry>` run in `dir`. With `snapshot`, drivers
   * that run the platform's own node start it from a V8 start-up snapshot of itself when one can
   * be built (src/compute/shared/app-snapshot.ts); it runs the same either way.
   */
  | { kind: 'app'; dir: string; entry: string; snapshot?: boolean }
  /** Clone of a prepared template container; `template` is driver-specific (an LXC name, a Proxmox VMID). */
  | { kind: 'clone'; template: string }
  /** An OCI image, for hosts that run images; see `ImageWorkload`. */
  | ImageWorkload;

/**
 * An OCI image and what the catalog says about running it. Entrypoint,
 * command and working directory default to the image's own config; an
 * entrypoint given without a command clears the image's command (as Docker does).
 */
export interface ImageWorkload {
  kind: 'image';
  /** Reference such as `docker.io/espocrm/espocrm:9`. */
  image: string;
  entrypoint?: string[];
  command?: string[];
  workdir?: string;
  /** Absolute directories inside the container kept on the container's data directory. */
  volumes?: string[];
  /** Commands run once per deployment, in order, before the workload first starts. */
  init?: string[][];
}

/** A driver that runs images keeps them in a cache and reports a pull as its own step. */
export interface ImageCache {
  /** Whether `image` is pulled and ready to clone, without contacting its registry. */
  cached(image: string): Promise<boolean>;
  /**
   * Pull and prepare `image` (once, however many callers ask at the same time).
   * An image that does not exist, a registry that refuses, or an image for another
   * architecture throw DomainError `deploy_failed` naming the reason.
   */
  pull(image: string, onProgress?: OnPullProgress): Promise<{ digest: string; pulled: boolean }>;
}

/**
 * What a pull is doing, for whoever asked for it (`aiqso templates build`
 * prints it): found in the cache, waiting for another process's pull of the
 * same cache, fetching from the registry (one event per blob as it is
 * copied), unpacking, ready.
 */
export interface PullProgress {
  stage: 'cached' | 'waiting' | 'pulling' | 'copying' | 'unpacking' | 'ready';
  image: string;
  detail: string;
}
export type OnPullProgress = (progress: PullProgress) => void;

export interface ResourceLimits {
  memoryMb: number;
  cores: number;
  diskGb: number;
}

export interface ContainerSpec {
  /** Deterministic name from tenant and service ids; see `containerName`. */
  name: string;
  tenantId: string;
  /** Catalog key of the service, or `dashboard` for the tenant's dashboard. */
  role: string;
  workload: Workload;
  resources: ResourceLimits;
  /** TCP port the workload listens on inside the container. */
  port: number;
  /** Static address wanted for the container; drivers that allocate addresses ignore it when absent. */
  ip?: string;
  /** Environment for the workload. Values may be secrets: drivers never put them in argv or logs. */
  env: Record<string, string>;
  /**
   * TCP ports on `hostAddress()` the workload needs (its database, the API).
   * Where a driver walls containers in (lxc, proxmox), these are the only host
   * ports it may open; other containers it may never reach.
   */
  hostPorts?: number[];
}

export type ContainerState = 'running' | 'stopped' | 'missing';

export interface Endpoint {
  host: string;
  port: number;
}

export interface ContainerInfo {
  name: string;
  state: ContainerState;
  /** Where the edge reaches the workload; absent while the container is missing or has no address yet. */
  endpoint?: Endpoint;
  ip?: string;
  /** Driver-specific handle, e.g. a Proxmox VMID or a process id, for operators. */
  handle?: string;
  /**
   * The limits as observed where they are enforced (cgroup files, the hypervisor's
   * config, the child's argv), so a reconciler can see drift and a test can see
   * that a limit really applies. A limit a driver cannot enforce is absent.
   */
  limits?: Partial<ResourceLimits>;
  /**
   * `configDigest` of the spec the workload runs with: the one it was last
   * (re)started with while running, the one it will start with while stopped.
   * Drivers record it when they (re)start a workload, so an `ensure` that
   * changed a running container's spec shows here until a restart applies it.
   * Absent when the driver cannot tell (a workload started outside it).
   */
  configDigest?: string;
  /** The workload's last output lines while it is stopped (why an image's entrypoint exited), where the driver keeps them. */
  lastOutput?: string;
}

export interface ContainerStats {
  cpuSeconds: number;
  memoryBytes: number;
  /**
   * The highest memory use since the workload started, where the driver keeps it (process:
   * VmHWM; lxc: the cgroup's memory.peak, or memory.max_usage_in_bytes on cgroup v1).
   */
  memoryPeakBytes?: number;
  diskBytes: number;
  netRxBytes: number;
  netTxBytes: number;
}

export interface ExecResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export interface ExecOptions {
  /** Sent on the command's stdin; the way to pass secrets. */
  stdin?: string;
  timeoutMs?: number;
}

/** The most lines `logs` gives at once (a caller asking for more is refused). */
export const MAX_LOG_LINES = 1000;

export interface LogOptions {
  /** How many of the last lines (default 100, at most MAX_LOG_LINES). */
  lines?: number;
  /** Also follow what the workload writes from now on (see `ServiceLogs.follow`). */
  follow?: boolean;
  /** Ends following: files are closed and the iterator returns. */
  signal?: AbortSignal;
}

/**
 * A workload's own output, as it wrote it (nothing of the platform's added).
 * `truncated`: there is older output than `lines` shows (more lines than asked
 * for, or a log longer than a driver reads back).
 */
export interface ServiceLogs {
  lines: string[];
  truncated: boolean;
  /**
   * With `follow`: batches of lines written after `lines`, as they come, until
   * `signal` aborts or the consumer stops iterating (either closes the files).
   */
  follow?: AsyncIterable<string[]>;
}

export interface AddressRoom {
  network: string;
  size: number;
  free: number;
}

export interface ComputeDriver {
  readonly kind: DriverKind;
  /** Present on drivers that run `image` workloads. */
  readonly images?: ImageCache;
  /** Create the container if missing (clone or create fresh) and bring its config to the spec. Does not start it. */
  ensure(spec: ContainerSpec): Promise<ContainerInfo>;
  start(name: string): Promise<ContainerInfo>;
  /** Graceful stop, then forced after `timeoutMs`. Stopping a stopped or missing container is a no-op. */
  stop(name: string, options?: { timeoutMs?: number }): Promise<void>;
  restart(name: string): Promise<ContainerInfo>;
  /** Remove the container and everything it holds (addresses, disks). Destroying a missing container is a no-op. */
  destroy(name: string): Promise<void>;
  status(name: string): Promise<ContainerInfo>;
  stats(name: string): Promise<ContainerStats>;
  /**
   * Memory use only (and its peak where kept), cheaper than `stats` (no disk walk): what the usage
   * collector samples several times an hour. Absent: the collector samples with `stats`.
   */
  memory?(name: string): Promise<Pick<ContainerStats, 'memoryBytes' | 'memoryPeakBytes'>>;
  /**
   * Run `argv` inside the running container (no shell). A driver whose backend has
   * no exec channel throws DomainError `unavailable` (Proxmox has none for LXC).
   */
  exec(name: string, argv: string[], options?: ExecOptions): Promise<ExecResult>;
  /**
   * The last lines of the workload's own output (stdout and stderr), read on
   * this host with a bounded tail, and with `follow` what it writes next.
   * Absent on drivers that cannot read a container's files (proxmox).
   */
  logs?(name: string, options?: LogOptions): Promise<ServiceLogs>;
  /** Write a restorable archive of the container's filesystem to `file`. */
  exportTo(name: string, file: string): Promise<{ bytes: number }>;
  /** Recreate the container from an archive made by `exportTo`, replacing what is there. */
  importFrom(spec: ContainerSpec, file: string): Promise<ContainerInfo>;
  /**
   * Drivers whose archives stay on their own storage (Proxmox: vzdump on the backup storage): the
   * file `exportTo` writes is then a small manifest naming that volume, which lives on after the
   * manifest is stored and must be removed with the snapshot that names it. Absent: the file is
   * the whole archive (a tar).
   */
  exportVolumes?: ExportVolumes;
  /**
   * The address containers use to reach the control-plane host: its API and
   * the master database are forwarded there when it is not loopback (see
   * compute/gateway.ts). Process: 127.0.0.1; LXC and Proxmox: the bridge's gateway.
   */
  hostAddress(): Promise<string>;
  /**
   * Room in the driver's container address pool: its network, its size, and
   * how many addresses are free (placement refuses a container when none is).
   * Absent on drivers whose containers need no address of their own (process).
   */
  addressRoom?(): Promise<AddressRoom>;
  /** Every container this driver manages (for drift and orphan detection). */
  list(): Promise<ContainerInfo[]>;
  /** Release handles (timers, sockets); containers keep running. */
  close(): Promise<void>;
}

/**
 * A digest of everything in a spec a workload runs with (workload, limits,
 * port, address, environment), the same whatever the order of its env keys.
 * A reconciler compares it with `ContainerInfo.configDigest` to see a
 * container that runs with another configuration than its spec's.
 */
export function configDigest(spec: ContainerSpec): string {
  const { workload, resources, port, ip, env } = spec;
  const canonical = JSON.stringify([
    // Not `snapshot`: an app runs the same whether it starts from a snapshot of itself or its files.
    workload.kind === 'app'
      ? ['app', workload.dir, workload.entry]
      : workload.kind === 'clone'
        ? ['clone', workload.template]
        : [
            'image',
            workload.image,
            workload.entrypoint ?? null,
            workload.command ?? null,
            workload.workdir ?? null,
            workload.volumes ?? [],
            workload.init ?? [],
          ],
    [resources.memoryMb, resources.cores, resources.diskGb],
    port,
    ip ?? null,
    Object.keys(env)
      .sort()
      .map((k) => [k, env[k]]),
  ]);
  return createHash('sha256').update(canonical).digest('hex').slice(0, 32);
}

const NAME_PREFIX = 'aiqso';

/**
 * The one naming rule for containers: `aiqso-<tenant ulid>-<role>`. It fits
 * LXC names, Proxmox hostnames and file names (lowercase, digits, hyphens,
 * at most 63 characters).
 */
export function containerName(tenantId: string, role: string): string {
  const body = tenantId.replace(/^ten_/, '');
  const name = `${NAME_PREFIX}-${body}-${role}`.toLowerCase();
  if (!/^[a-z0-9][a-z0-9-]{0,62}$/.test(name)) {
    throw new Error(`container name "${name}" is not a valid hostname label`);
  }
  return name;
}

export function isManagedName(name: string): boolean {
  return name.startsWith(`${NAME_PREFIX}-`);
}

/**
 * True for a name `containerName` makes (`aiqso-<26-character ULID>-<role>`):
 * what orphan detection may remove. A prepared template such as
 * `aiqso-tpl-paperless-ngx` is managed by name but never a tenant's container.
 */
export function isContainerName(name: string): boolean {
  return /^aiqso-[0-9a-hjkmnp-tv-z]{26}-[a-z0-9][a-z0-9-]*$/.test(name);
}

/**
 * Why the proxmox driver cannot run an image workload as described, or null.
 * Init commands and a working directory it runs through the image's shell
 * (`compute/proxmox/boot.ts`); but Proxmox keeps an image's entrypoint and
 * command as one string, so a command that replaces the image's without
 * replacing its entrypoint cannot be put together.
 */
export function proxmoxImageRefusal(w: Pick<ImageWorkload, 'entrypoint' | 'command'>): string | null {
  if (w.command && !w.entrypoint)
    return "it replaces the image's command but not its entrypoint, which Proxmox cannot combine";
  return null;
}

/** The compute drivers, as `AIQSO_DRIVER` names them and `hosts.driver` records them. */
export const DRIVER_KINDS = ['process', 'lxc', 'proxmox'] as const;
export type DriverKind = (typeof DRIVER_KINDS)[number];

/** The volumes a driver's exports leave on its storage, by the reference `named` reads from a manifest. */
export interface ExportVolumes {
  /** The volume the manifest `file` (as `exportTo` wrote it) names. */
  named(file: string): Promise<string>;
  /** Whether the volume is still on the storage. */
  exists(volume: string): Promise<boolean>;
  /** Delete the volume; one already gone is no error. Returns whether it was there. */
  remove(volume: string): Promise<boolean>;
}
