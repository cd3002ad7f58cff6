import { spawn } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { WORKLOAD_PATH } from '../compute/shared/run.ts';
import { DomainError } from '../core/errors.ts';
import { parseSftp, sftpCommand, sshProblem, type SshSettings } from './sftp.ts';

/**
 * The restic driver: every call is an argv array; the repository's password
 * and the backend's credentials reach restic only through its environment
 * (never argv, never a log line). restic's own encryption and
 * content-addressed chunking do the work: nothing here is hand-rolled.
 */
export interface ResticRepository {
  /** A path, or `sftp:…`, `s3:…`, `rest:…` as restic spells them. */
  location: string;
  password: string;
}

export interface ResticOptions {
  binary?: string;
  /** restic's local cache (index and metadata), under the platform's data dir. */
  cacheDir: string;
  /** Backend credentials (AWS_*, RESTIC_REST_*, …) passed to every call's environment. */
  credentials?: Record<string, string>;
  /** How restic's ssh reaches an `sftp:` repository (identity, known_hosts); see sftp.ts. */
  ssh?: SshSettings;
}

export interface Snapshot {
  id: string;
  shortId: string;
  time: Date;
  tags: string[];
  paths: string[];
}

export interface BackupSummary {
  snapshotId: string;
  dataAdded: number;
  bytesProcessed: number;
  durationMs: number;
}

interface CallOptions {
  stdin?: Readable;
  stdout?: Writable;
  signal?: AbortSignal;
}

/** A restic failure, with its last stderr lines (which never hold the password). */
function failure(
  args: string[],
  code: number,
  stderr: string,
  sftp?: { target: NonNullable<ReturnType<typeof parseSftp>>; ssh: SshSettings },
): DomainError {
  const detail = stderr.trim().split('\n').slice(-3).join(' | ');
  const ssh = sftp && sshProblem(stderr, sftp.target, sftp.ssh);
  if (ssh) return new DomainError('unavailable', ssh);
  if (/unable to open config file/.test(stderr))
    return new DomainError('not_found', `no backup repository there yet: ${detail}`, {
      details: { missing: true },
    });
  if (
    /Is there a repository|unable to open repository|unable to start the sftp|connection refused/i.test(
      stderr,
    )
  )
    return new DomainError('unavailable', `backup repository unreachable: ${detail}`);
  if (/repository is already locked/i.test(stderr))
    return new DomainError('conflict', `restic ${args[0]}: the repository is locked: ${detail}`, {
      details: { locked: true },
    });
  if (/wrong password|no key found/i.test(stderr))
    return new DomainError('unavailable', `backup repository key does not open it: ${detail}`);
  if (/no matching ID found|invalid id|no snapshot/i.test(stderr))
    return new DomainError('not_found', `restic ${args[0]}: ${detail}`);
  return new DomainError('dependency_failed', `restic ${args[0]} failed (${code}): ${detail}`);
}

export class Restic {
  readonly #binary: string;
  readonly #cacheDir: string;
  readonly #credentials: Record<string, string>;
  readonly #ssh: SshSettings;

  constructor(options: ResticOptions) {
    this.#binary = options.binary ?? 'restic';
    this.#cacheDir = options.cacheDir;
    this.#credentials = options.credentials ?? {};
    // Without settings, an sftp repository is still reached non-interactively, and its host key
    // is checked against an empty list: refused, with the fix.
    this.#ssh = options.ssh ?? { knownHosts: '/dev/null' };
  }

