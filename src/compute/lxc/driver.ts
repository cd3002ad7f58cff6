import { createHash } from 'node:crypto';
import { existsSync, realpathSync } from 'node:fs';
import {
  chown,
  lchown,
  lstat,
  mkdir,
  readdir,
  readFile,
  rename,
  rm,
  stat,
  writeFile,
} from 'node:fs/promises';
import path from 'node:path';
import type {
  AddressRoom,
  ComputeDriver,
  ContainerInfo,
  ContainerSpec,
  ContainerStats,
  ExecOptions,
  ExecResult,
  ImageWorkload,
  LogOptions,
  ServiceLogs,
  ResourceLimits,
} from '../../core/compute.ts';
import { configDigest, isManagedName } from '../../core/compute.ts';
import { badRequest, conflict, DomainError } from '../../core/errors.ts';
import type { Database } from '../../db/database.ts';
import type { Logger } from '../../observability/logger.ts';
import { appNodeFlags, AppSnapshots } from '../shared/app-snapshot.ts';
import { IpPool } from '../shared/ip-pool.ts';
import { tailLogs } from '../shared/log-tail.ts';
import { KeyedMutex, runOk, tarLive } from '../shared/run.ts';
import { recordApplied, reportedDigest } from './applied.ts';
import { forgetNeighbour } from './bridge.ts';
import {
  CGROUP,
  cgroupMemory,
  observedLimits,
  processStart,
  stillRunning,
  type InitProcess,
} from './cgroup.ts';
import {
  cgroupLimitKeys,
  IMAGE_LOG,
  imageRun,
  INIT_MARKER,
  renderConfig,
  renderEnvFile,
  renderImageInit,
  renderInit,
  type ImageRun,
} from './config.ts';
import { INIT_INSIDE, LxcImages } from './images.ts';
import { readImageUser, type ImageUser } from './image-user.ts';
import { cloneOverlay } from './clone.ts';
import { ensureTemplateShifted, mountSources, rootfsLayers } from './convert.ts';
import { grantTraversal, shiftTree } from './idmap.ts';
import type { Egress } from './netpolicy.ts';
import { lxcfsDefines, lxcfsHost, type LxcfsHost } from './lxcfs.ts';
import { LxcTools } from './tools.ts';
import { LxcWalls, readMeta, type Meta, type Ready } from './walls.ts';

export interface LxcDriverOptions {
  db: Database;
  log: Logger;
  /** Where containers live (`lxc-* -P`); default /var/lib/lxc. */
  lxcPath?: string;
  bridge: string;
  subnet: string;
  /** Containers' internet access: none (default), or masqueraded through the host. */
  egress?: Egress;
  /** containers-registries.conf(5) skopeo pulls images with; default skopeo's own. */
  registriesConf?: string;
  /** Whether lxcfs serves, and whose hooks LXC's common config sets (`lxcfs.ts`); this host's by default. */
  lxcfs?: LxcfsHost;
}

/**
 * Real LXC containers on this host (as root): overlayfs snapshot clones of a
 * cached base template (`clone.ts`), a static IP per container from the `ip_allocations`
 * pool on a bridge the driver owns, memory and CPU limits as cgroup keys.
 * Containers are unprivileged (root inside is an unprivileged id range on the
 * host, `idmap.ts`), confined by seccomp and AppArmor where the host has them,
 * and walled by the bridge's network policy (`netpolicy.ts`).
 * Invariant: a container exists exactly when `<lxcPath>/<name>/config` exists;
 * its IP is released only after the container is gone; the network policy
 * names a container before it can first start.
 */
export class LxcDriver implements ComputeDriver {
  readonly kind = 'lxc' as const;
  readonly lxcPath: string;
  readonly pool: IpPool;
  private readonly tools: LxcTools;
  private readonly locks = new KeyedMutex();
  /** Running containers' init processes as last seen, by container (see `liveState`). */
  private readonly inits = new Map<string, InitProcess>();
  private readonly cloneLocks = new KeyedMutex();
  private base?: Promise<Ready>;
  private readonly walls: LxcWalls;
  readonly images: LxcImages;
  private readonly snapshots: AppSnapshots;
  private readonly lxcfs: LxcfsHost;

