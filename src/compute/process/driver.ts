import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import {
  configDigest,
  type ComputeDriver,
  type ContainerInfo,
  type ContainerSpec,
  type ContainerStats,
  type ExecOptions,
  type ExecResult,
  type LogOptions,
  type ServiceLogs,
} from '../../core/compute.ts';
import { badRequest, DomainError } from '../../core/errors.ts';
import type { Logger } from '../../observability/logger.ts';
import { tailLogs } from '../shared/log-tail.ts';
import { KeyedMutex, run, runOk, sleep, tarLive, WORKLOAD_PATH } from '../shared/run.ts';
import { freeLoopbackPort } from './ports.ts';
import { cmdline, cpuSeconds, isSameProcess, memoryOf } from './proc.ts';
import { ProcessStore, type ProcessState } from './store.ts';
import { Supervisor } from './supervisor.ts';

export interface ProcessDriverOptions {
  /** `<AIQSO_DATA_DIR>/containers`. */
  root: string;
  log: Logger;
  /** How often the supervisor checks each process (default 500 ms). */
  pollMs?: number;
  /**
   * Stop the workloads when the driver closes, keeping their desired state, so
   * the next `open` launches them again. For `aiqso up` with its embedded
   * database: the workloads live as long as the platform whose database they use.
   */
  stopWorkloadsOnClose?: boolean;
  /** Ports a container never gets: the platform's own HTTP(S) ports (platformPorts). */
  reservedPorts?: readonly number[];
}

/**
 * The portable default: each container is a supervised `node <entry>` child in
 * its own process group with its own work dir, environment and loopback port.
 * The workload listens on the PORT it is given (the loopback port, not
 * `spec.port`, since processes share the host's network). Memory is capped as
 * V8's heap limit; cores and disk are not enforced (no isolation here — use
 * lxc or proxmox for that).
 */
export class ProcessDriver implements ComputeDriver {
  readonly kind = 'process' as const;
  private readonly store: ProcessStore;
  private readonly locks = new KeyedMutex();
  private readonly supervisor: Supervisor;
  private readonly portLock = new KeyedMutex();

  private constructor(private readonly options: ProcessDriverOptions) {
    this.store = new ProcessStore(options.root);
    this.supervisor = new Supervisor(this.store, options.log, options.pollMs ?? 500, (name, fn) =>
      this.locks.run(name, fn),
    );
  }

  /** Open the driver and re-adopt (or relaunch) every container that should be running. */
  static async open(options: ProcessDriverOptions): Promise<ProcessDriver> {
    const driver = new ProcessDriver(options);
    for (const name of await driver.store.names()) {
      await driver.locks.run(name, async () => {
        const state = await driver.store.read(name);
        if (state?.desired !== 'running') return;
        if (!(await isSameProcess(state.pid, state.pidStart))) await driver.supervisor.launch(state);
        else options.log.info({ container: name, pid: state.pid }, 'process container re-adopted');
        driver.supervisor.watch(name);
      });
    }
    return driver;
  }

  async ensure(spec: ContainerSpec): Promise<ContainerInfo> {
    if (spec.workload.kind !== 'app') {
      throw badRequest(
        `the process driver runs only app services (Node.js apps shipped with the platform), not ${spec.workload.kind} services`,
      );
    }
    return this.locks.run(spec.name, async () => {
      await this.store.prepare(spec.name);
      const existing = await this.store.read(spec.name);
      const hostPort = existing?.hostPort ?? (await this.allocatePort());
      await this.store.writeEnv(spec.name, { ...spec.env, PORT: String(hostPort), HOST: '127.0.0.1' });
      const state: ProcessState = {
        ...existing,
        name: spec.name,
        tenantId: spec.tenantId,
        role: spec.role,
        workload: spec.workload,
        resources: spec.resources,
        hostPort,
        desired: existing?.desired ?? 'stopped',
        digest: configDigest(spec),
      };
      await this.store.write(state);
      return this.info(state);
    });
  }

