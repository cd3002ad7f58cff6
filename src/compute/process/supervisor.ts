import { spawn } from 'node:child_process';
import { open } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from '../../observability/logger.ts';
import { appNodeFlags, AppSnapshots } from '../shared/app-snapshot.ts';
import { WORKLOAD_PATH } from '../shared/run.ts';
import { isSameProcess, startTime } from './proc.ts';
import type { ProcessState, ProcessStore } from './store.ts';

/** A process that lived this long before dying gets its backoff reset. */
const STABLE_MS = 10_000;
const MAX_BACKOFF_MS = 10_000;
const BASE_BACKOFF_MS = 250;

interface Watch {
  timer: NodeJS.Timeout;
  restarts: number;
  startedAt: number;
  nextRestartAt: number;
  checking: boolean;
}

/**
 * Keeps each running container's process alive: launches it detached (its own
 * process group, stdio to log files, so it outlives the control plane), polls
 * that the recorded pid is still the same process (pid + start time), and
 * relaunches it with exponential backoff when it is not.
 */
export class Supervisor {
  private readonly watches = new Map<string, Watch>();
  private readonly snapshots: AppSnapshots;

  constructor(
    private readonly store: ProcessStore,
    private readonly log: Logger,
    private readonly pollMs: number,
    /** Runs `fn` under the container's lock, so a relaunch never races a stop. */
    private readonly locked: <T>(name: string, fn: () => Promise<T>) => Promise<T>,
  ) {
    this.snapshots = new AppSnapshots(log);
  }

  /** Spawn the workload and record its pid; the caller persists nothing else. */
  async launch(state: ProcessState): Promise<ProcessState> {
    if (state.workload.kind !== 'app') throw new Error('process driver runs app workloads only');
    const env = await this.store.readEnv(state.name);
    const out = await open(this.store.logFile(state.name, 'stdout'), 'a', 0o600);
    const err = await open(this.store.logFile(state.name, 'stderr'), 'a', 0o600);
    try {
      const workload = state.workload;
      const entry = path.resolve(workload.dir, workload.entry);
      const flags = appNodeFlags(state.resources.memoryMb);
      const blob = workload.snapshot ? await this.snapshots.blobFor(workload, flags) : undefined;
      const start = blob ? ['--snapshot-blob', blob, entry] : [entry];
      const child = spawn(process.execPath, [...flags, ...start], {
        cwd: this.store.dataDir(state.name),
        // Only the container's own environment: the control plane's (DATABASE_URL…) never leaks in.
        env: { PATH: WORKLOAD_PATH, HOME: this.store.dataDir(state.name), ...env },
        detached: true,
        stdio: ['ignore', out.fd, err.fd],
      });
      const pid = await new Promise<number>((resolve, reject) => {
        child.once('spawn', () => resolve(child.pid!));
        child.once('error', reject);
      });
      child.unref();
      child.once('exit', () => this.poke(state.name));
      const next: ProcessState = {
        ...state,
        pid,
        pidStart: await startTime(pid),
        appliedDigest: state.digest,
      };
      await this.store.write(next);
      this.log.info({ container: state.name, pid }, 'process container started');
      return next;
    } finally {
      await out.close();
      await err.close();
    }
  }

  watch(name: string): void {
    if (this.watches.has(name)) return;
    const timer = setInterval(() => this.poke(name), this.pollMs);
    timer.unref();
    this.watches.set(name, { timer, restarts: 0, startedAt: Date.now(), nextRestartAt: 0, checking: false });
  }

  unwatch(name: string): void {
    const w = this.watches.get(name);
    if (w) clearInterval(w.timer);
    this.watches.delete(name);
  }

  close(): void {
    for (const name of [...this.watches.keys()]) this.unwatch(name);
  }

  private poke(name: string): void {
    const w = this.watches.get(name);
    if (!w || w.checking) return;
    w.checking = true;
    this.check(name, w)
      .catch((err: unknown) => this.log.warn({ err, container: name }, 'process supervision check failed'))
      .finally(() => (w.checking = false));
  }

  private async check(name: string, w: Watch): Promise<void> {
    await this.locked(name, async () => {
      const state = await this.store.read(name);
      if (!state || state.desired !== 'running') return this.unwatch(name);
      if (await isSameProcess(state.pid, state.pidStart)) return;
      const now = Date.now();
      if (w.nextRestartAt === 0) {
        if (now - w.startedAt >= STABLE_MS) w.restarts = 0;
        const delay = Math.min(MAX_BACKOFF_MS, BASE_BACKOFF_MS * 2 ** w.restarts);
        w.nextRestartAt = now + delay;
        this.log.warn({ container: name, restartInMs: delay }, 'process container died');
        setTimeout(() => this.poke(name), delay).unref();
        return;
      }
      if (now < w.nextRestartAt) return;
      w.restarts++;
      w.nextRestartAt = 0;
      w.startedAt = now;
      await this.launch(state);
    });
  }
}