  constructor(private readonly options: LxcDriverOptions) {
    this.lxcPath = options.lxcPath ?? '/var/lib/lxc';
    this.snapshots = new AppSnapshots(options.log);
    this.lxcfs = options.lxcfs ?? lxcfsHost();
    this.pool = new IpPool(options.db, options.subnet);
    this.tools = new LxcTools(this.lxcPath);
    this.walls = new LxcWalls({ ...options, lxcPath: this.lxcPath, pool: this.pool, tools: this.tools });
    this.images = new LxcImages({
      db: options.db,
      log: options.log,
      lxcPath: this.lxcPath,
      registriesConf: options.registriesConf,
      ready: () => this.ready(),
    });
  }

  /** Bridge, base template and walls, made once per driver (`walls.ts`). */
  private ready(): Promise<Ready> {
    this.base ??= this.walls.prepare();
    this.base.catch(() => (this.base = undefined));
    return this.base;
  }

  private dir(name: string) {
    return path.join(this.lxcPath, name);
  }
  private exists(name: string) {
    return existsSync(path.join(this.dir(name), 'config'));
  }

  async ensure(spec: ContainerSpec): Promise<ContainerInfo> {
    const { workload } = spec;
    return this.locks.run(spec.name, async () => {
      const ready = await this.ready();
      const { base } = ready;
      const isolation = this.walls.isolation(ready, spec.name);
      const owner = [ready.idmap.uid.start, ready.idmap.gid.start] as const;
      // An image is pulled (or found in the cache) before anything of the container exists.
      const imageTemplate =
        workload.kind === 'image' ? await this.images.template(workload.image) : undefined;
      // What it runs and as whom, also before: an image that cannot run says so with nothing made.
      const plan =
        workload.kind === 'image' && imageTemplate
          ? await this.imagePlan(imageTemplate, workload, spec.env)
          : undefined;
      const { ip, existed } = await this.pool.claim(spec.name, spec.ip);
      const fresh = !this.exists(spec.name);
      const source = workload.kind === 'clone' ? workload.template : (imageTemplate ?? base.name);
      if (fresh) {
        // A directory without config is a clone a crash interrupted: start over.
        await rm(this.dir(spec.name), { recursive: true, force: true });
        await this.cloneLocks.run(source, async () => {
          const layers = rootfsLayers(await this.tools.config(source));
          if (layers) await ensureTemplateShifted(layers.upper, isolation);
        });
        if (!(await cloneOverlay(this.lxcPath, source, spec.name, owner))) {
          // Any other template: lxc-copy, one clone of it at a time (it records each in the template's lxc_snapshots).
          await this.cloneLocks.run(source, () => this.tools.copy(source, spec.name));
          await shiftTree(await this.deltaDir(spec.name), ready.idmap);
        }
      }
      const aiqsoDir = path.join(this.dir(spec.name), 'aiqso');
      await mkdir(aiqsoDir, { recursive: true, mode: 0o700 });
      await chown(aiqsoDir, ...owner);
      const hostPorts = [...new Set(spec.hostPorts ?? [])].sort((a, b) => a - b);
      const before = await readMeta(this.lxcPath, spec.name);
      const meta: Meta = {
        tenantId: spec.tenantId,
        role: spec.role,
        port: spec.port,
        hostPorts,
        digest: configDigest(spec),
        workload: workload.kind,
      };
      await atomicWrite(path.join(aiqsoDir, 'meta.json'), JSON.stringify(meta), 0o644);
      // The walls name a container before it can start: one new to the bridge (its address claimed
      // just now) is added to them in place; one made again (a clone a crash cut short) or given other
      // host ports gets them redrawn whole (from the address pool and each meta.json), which drops
      // what its earlier self was let reach. Either runs while the rest is written, and is waited for
      // before this returns.
      const walls =
        fresh && !existed
          ? this.walls.admit({ name: spec.name, ip, hostPorts })
          : fresh || String(before.hostPorts) !== String(hostPorts)
            ? this.walls.policy.request()
            : undefined;
      walls?.catch(() => undefined);
      const volumes =
        workload.kind === 'image' && imageTemplate
          ? await this.ensureVolumes(spec.name, imageTemplate, workload.volumes ?? [], owner)
          : [];
      const initUser = plan?.user;
      if (workload.kind === 'image' && imageTemplate && plan) {
        const runs = plan.runs;
        // What PID 1 reads (its env and init script) belongs to the user it runs as, and to no one else.
        const runsAs = initUser
          ? ([ready.idmap.uid.start + initUser.uid, ready.idmap.gid.start + initUser.gid] as const)
          : owner;
        if (initUser) {
          await chown(aiqsoDir, ...runsAs);
          await this.prepareUserDirs(spec.name, imageTemplate, runsAs);
        }
        await atomicWrite(path.join(aiqsoDir, 'env'), renderEnvFile(runs.env), 0o600, runsAs);
        await atomicWrite(
          path.join(aiqsoDir, 'init.sh'),
          renderImageInit(INIT_INSIDE, runs, workload.init ?? []),
          0o700,
          runsAs,
        );
      } else {
        const env = {
          PATH: `${path.dirname(base.node)}:/usr/local/bin:/usr/bin:/bin`,
          HOME: '/root',
          ...spec.env,
          PORT: String(spec.port),
          HOST: '0.0.0.0',
        };
        // Container root reads its own env and init (host: the mapped range's first id), no one else.
        // Both are written side by side.
        const { memoryMb } = spec.resources;
        const init = async (app: Extract<ContainerSpec['workload'], { kind: 'app' }>) => {
          // The container runs this host's node (bind-mounted), so a blob built here is one it accepts.
          const blob = app.snapshot ? await this.snapshots.blobFor(app, appNodeFlags(memoryMb)) : undefined;
          const relative = blob && path.relative(path.resolve(app.dir), blob);
          const script = renderInit(base.node, app.entry, memoryMb, relative);
          await atomicWrite(path.join(aiqsoDir, 'init.sh'), script, 0o700, owner);
        };
        await Promise.all([
          atomicWrite(path.join(aiqsoDir, 'env'), renderEnvFile(env), 0o600, owner),
          ...(workload.kind === 'app' ? [init(workload)] : []),
        ]);
      }
      const configFile = path.join(this.dir(spec.name), 'config');
      const config = renderConfig(await readFile(configFile, 'utf8'), {
        name: spec.name,
        bridge: this.options.bridge,
        ip,
        prefix: this.pool.subnet.prefix,
        gateway: this.pool.subnet.gateway,
        resources: spec.resources,
        aiqsoDir,
        appDir: workload.kind === 'app' ? path.resolve(workload.dir) : undefined,
        appModules: workload.kind === 'app' ? nearestNodeModules(workload.dir) : undefined,
        cgroup: CGROUP,
        isolation,
        volumes,
        ...(initUser ? { initUser } : {}),
      });
      await atomicWrite(configFile, config, 0o640);
      const sources = [aiqsoDir, rootfsLayers(config)?.upper ?? '', ...mountSources(config)];
      await Promise.all(sources.map((source) => grantTraversal(source, ready.idmap.uid.start)));
      await walls;
      // A clone made just now under this container's lock has never run; otherwise ask (once).
      const live = fresh ? { state: 'STOPPED' } : await this.liveState(spec.name);
      if (live.state === 'RUNNING') await this.applyLimits(spec.name, spec.resources);
      return this.info(spec.name, live, { ip, meta });
    });
  }