  async start(name: string): Promise<ContainerInfo> {
    return this.locks.run(name, async () => {
      let state = await this.mustRead(name);
      if (!(await isSameProcess(state.pid, state.pidStart))) {
        state = await this.supervisor.launch({ ...state, desired: 'running' });
      } else if (state.desired !== 'running') {
        state = { ...state, desired: 'running' };
        await this.store.write(state);
      }
      this.supervisor.watch(name);
      return this.info(state);
    });
  }

  async stop(name: string, options: { timeoutMs?: number } = {}): Promise<void> {
    await this.locks.run(name, async () => {
      const state = await this.store.read(name);
      if (!state) return;
      this.supervisor.unwatch(name);
      await this.store.write({ ...state, desired: 'stopped' });
      await this.terminate(state, options.timeoutMs ?? 10_000);
      await this.store.write({ ...state, desired: 'stopped', pid: undefined, pidStart: undefined });
    });
  }

  async restart(name: string): Promise<ContainerInfo> {
    await this.mustRead(name);
    await this.stop(name);
    return this.start(name);
  }

  async destroy(name: string): Promise<void> {
    await this.locks.run(name, async () => {
      this.supervisor.unwatch(name);
      const state = await this.store.read(name);
      if (state) await this.terminate(state, 5_000);
      await this.store.remove(name);
    });
  }

  async status(name: string): Promise<ContainerInfo> {
    const state = await this.store.read(name);
    return state ? this.info(state) : { name, state: 'missing' };
  }

  async stats(name: string): Promise<ContainerStats> {
    const state = await this.mustRead(name);
    const alive = await isSameProcess(state.pid, state.pidStart);
    const memory = alive ? await memoryOf(state.pid!) : { rss: 0, peak: 0 };
    return {
      cpuSeconds: alive ? await cpuSeconds(state.pid!) : 0,
      memoryBytes: memory.rss,
      ...(alive ? { memoryPeakBytes: memory.peak } : {}),
      diskBytes: await diskUsage(this.store.dir(name)),
      // Processes share the host's network namespace: there is no per-container counter.
      netRxBytes: 0,
      netTxBytes: 0,
    };
  }

  async memory(name: string): Promise<Pick<ContainerStats, 'memoryBytes' | 'memoryPeakBytes'>> {
    const state = await this.mustRead(name);
    if (!(await isSameProcess(state.pid, state.pidStart))) return { memoryBytes: 0 };
    const { rss, peak } = await memoryOf(state.pid!);
    return { memoryBytes: rss, memoryPeakBytes: peak };
  }

  async exec(name: string, argv: string[], options: ExecOptions = {}): Promise<ExecResult> {
    await this.mustRead(name);
    if (argv.length === 0) throw badRequest('exec needs a command');
    const env = await this.store.readEnv(name);
    return run(argv[0]!, argv.slice(1), {
      cwd: this.store.dataDir(name),
      env: { PATH: WORKLOAD_PATH, HOME: this.store.dataDir(name), ...env },
      stdin: options.stdin,
      timeoutMs: options.timeoutMs ?? 60_000,
    });
  }

  /** The workload's stdout and stderr files (`<container>/logs/`), the one written to last shown last. */
  async logs(name: string, options: LogOptions = {}): Promise<ServiceLogs> {
    await this.mustRead(name);
    return processLogs(this.store.root, name, options);
  }

  async exportTo(name: string, file: string): Promise<{ bytes: number }> {
    await this.mustRead(name);
    await tarLive(['-C', this.store.dataDir(name), '-czf', file, '.']);
    return { bytes: (await stat(file)).size };
  }

  async importFrom(spec: ContainerSpec, file: string): Promise<ContainerInfo> {
    await stat(file).catch(() => {
      throw badRequest(`archive ${file} does not exist`);
    });
    const before = await this.store.read(spec.name);
    await this.destroy(spec.name);
    await this.ensure(spec);
    await runOk('tar', ['-C', this.store.dataDir(spec.name), '-xzf', file], { endWithParent: true });
    return before?.desired === 'running' ? this.start(spec.name) : this.status(spec.name);
  }

