import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { access, constants, mkdir, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Config } from '../config/load.ts';
import type { DoctorCheck } from '../compute/shared/doctor-check.ts';
import { DomainError } from '../core/errors.ts';
import { WORKLOAD_PATH } from '../compute/shared/run.ts';
import { isLocalBase } from './repositories.ts';
import { resticFor, type Restic } from './restic.ts';
import { parseSftp, sshOptions, sshProblem, type SftpTarget, type SshSettings } from './sftp.ts';

/** What a filesystem error means for the repository base, in words. */
function fsProblem(err: unknown, where: string): string {
  const code = (err as NodeJS.ErrnoException).code;
  switch (code) {
    case 'EROFS':
      return `${where} is on a read-only filesystem`;
    case 'EACCES':
    case 'EPERM':
      return `${where} is not writable by this user (uid ${process.getuid?.() ?? '?'})`;
    case 'ENOTDIR':
      return `${where}: a part of the path is a file, not a directory`;
    case 'ENOSPC':
      return `${where}: no space left on the device`;
    case 'EDQUOT':
      return `${where}: the disk quota is used up`;
    default:
      return `${where}: ${(err as Error).message}`;
  }
}

/** The nearest directory of `p` that exists (itself when it does). */
async function nearestExisting(p: string): Promise<{ dir: string; isDir: boolean }> {
  for (let dir = path.resolve(p); ; dir = path.dirname(dir)) {
    const found = await stat(dir).catch(() => undefined);
    if (found) return { dir, isDir: found.isDirectory() };
    if (path.dirname(dir) === dir) return { dir, isDir: true };
  }
}

/**
 * A path base: an existing directory must take a probe file (written and
 * removed). A base that does not exist is not created here (a NAS that is not
 * mounted would otherwise be replaced by a directory on the local disk): the
 * nearest existing parent must be writable, and the answer says the first
 * backup creates it — a warning unless it is inside the data directory (the
 * default `<data>/backups` on a fresh install).
 */
async function checkLocalBase(base: string, dataDir: string, version: string): Promise<DoctorCheck> {
  const fix = 'set AIQSO_BACKUP_REPOSITORY to a writable directory (or mount the NAS it names)';
  const resolved = path.resolve(base);
  const { dir, isDir } = await nearestExisting(resolved);
  if (!isDir)
    return {
      part: 'backups',
      status: 'failed',
      detail: `${base}: ${dir} is a file, not a directory`,
      fix,
    };
  if (dir === resolved) {
    const probe = path.join(resolved, `.doctor-${randomBytes(6).toString('hex')}`);
    try {
      await writeFile(probe, 'probe', { mode: 0o600 });
      await rm(probe);
    } catch (err) {
      return { part: 'backups', status: 'failed', detail: fsProblem(err, base), fix };
    }
    return { part: 'backups', status: 'ok', detail: `${version}; ${base} is writable` };
  }
  try {
    await access(dir, constants.W_OK);
  } catch (err) {
    return {
      part: 'backups',
      status: 'failed',
      detail: `${base} does not exist, and ${fsProblem(err, dir)} to create it in`,
      fix,
    };
  }
  const inDataDir = (resolved + path.sep).startsWith(path.resolve(dataDir) + path.sep);
  return inDataDir
    ? {
        part: 'backups',
        status: 'ok',
        detail: `${version}; ${base} does not exist yet, the first backup creates it (${dir} is writable)`,
      }
    : {
        part: 'backups',
        status: 'warning',
        detail: `${base} does not exist: the first backup creates it in ${dir}. If it is a NAS mount, it is not mounted`,
        fix: `mount it, or create ${base}`,
      };
}

/** Run `sftp` in batch mode with these commands on stdin; resolves with its exit code and stderr. */
function sftpBatch(args: string[], batch: string, home: string): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn('sftp', args, {
      env: { PATH: WORKLOAD_PATH, HOME: home },
      stdio: ['pipe', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr = (stderr + c).slice(-8192)));
    child.on('error', (err) => resolve({ code: 127, stderr: `cannot run sftp: ${err.message}` }));
    child.on('close', (code) => resolve({ code: code ?? 1, stderr }));
    child.stdin.on('error', () => undefined);
    child.stdin.end(batch);
  });
}