  /**
   * An image's volumes: one directory each under `<dir>/volumes`, seeded from
   * the image's content at that path when first made (complete or not at all),
   * owned by container root. Kept until the container is destroyed.
   */
  private async ensureVolumes(
    name: string,
    template: string,
    targets: string[],
    owner: readonly [number, number],
  ): Promise<{ source: string; target: string }[]> {
    const out: { source: string; target: string }[] = [];
    for (const target of targets) {
      const source = path.join(this.dir(name), 'volumes', volumeDirName(target));
      if (!existsSync(source)) {
        const tmp = `${source}.tmp`;
        await rm(tmp, { recursive: true, force: true });
        await mkdir(tmp, { recursive: true });
        const seed = path.join(this.lxcPath, template, 'rootfs', target);
        if (existsSync(seed)) await runOk('cp', ['-a', '--', `${seed}/.`, tmp]);
        else await chown(tmp, ...owner);
        await rename(tmp, source);
      }
      out.push({ source, target });
    }
    return out;
  }

  /**
   * An image container's argv, working directory and environment, and the
   * user its PID 1 runs as when the image's USER is not root (lxc.init.uid):
   * init commands and the workload both run as it, as Docker runs them.
   */
  private async imagePlan(
    template: string,
    workload: ImageWorkload,
    env: Record<string, string>,
  ): Promise<{ runs: ImageRun; user?: ImageUser }> {
    const image = await this.images.config(template);
    try {
      const found = await readImageUser(path.join(this.lxcPath, template, 'rootfs'), image.user ?? '');
      const user = found.uid === 0 && found.gid === 0 ? undefined : found;
      return { runs: imageRun(image, workload, env, user), ...(user ? { user } : {}) };
    } catch (err) {
      throw new DomainError('deploy_failed', `${workload.image}: ${(err as Error).message}`);
    }
  }