  /** Run restic against `repo`; resolves with its stdout (unless piped) or rejects with a DomainError. */
  call(repo: ResticRepository, args: string[], options: CallOptions = {}): Promise<string> {
    const target = parseSftp(repo.location);
    const sftp = target ? { target, ssh: this.#ssh } : undefined;
    return new Promise((resolve, reject) => {
      // The whole ssh command (a throw here rejects): restic's default would ask questions and read ~/.ssh.
      const argv = target ? ['-o', `sftp.command=${sftpCommand(target, this.#ssh)}`, ...args] : args;
      const child = spawn(this.#binary, argv, {
        env: {
          PATH: WORKLOAD_PATH,
          HOME: this.#cacheDir,
          // --time and snapshot times are read and shown in UTC, whatever the host's zone.
          TZ: 'UTC',
          ...this.#credentials,
          RESTIC_REPOSITORY: repo.location,
          RESTIC_PASSWORD: repo.password,
          RESTIC_CACHE_DIR: this.#cacheDir,
        },
        stdio: [options.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'],
        signal: options.signal,
      });
      let stdout = '';
      let stderr = '';
      if (options.stdout) child.stdout!.pipe(options.stdout);
      else child.stdout!.setEncoding('utf8').on('data', (c: string) => (stdout += c));
      child.stderr!.setEncoding('utf8').on('data', (c: string) => (stderr = (stderr + c).slice(-8192)));
      if (options.stdin && child.stdin) {
        child.stdin.on('error', () => undefined);
        options.stdin.pipe(child.stdin);
      }
      child.on('error', (err) =>
        reject(new DomainError('dependency_failed', `cannot run restic: ${err.message}`, { cause: err })),
      );
      child.on('close', (code, signal) => {
        if (code === 0) resolve(stdout);
        else reject(failure(args, code ?? (signal ? 128 : 1), stderr, sftp));
      });
    });
  }

  /**
   * Whether a repository exists there (and this password opens it); throws when the backend cannot
   * be reached. Without a lock: a look must not make a concurrent `check` or `prune` (which need the
   * repository to themselves) fail.
   */
  async exists(repo: ResticRepository): Promise<boolean> {
    try {
      await this.call(repo, ['cat', 'config', '--no-lock']);
      return true;
    } catch (err) {
      if (err instanceof DomainError && err.details?.missing === true) return false;
      throw err;
    }
  }

  /** `restic version`'s line; needs no repository. */
  async version(): Promise<string> {
    return (await this.call({ location: '', password: '' }, ['version'])).trim();
  }

  async init(repo: ResticRepository): Promise<void> {
    await this.call(repo, ['init']);
  }

  /** One snapshot of what `stdin` delivers, stored as `filename`, with these tags. */
  async backupStdin(
    repo: ResticRepository,
    input: {
      stdin: Readable;
      filename: string;
      tags: string[];
      host: string;
      time?: Date;
      signal?: AbortSignal;
    },
  ): Promise<BackupSummary> {
    const args = ['backup', '--json', '--stdin', '--stdin-filename', input.filename, '--host', input.host];
    for (const tag of input.tags) args.push('--tag', tag);
    if (input.time) args.push('--time', input.time.toISOString().slice(0, 19).replace('T', ' '));
    const out = await this.call(repo, args, { stdin: input.stdin, signal: input.signal });
    const summary = out
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .find((m) => m.message_type === 'summary');
    if (!summary) throw new DomainError('dependency_failed', 'restic backup printed no summary');
    return {
      snapshotId: String(summary.snapshot_id),
      dataAdded: Number(summary.data_added ?? 0),
      bytesProcessed: Number(summary.total_bytes_processed ?? 0),
      durationMs: Math.round(Number(summary.total_duration ?? 0) * 1000),
    };
  }

  /** Snapshots carrying every one of `tags` (all snapshots without). */
  async snapshots(repo: ResticRepository, tags: string[] = []): Promise<Snapshot[]> {
    const args = ['snapshots', '--json', '--no-lock'];
    if (tags.length) args.push('--tag', tags.join(','));
    const list = JSON.parse((await this.call(repo, args)) || '[]') as {
      id: string;
      short_id: string;
      time: string;
      tags?: string[];
      paths: string[];
    }[];
    return (list ?? []).map((s) => ({
      id: s.id,
      shortId: s.short_id,
      time: new Date(s.time),
      tags: s.tags ?? [],
      paths: s.paths,
    }));
  }

  /** Stream one file of a snapshot into `out`. */
  async dump(repo: ResticRepository, snapshotId: string, file: string, out: Writable): Promise<void> {
    await this.call(repo, ['dump', '--no-lock', snapshotId, file], { stdout: out });
  }

  /** Remove stale locks only (restic's rule: older than 30 minutes, or of a process gone on this host). */
  async unlock(repo: ResticRepository): Promise<void> {
    await this.call(repo, ['unlock']);
  }

  async locks(repo: ResticRepository): Promise<string[]> {
    return (await this.call(repo, ['list', 'locks', '--no-lock'])).split('\n').filter(Boolean);
  }

  /** Forget these snapshots and prune the data only they held. */
  async forget(repo: ResticRepository, ids: string[]): Promise<void> {
    if (ids.length === 0) return;
    await this.call(repo, ['forget', '--prune', ...ids]);
  }
}