  /** Containers are processes on this host. */
  hostAddress(): Promise<string> {
    return Promise.resolve('127.0.0.1');
  }

  async list(): Promise<ContainerInfo[]> {
    const out: ContainerInfo[] = [];
    for (const name of await this.store.names()) {
      const state = await this.store.read(name);
      if (state) out.push(await this.info(state));
    }
    return out;
  }

  async close(): Promise<void> {
    this.supervisor.close();
    if (!this.options.stopWorkloadsOnClose) return;
    const names = await this.store.names();
    await Promise.all(
      names.map((name) =>
        this.locks.run(name, async () => {
          const state = await this.store.read(name);
          if (!state || !(await isSameProcess(state.pid, state.pidStart))) return;
          await this.terminate(state, 10_000);
          // Desired state untouched: the next open launches it again.
          await this.store.write({ ...state, pid: undefined, pidStart: undefined });
          this.options.log.info({ container: name }, 'process container stopped with the platform');
        }),
      ),
    );
  }

  private async mustRead(name: string): Promise<ProcessState> {
    const state = await this.store.read(name);
    if (!state) throw new DomainError('not_found', `container ${name} not found`);
    return state;
  }

  private async info(state: ProcessState): Promise<ContainerInfo> {
    const alive = await isSameProcess(state.pid, state.pidStart);
    const heap = alive ? /^--max-old-space-size=(\d+)$/ : undefined;
    const applied = heap && (await cmdline(state.pid!)).map((a) => heap.exec(a)?.[1]).find(Boolean);
    // A live process runs with what it was launched with; a stopped one will start with the last ensure's.
    const digest = alive ? state.appliedDigest : state.digest;
    return {
      name: state.name,
      state: alive ? 'running' : 'stopped',
      ip: '127.0.0.1',
      endpoint: { host: '127.0.0.1', port: state.hostPort },
      ...(alive ? { handle: String(state.pid) } : {}),
      ...(applied ? { limits: { memoryMb: Number(applied) } } : {}),
      ...(digest ? { configDigest: digest } : {}),
    };
  }

  private async allocatePort(): Promise<number> {
    return this.portLock.run('ports', async () => {
      const taken = new Set<number>(this.options.reservedPorts);
      for (const n of await this.store.names()) {
        const s = await this.store.read(n);
        if (s) taken.add(s.hostPort);
      }
      return freeLoopbackPort(taken);
    });
  }

  /** SIGTERM the process group, wait, then SIGKILL it. */
  private async terminate(state: ProcessState, timeoutMs: number): Promise<void> {
    if (!(await isSameProcess(state.pid, state.pidStart))) return;
    const group = -state.pid!;
    signal(group, 'SIGTERM');
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (!(await isSameProcess(state.pid, state.pidStart))) return;
      await sleep(50);
    }
    signal(group, 'SIGKILL');
    while (await isSameProcess(state.pid, state.pidStart)) await sleep(20);
  }
}

/**
 * A process container's logs read straight from its directory under `root`
 * (`<data>/containers`), without opening the driver (which would re-adopt and
 * relaunch containers): what the API and the CLI read logs with.
 */
export async function processLogs(
  root: string,
  name: string,
  options: LogOptions = {},
): Promise<ServiceLogs> {
  const store = new ProcessStore(root);
  if (!(await store.read(name))) throw new DomainError('not_found', `container ${name} not found`);
  const dir = path.dirname(store.logFile(name, 'stdout'));
  return tailLogs(
    [
      { root: dir, rel: 'stdout.log' },
      { root: dir, rel: 'stderr.log' },
    ],
    options,
  );
}

function signal(target: number, sig: NodeJS.Signals): void {
  try {
    process.kill(target, sig);
  } catch {
    // Already gone.
  }
}

async function diskUsage(dir: string): Promise<number> {
  let total = 0;
  const entries = await readdir(dir, { withFileTypes: true, recursive: true }).catch(() => []);
  for (const e of entries) {
    if (!e.isFile()) continue;
    total += (await stat(path.join(e.parentPath, e.name)).catch(() => ({ size: 0 }))).size;
  }
  return total;
}