  /**
   * Where an image's init script keeps the workload's log and its init record
   * (/var/log/aiqso, /var/lib/aiqso), owned by the image's USER: made in the
   * image's template once (clones see them there), and given to the user in
   * the container's own layer where an earlier run as root left them. A path
   * through a symlink is never followed (it could lead out of the rootfs).
   */
  private async prepareUserDirs(
    name: string,
    template: string,
    ids: readonly [number, number],
  ): Promise<void> {
    const dirs = ['var/log/aiqso', 'var/lib/aiqso'];
    await this.cloneLocks.run(template, async () => {
      const rootfs = path.join(this.lxcPath, template, 'rootfs');
      for (const dir of dirs) {
        for (const parent of [path.dirname(path.dirname(dir)), path.dirname(dir)]) {
          const st = await lstat(path.join(rootfs, parent)).catch(() => undefined);
          if (!st?.isDirectory())
            throw new DomainError(
              'deploy_failed',
              `the image's /${parent} is not a directory: the workload's log cannot be kept for its USER`,
            );
        }
        const p = path.join(rootfs, dir);
        const st = await lstat(p).catch(() => undefined);
        if (!st) await mkdir(p, { mode: 0o755 });
        else if (!st.isDirectory())
          throw new DomainError('deploy_failed', `the image's /${dir} is not a directory`);
        if (!st || st.uid !== ids[0] || st.gid !== ids[1]) await chown(p, ...ids);
      }
    });
    const delta = await this.deltaDir(name);
    if (!delta) return;
    for (const rel of [...dirs, IMAGE_LOG.slice(1), INIT_MARKER.slice(1)]) {
      const p = path.join(delta, rel);
      const st = await lstat(p).catch(() => undefined);
      if (st && !st.isSymbolicLink() && (st.uid !== ids[0] || st.gid !== ids[1])) await lchown(p, ...ids);
    }
  }

  /** Limits reach a running container at once, not only at its next start. */
  private async applyLimits(name: string, resources: ResourceLimits): Promise<void> {
    for (const [key, value] of cgroupLimitKeys(resources, CGROUP)) {
      await runOk('lxc-cgroup', ['-P', this.lxcPath, '-n', name, key, value]);
    }
  }

  async start(name: string): Promise<ContainerInfo> {
    return this.locks.run(name, async () => {
      this.mustExist(name);
      await this.ready();
      const meta = await readMeta(this.lxcPath, name);
      const defines = lxcfsDefines(this.lxcfs, meta.workload === 'app' || meta.workload === 'image');
      // One spawn in the common case: lxc-start itself says when it was already running.
      const { pid, started } = await this.tools.start(name, this.dir(name), defines);
      const live = { state: 'RUNNING', pid };
      await Promise.all([
        started && pid ? recordApplied(path.join(this.dir(name), 'aiqso'), pid, meta.digest) : undefined,
        this.remember(name, live),
      ]);
      return this.info(name, live, { meta });
    });
  }

  async stop(name: string, options: { timeoutMs?: number } = {}): Promise<void> {
    await this.locks.run(name, async () => {
      this.inits.delete(name);
      if (!this.exists(name)) return;
      await this.tools.stop(name, Math.max(1, Math.ceil((options.timeoutMs ?? 10_000) / 1000)));
    });
  }

  async restart(name: string): Promise<ContainerInfo> {
    this.mustExist(name);
    await this.stop(name);
    return this.start(name);
  }

  async destroy(name: string): Promise<void> {
    await this.locks.run(name, async () => {
      this.inits.delete(name);
      if (this.exists(name)) await this.tools.destroy(name);
      await rm(this.dir(name), { recursive: true, force: true });
      const ip = await this.pool.lookup(name);
      if (ip) await forgetNeighbour(this.options.bridge, ip);
      await this.pool.release(name);
      if (ip) await this.walls.policy.request();
    });
  }

  async status(name: string): Promise<ContainerInfo> {
    return this.exists(name) ? this.info(name) : { name, state: 'missing' };
  }

