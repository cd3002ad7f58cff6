import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { ResourceLimits, Workload } from '../../core/compute.ts';

/**
 * What the process driver keeps on disk per container, under
 * `<data>/containers/<name>/`: `container.json` (spec minus env, the loopback
 * port, the desired state and the running pid with its start time), `env.json`
 * (mode 0600: the environment may hold secrets), `data/` (the container's
 * working directory, what export/import carry) and `logs/`.
 *
 * Invariant: a container exists exactly when `container.json` exists. Files are
 * replaced by rename, so a crash leaves either the old or the new version.
 */
export interface ProcessState {
  name: string;
  tenantId: string;
  role: string;
  workload: Workload;
  resources: ResourceLimits;
  /** Loopback port given to the workload as PORT; kept across restarts. */
  hostPort: number;
  desired: 'running' | 'stopped';
  pid?: number;
  /** Start time of `pid` in clock ticks since boot (/proc/<pid>/stat field 22): a reused pid has another. */
  pidStart?: number;
  /** `configDigest` of the spec last ensured: what the next launch runs with. */
  digest?: string;
  /** `configDigest` of the spec `pid` was launched with: a running process keeps its launch-time environment. */
  appliedDigest?: string;
}

export class ProcessStore {
  /**
   * The last `container.json` read per container, with the file's identity. The
   * supervisor reads each one twice a second; a file unchanged since (same inode,
   * size and mtime to the nanosecond: every write is a rename of a new file) is
   * answered from here for one `stat` instead of open, read and close. Another
   * process's write is a new file, so it is seen at the next read.
   */
  private readonly seen = new Map<string, { identity: string; state: Readonly<ProcessState> }>();

  constructor(readonly root: string) {}

  dir(name: string): string {
    return path.join(this.root, name);
  }
  dataDir(name: string): string {
    return path.join(this.dir(name), 'data');
  }
  logFile(name: string, stream: 'stdout' | 'stderr'): string {
    return path.join(this.dir(name), 'logs', `${stream}.log`);
  }

  /** The container's state; the object may be shared between callers: do not change it. */
  async read(name: string): Promise<Readonly<ProcessState> | undefined> {
    const file = path.join(this.dir(name), 'container.json');
    try {
      const st = await stat(file, { bigint: true });
      const identity = `${st.ino}:${st.size}:${st.mtimeNs}`;
      const seen = this.seen.get(name);
      if (seen?.identity === identity) return seen.state;
      const state = Object.freeze(JSON.parse(await readFile(file, 'utf8')) as ProcessState);
      this.seen.set(name, { identity, state });
      return state;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        this.seen.delete(name);
        return undefined;
      }
      throw err;
    }
  }

  async readEnv(name: string): Promise<Record<string, string>> {
    try {
      return JSON.parse(await readFile(path.join(this.dir(name), 'env.json'), 'utf8')) as Record<
        string,
        string
      >;
    } catch {
      return {};
    }
  }

  /** Create the directories; idempotent. */
  async prepare(name: string): Promise<void> {
    await mkdir(this.dataDir(name), { recursive: true, mode: 0o700 });
    await mkdir(path.join(this.dir(name), 'logs'), { recursive: true, mode: 0o700 });
  }

  async write(state: ProcessState): Promise<void> {
    await atomicWrite(
      path.join(this.dir(state.name), 'container.json'),
      JSON.stringify(state, null, 2),
      // A tenant's container description: for the platform's user only, like everything in the data dir.
      0o600,
    );
  }

  async writeEnv(name: string, env: Record<string, string>): Promise<void> {
    await atomicWrite(path.join(this.dir(name), 'env.json'), JSON.stringify(env), 0o600);
  }

  async remove(name: string): Promise<void> {
    // The state file goes first so a crash mid-way leaves "missing", not a half container.
    await rm(path.join(this.dir(name), 'container.json'), { force: true });
    await rm(this.dir(name), { recursive: true, force: true });
  }

  async names(): Promise<string[]> {
    try {
      return (await readdir(this.root, { withFileTypes: true }))
        .filter((d) => d.isDirectory())
        .map((d) => d.name);
    } catch {
      return [];
    }
  }
}

async function atomicWrite(file: string, text: string, mode: number): Promise<void> {
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, text, { mode });
  await rename(tmp, file);
}