/** A file setting that must exist (and, for a private key, be readable by this user only). */
async function settingProblem(file: string, name: string, privateKey: boolean): Promise<string | undefined> {
  const found = await stat(file).catch((err: NodeJS.ErrnoException) => err);
  if (found instanceof Error)
    return found.code === 'ENOENT' ? `${name} ${file} does not exist` : fsProblem(found, `${name} ${file}`);
  if (!found.isFile()) return `${name} ${file} is not a file`;
  if (privateKey && (found.mode & 0o077) !== 0)
    return `${name} ${file} is readable by others (mode ${(found.mode & 0o777).toString(8)}) and ssh refuses it: chmod 600 ${file}`;
  return undefined;
}

/**
 * An sftp: base: the platform's ssh settings are files that exist, then a real
 * login in batch mode (the host key checked, never accepted) goes to the
 * directory and writes and removes a probe file there. Each failure is said in
 * words: host key unknown, login refused, directory missing, not writable.
 */
async function checkSftpBase(
  base: string,
  target: SftpTarget,
  ssh: SshSettings,
  dataDir: string,
  version: string,
): Promise<DoctorCheck> {
  const failed = (detail: string, fix: string): DoctorCheck => ({
    part: 'backups',
    status: 'failed',
    detail: `${base}: ${detail}`,
    fix,
  });
  // A missing known_hosts file is said with the refusal: an unreachable host is the first thing to fix.
  const known = await settingProblem(ssh.knownHosts, 'AIQSO_BACKUP_SSH_KNOWN_HOSTS', false);
  if (ssh.key) {
    const key = await settingProblem(ssh.key, 'AIQSO_BACKUP_SSH_KEY', true);
    if (key) return failed(key, 'set AIQSO_BACKUP_SSH_KEY to a private key file of mode 0600');
  }
  const dir = target.path.replace(/\/+$/, '') || '/';
  if (/["\n]/.test(dir)) return failed('the path holds a quote or a line break', 'rename the directory');
  const work = path.join(dataDir, 'restic-cache');
  await mkdir(work, { recursive: true });
  const name = `.doctor-${randomBytes(6).toString('hex')}`;
  const local = path.join(work, name);
  await writeFile(local, 'probe', { mode: 0o600 });
  const args = ['-b', '-', ...sshOptions(ssh)];
  if (target.port) args.push('-P', String(target.port));
  args.push(
    `${target.user ? `${target.user}@` : ''}${target.host.includes(':') ? `[${target.host}]` : target.host}`,
  );
  try {
    const { code, stderr } = await sftpBatch(
      args,
      `cd "${dir}"\nput "${local}" "${name}"\nrm "${name}"\n`,
      work,
    );
    if (code === 0)
      return { part: 'backups', status: 'ok', detail: `${version}; ${base} is reachable and writable` };
    if (/cannot run sftp/.test(stderr))
      return { ...failed(stderr.trim(), 'apt-get install openssh-client'), status: 'missing' };
    const said = sshProblem(stderr, target, ssh)?.replace(/is unknown: /, (m) =>
      known ? `${m}${known}; ` : m,
    );
    if (said)
      return failed(
        said,
        /unreachable/.test(said)
          ? 'check the NAS is on and its SSH service enabled, and the host and port in AIQSO_BACKUP_REPOSITORY'
          : /host key/.test(said)
            ? `check the NAS's host key fingerprint, then add it to ${ssh.knownHosts}`
            : 'set AIQSO_BACKUP_SSH_KEY to a key the NAS accepts for that user',
      );
    const last = stderr.trim().split('\n').slice(-2).join(' | ');
    if (
      /canonicalize|No such file|Can't change directory|is not a directory/i.test(stderr) &&
      !/dest open/.test(stderr)
    )
      return failed(
        `the directory ${dir} does not exist on ${target.host} (${last})`,
        `create ${dir} on the NAS (a shared folder the SSH user can write to), or fix the path in AIQSO_BACKUP_REPOSITORY`,
      );
    if (/dest open|Permission denied|Couldn't write/i.test(stderr))
      return failed(
        `${target.user ?? 'the SSH user'} cannot write in ${dir} on ${target.host} (${last})`,
        `give ${target.user ?? 'the SSH user'} write permission on ${dir} on the NAS`,
      );
    return failed(
      `sftp failed (${code}): ${last}`,
      'run the same login by hand: sftp ' + args.slice(2).join(' '),
    );
  } finally {
    await rm(local, { force: true });
  }
}

const BASE_FIX =
  'set AIQSO_BACKUP_REPOSITORY to a writable path or a reachable restic repository (sftp:, s3:, rest:)';
const CACERT_FIX =
  "set AIQSO_BACKUP_CACERT to the PEM file of the CA certificate that signed the server's certificate";

/** The fix for a remote backend that failed, by what its answer said. */
function remoteFix(err: unknown): string {
  const reason = err instanceof DomainError ? err.details?.reason : undefined;
  if (reason === 'credentials')
    return "set the backend's credentials (for s3: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY) to a key the server accepts, with write access to the bucket";
  if (reason === 'tls') return CACERT_FIX;
  if (reason === 'network') return 'check the server is up, and the host and port in AIQSO_BACKUP_REPOSITORY';
  return BASE_FIX;
}

/**
 * Another remote backend (s3:, rest: …): restic itself writes there. The base keeps a small
 * empty repository, `<base>/doctor-probe` (made on the first check); opening it with a lock writes
 * a lock file and removes it. A refused key, an untrusted certificate or an unreachable server is
 * said in words, with the fix.
 */
async function checkRemoteBase(base: string, restic: Restic, version: string): Promise<DoctorCheck> {
  const probe = { location: `${base.replace(/\/+$/, '')}/doctor-probe`, password: 'probe' };
  try {
    if (!(await restic.exists(probe))) await restic.init(probe);
    // Not --no-lock: the lock restic writes and removes is the probe.
    await restic.call(probe, ['list', 'keys']);
    return { part: 'backups', status: 'ok', detail: `${version}; ${base} is reachable and writable` };
  } catch (err) {
    return {
      part: 'backups',
      status: 'failed',
      detail: `${base}: ${(err as Error).message}`,
      fix: remoteFix(err),
    };
  }
}

/**
 * `aiqso doctor`: restic is installed and the backup repository base can be
 * used. A path must be writable (a probe file is written and removed; see
 * `checkLocalBase` for one that does not exist yet); a
 * sftp: base must take a probe file over a real login (`checkSftpBase`); another
 * remote backend must take restic's writes (`checkRemoteBase`).
 */
export async function checkBackupRepository(config: Config): Promise<DoctorCheck> {
  const base = config.backup.repository;
  const restic = resticFor(config);
  try {
    const version = (await restic.version()).split(' ').slice(0, 2).join(' ');
    if (isLocalBase(base)) return await checkLocalBase(base, config.dataDir, version);
    const sftp = parseSftp(base);
    if (sftp) return await checkSftpBase(base, sftp, config.backup.ssh, config.dataDir, version);
    if (config.backup.cacert) {
      const cacert = await settingProblem(config.backup.cacert, 'AIQSO_BACKUP_CACERT', false);
      if (cacert)
        return {
          part: 'backups',
          status: 'failed',
          detail: `${base}: ${cacert}`,
          fix: CACERT_FIX,
        };
    }
    return await checkRemoteBase(base, restic, version);
  } catch (err) {
    const missing = err instanceof DomainError && /cannot run restic/.test(err.message);
    return {
      part: 'backups',
      status: missing ? 'missing' : 'failed',
      detail: `${base}: ${(err as Error).message}`,
      fix: missing ? 'apt-get install restic' : BASE_FIX,
    };
  }
}