  async stats(name: string): Promise<ContainerStats> {
    this.mustExist(name);
    const running = (await this.liveState(name)).state === 'RUNNING';
    const f = running ? await this.tools.info(name) : {};
    const num = (key: string) => Number(f[key] ?? 0) || 0;
    const peak = running && num('PID') ? (await cgroupMemory(num('PID'))).peakBytes : undefined;
    return {
      cpuSeconds: num('CPU use') / 1e9,
      memoryBytes: num('Memory use'),
      ...(peak !== undefined ? { memoryPeakBytes: peak } : {}),
      diskBytes: await duBytes(await this.deltaDir(name)),
      // lxc-info counts on the host's end of the veth: what it receives the container sent.
      netRxBytes: num('TX bytes'),
      netTxBytes: num('RX bytes'),
    };
  }

  async memory(name: string): Promise<Pick<ContainerStats, 'memoryBytes' | 'memoryPeakBytes'>> {
    this.mustExist(name);
    // Sampled every few minutes for every container: the init's cgroup files, found without a spawn.
    const { state, pid } = await this.liveState(name);
    if (state !== 'RUNNING' || pid === undefined) return { memoryBytes: 0 };
    const m = await cgroupMemory(pid);
    return {
      memoryBytes: m.bytes ?? 0,
      ...(m.peakBytes !== undefined ? { memoryPeakBytes: m.peakBytes } : {}),
    };
  }

  async exec(name: string, argv: string[], options: ExecOptions = {}): Promise<ExecResult> {
    this.mustExist(name);
    if (argv.length === 0) throw badRequest('exec needs a command');
    if ((await this.liveState(name)).state !== 'RUNNING') throw conflict(`container ${name} is not running`);
    return this.tools.attach(name, argv, options.stdin, options.timeoutMs ?? 60_000);
  }

  /**
   * What the workload writes to /var/log/aiqso/app.log (app and image
   * workloads: stdout and stderr together), read from the container's own
   * layer on the host, running or not; see `lxcLogs`.
   */
  async logs(name: string, options: LogOptions = {}): Promise<ServiceLogs> {
    return lxcLogs(this.lxcPath, name, options);
  }

  async exportTo(name: string, file: string): Promise<{ bytes: number }> {
    this.mustExist(name);
    // An image's volumes travel in the same archive, under .aiqso-volumes/.
    const volumes = existsSync(path.join(this.dir(name), 'volumes'))
      ? ['--transform', 's,^volumes,.aiqso-volumes,', '-C', this.dir(name), 'volumes']
      : [];
    await tarLive([
      '--numeric-owner',
      '--xattrs',
      '-czf',
      file,
      '-C',
      await this.deltaDir(name),
      '.',
      ...volumes,
    ]);
    return { bytes: (await stat(file)).size };
  }

  async importFrom(spec: ContainerSpec, file: string): Promise<ContainerInfo> {
    if (!existsSync(file)) throw badRequest(`archive ${file} does not exist`);
    await this.destroy(spec.name);
    await this.ensure(spec);
    const delta = await this.deltaDir(spec.name);
    await runOk('tar', ['--numeric-owner', '--xattrs', '-C', delta, '-xzf', file], { endWithParent: true });
    const carried = path.join(delta, '.aiqso-volumes');
    if (existsSync(carried)) {
      await rm(path.join(this.dir(spec.name), 'volumes'), { recursive: true, force: true });
      await rename(carried, path.join(this.dir(spec.name), 'volumes'));
    }
    // An archive of a container from before the id map holds root's ids: shifted like a conversion.
    await shiftTree(delta, (await this.ready()).idmap);
    return this.status(spec.name);
  }

  /** The bridge's gateway (.1), made on first use. */
  addressRoom(): Promise<AddressRoom> {
    return this.pool.room();
  }

  async hostAddress(): Promise<string> {
    await this.ready();
    return this.pool.subnet.gateway;
  }

  async list(): Promise<ContainerInfo[]> {
    const names = await readdir(this.lxcPath).catch(() => [] as string[]);
    const out: ContainerInfo[] = [];
    for (const name of names.filter(isManagedName)) if (this.exists(name)) out.push(await this.info(name));
    return out;
  }

  async close(): Promise<void> {
    await Promise.resolve();
  }

  private mustExist(name: string): void {
    if (!this.exists(name)) throw new DomainError('not_found', `container ${name} not found`);
  }

  /** The last lines an image workload wrote, read from its layer (for the reason it stopped). */
  private async lastOutput(name: string): Promise<string | undefined> {
    const delta = await this.deltaDir(name).catch(() => '');
    if (!delta) return undefined;
    const text = await readFile(path.join(delta, IMAGE_LOG), 'utf8').catch(() => '');
    const tail = text.trim().split('\n').slice(-3).join(' | ');
    return tail ? tail.slice(-400) : undefined;
  }

