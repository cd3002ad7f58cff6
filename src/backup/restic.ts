import path from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { spawnTool, WORKLOAD_PATH } from '../compute/shared/run.ts';
import type { Config } from '../config/load.ts';
import { DomainError } from '../core/errors.ts';
import { parseSftp, sftpCommand, sshLoginStderr, sshProblem, type SshSettings } from './sftp.ts';

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
  /** PEM file of CA certificates for an HTTPS repository signed by a private CA (restic's `--cacert`). */
  cacert?: string;
}

/** The restic the configuration describes: its cache under the data dir, the backend's credentials, ssh and CA settings. */
export function resticFor(config: Pick<Config, 'dataDir' | 'backup'>): Restic {
  return new Restic({
    cacheDir: path.join(config.dataDir, 'restic-cache'),
    credentials: config.backup.credentials,
    ssh: config.backup.ssh,
    ...(config.backup.cacert ? { cacert: config.backup.cacert } : {}),
  });
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

/** The variables holding a backend's credentials, by the repository's scheme, for a refusal's message. */
function credentialNames(location: string): string {
  const scheme = /^([a-z0-9]+):/.exec(location)?.[1];
  switch (scheme) {
    case 's3':
      return 'AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary keys)';
    case 'rest':
      return 'RESTIC_REST_USERNAME and RESTIC_REST_PASSWORD';
    case 'b2':
      return 'B2_ACCOUNT_ID and B2_ACCOUNT_KEY';
    case 'azure':
      return 'AZURE_ACCOUNT_NAME and AZURE_ACCOUNT_KEY';
    default:
      return "the backend's credentials";
  }
}

/**
 * What a remote backend's answer says went wrong, before restic's own words are read: its
 * "unable to open config file" wraps every failure to read the repository's config, and only a
 * config that is not there means "no repository yet".
 */
function backendProblem(location: string, stderr: string, detail: string): DomainError | undefined {
  const cacert = /unable to read root certificate: [^\n]*/.exec(stderr);
  if (cacert)
    return new DomainError('misconfigured', `AIQSO_BACKUP_CACERT cannot be used: restic is ${cacert[0]}`, {
      details: { reason: 'tls' },
    });
  if (/x509: |tls: /i.test(stderr))
    return new DomainError(
      'misconfigured',
      `backup repository unreachable: its TLS certificate is not trusted (set AIQSO_BACKUP_CACERT to the CA certificate that signed it): ${detail}`,
      { details: { reason: 'tls' } },
    );
  if (
    /InvalidAccessKeyId|Access Key Id you provided does not exist|SignatureDoesNotMatch|signature we calculated does not match|AccessDenied|Access Denied|InvalidToken|ExpiredToken|security token included in the request is invalid|unexpected HTTP response \((401|403)\)/i.test(
      stderr,
    )
  )
    return new DomainError(
      'misconfigured',
      `backup repository refused the credentials: check ${credentialNames(location)}: ${detail}`,
      { details: { reason: 'credentials' } },
    );
  if (
    /connection refused|no such host|i\/o timeout|network is unreachable|no route to host|connection reset by peer|server misbehaving/i.test(
      stderr,
    )
  )
    return new DomainError('unavailable', `backup repository unreachable: ${detail}`, {
      details: { reason: 'network' },
    });
  return undefined;
}

/** A restic failure, with its last stderr lines (which never hold the password). */
function failure(
  repo: ResticRepository,
  args: string[],
  code: number,
  stderr: string,
  sftp?: { target: NonNullable<ReturnType<typeof parseSftp>>; ssh: SshSettings },
): DomainError {
  const detail = stderr
    .trim()
    .split('\n')
    .filter((l) => !/^Is there a repository at the following location\?$/.test(l) && l !== repo.location)
    .slice(-3)
    .join(' | ');
  const ssh = sftp && sshProblem(stderr, sftp.target, sftp.ssh);
  if (ssh) return new DomainError('unavailable', ssh);
  const backend = backendProblem(repo.location, stderr, detail);
  if (backend) return backend;
  if (/unable to open config file/.test(stderr))
    return new DomainError('not_found', `no backup repository there yet: ${detail}`, {
      details: { missing: true },
    });
  if (/Is there a repository|unable to open repository|unable to start the sftp/i.test(stderr))
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
  readonly #cacert: string | undefined;

  constructor(options: ResticOptions) {
    this.#binary = options.binary ?? 'restic';
    this.#cacheDir = options.cacheDir;
    this.#credentials = options.credentials ?? {};
    // Without settings, an sftp repository is still reached non-interactively, and its host key
    // is checked against an empty list: refused, with the fix.
    this.#ssh = options.ssh ?? { knownHosts: '/dev/null' };
    this.#cacert = options.cacert;
  }

  /** Run restic against `repo`; resolves with its stdout (unless piped) or rejects with a DomainError. */
  call(repo: ResticRepository, args: string[], options: CallOptions = {}): Promise<string> {
    const target = parseSftp(repo.location);
    const sftp = target ? { target, ssh: this.#ssh } : undefined;
    return new Promise((resolve, reject) => {
      // The whole ssh command (a throw here rejects): restic's default would ask questions and read ~/.ssh.
      const argv = target ? ['-o', `sftp.command=${sftpCommand(target, this.#ssh)}`, ...args] : [...args];
      // A path only (the certificates are public), and only for a backend restic reaches over HTTP(S).
      if (this.#cacert && !target && /^[a-z0-9]+:/.test(repo.location))
        argv.unshift('--cacert', this.#cacert);
      const child = spawnTool(this.#binary, argv, {
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
        if (code === 0) return resolve(stdout);
        const fail = (said: string) => reject(failure(repo, args, code ?? (signal ? 128 : 1), said, sftp));
        // restic can exit before passing on what its ssh printed: ask ssh itself what went wrong.
        if (
          sftp &&
          !sshProblem(stderr, sftp.target, sftp.ssh) &&
          /unable to start the sftp session/.test(stderr)
        )
          void sshLoginStderr(sftp.target, sftp.ssh).then((ssh) => fail(`${stderr}\n${ssh}`));
        else fail(stderr);
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