  /**
   * Whether `name` runs, and its init's pid. The init last seen is looked for in /proc first (the same
   * process, still in the container's cgroup): a resync looks at every container every minute, and one
   * lxc-info spawn per look made a pass over a thousand tenants outlast its interval. Anything else
   * (never seen, stopped, restarted behind the driver's back) asks lxc-info.
   */
  private async liveState(name: string): Promise<{ state: string; pid?: number }> {
    const known = this.inits.get(name);
    if (known && (await stillRunning(known, name))) return { state: 'RUNNING', pid: known.pid };
    const live = await this.tools.statePid(name);
    await this.remember(name, live);
    return live;
  }

  private async remember(name: string, live: { state: string; pid?: number }): Promise<void> {
    const started = live.state === 'RUNNING' && live.pid ? await processStart(live.pid) : undefined;
    if (started && live.pid) this.inits.set(name, { pid: live.pid, started });
    else this.inits.delete(name);
  }

  private async deltaDir(name: string): Promise<string> {
    return rootfsLayers(await this.tools.config(name))?.upper ?? '';
  }

  /** What a container is now; `facts` are its address and meta.json when the caller has them at hand. */
  private async info(
    name: string,
    known?: { state: string; pid?: number },
    facts: { ip?: string; meta?: Partial<Meta> } = {},
  ): Promise<ContainerInfo> {
    const [ip, meta, live] = await Promise.all([
      facts.ip ?? this.pool.lookup(name),
      facts.meta ?? readMeta(this.lxcPath, name),
      known ?? this.liveState(name),
    ]);
    const running = live.state === 'RUNNING';
    const [limits, digest, lastOutput] = await Promise.all([
      running && live.pid ? observedLimits(live.pid) : undefined,
      reportedDigest(path.join(this.dir(name), 'aiqso'), { running, pid: live.pid }),
      running ? undefined : this.lastOutput(name),
    ]);
    return {
      name,
      state: running ? 'running' : 'stopped',
      ...(lastOutput ? { lastOutput } : {}),
      ...(ip ? { ip } : {}),
      ...(ip && meta.port ? { endpoint: { host: ip, port: meta.port } } : {}),
      handle: name,
      ...(limits ? { limits } : {}),
      ...(digest ? { configDigest: digest } : {}),
    };
  }
}

/**
 * An LXC container's workload log read from the host, from the container's
 * rootfs layer (`lxc.rootfs.path`; the upper directory of an overlay clone),
 * without the driver's bridge or walls: what the API and the CLI read logs
 * with. The container's root owns that tree, so nothing in it is followed
 * through a symlink (`openInside`). A workload that never wrote there (a
 * clone template that logs elsewhere) has no lines.
 */
export async function lxcLogs(lxcPath: string, name: string, options: LogOptions = {}): Promise<ServiceLogs> {
  const config = await readFile(path.join(lxcPath, name, 'config'), 'utf8').catch(() => undefined);
  if (config === undefined) throw new DomainError('not_found', `container ${name} not found`);
  const rootfs = rootfsLayers(config)?.upper;
  if (!rootfs) return tailLogs([], options);
  return tailLogs([{ root: rootfs, rel: IMAGE_LOG.slice(1) }], options);
}

async function atomicWrite(
  file: string,
  text: string,
  mode: number,
  owner?: readonly [number, number],
): Promise<void> {
  const tmp = `${file}.tmp`;
  await writeFile(tmp, text, { mode });
  if (owner) await chown(tmp, ...owner);
  await rename(tmp, file);
}

async function duBytes(dir: string): Promise<number> {
  const out = await runOk('du', ['-sb', dir]).catch(() => '0');
  return Number(out.split('\t')[0]) || 0;
}

/** The node_modules directory Node would resolve packages from for an app in `dir` on the host. */
function nearestNodeModules(dir: string): string | undefined {
  for (let at = path.resolve(dir); ; at = path.dirname(at)) {
    const candidate = path.join(at, 'node_modules');
    if (existsSync(candidate)) return realpathSync(candidate);
    if (path.dirname(at) === at) return undefined;
  }
}

/** A volume's directory name: its path's last segment and a hash of the whole path (unique, readable). */
function volumeDirName(target: string): string {
  const hash = createHash('sha256').update(target).digest('hex').slice(0, 8);
  return `${path.basename(target)}-${hash}`;
}
