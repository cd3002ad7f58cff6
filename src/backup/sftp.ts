import { run, WORKLOAD_PATH } from '../compute/shared/run.ts';

/**
 * SFTP repositories (a NAS's SSH login): restic starts `ssh` itself, so the
 * platform hands it the whole command (`-o sftp.command=…`, restic 0.14 has
 * no `sftp.args`): never interactive (BatchMode), the host key checked against
 * the platform's own known_hosts file and never accepted on first sight, the
 * platform's identity file and nothing from a user's ~/.ssh. Only paths reach
 * argv, never key material.
 */
export interface SshSettings {
  /** Private key file (mode 0600); unset means no identity is offered. */
  key?: string;
  /** The platform's known_hosts file: the server's host key must be in it. */
  knownHosts: string;
}

export interface SftpTarget {
  user?: string;
  host: string;
  port?: number;
  /** Directory on the server, as restic takes it (absolute, or relative to the login's home). */
  path: string;
}

/** `sftp:[user@]host:/path` or `sftp://[user@]host[:port]//path`, as restic spells them; undefined when not sftp. */
export function parseSftp(location: string): SftpTarget | undefined {
  const url = /^sftp:\/\/(?:([^@/\s]+)@)?(\[[0-9a-fA-F:.]+\]|[^:/\s[\]]+)(?::(\d{1,5}))?\/(.+)$/.exec(
    location,
  );
  if (url) {
    const port = url[3] ? Number(url[3]) : undefined;
    return {
      ...(url[1] ? { user: url[1] } : {}),
      host: url[2]!.replace(/^\[|\]$/g, ''),
      ...(port ? { port } : {}),
      path: url[4]!,
    };
  }
  const short = /^sftp:(?:([^@/\s]+)@)?(\[[0-9a-fA-F:.]+\]|[^:/\s[\]]+):(.+)$/.exec(location);
  if (!short || short[2]!.startsWith('/')) return undefined;
  return {
    ...(short[1] ? { user: short[1] } : {}),
    host: short[2]!.replace(/^\[|\]$/g, ''),
    path: short[3]!,
  };
}

/** The ssh options both restic's connection and doctor's probe use. */
export function sshOptions(ssh: SshSettings): string[] {
  const args = [
    '-F',
    '/dev/null',
    '-o',
    'BatchMode=yes',
    '-o',
    'StrictHostKeyChecking=yes',
    '-o',
    `UserKnownHostsFile=${ssh.knownHosts}`,
    '-o',
    'GlobalKnownHostsFile=/dev/null',
    '-o',
    'UpdateHostKeys=no',
    '-o',
    'ConnectTimeout=15',
    '-o',
    'ServerAliveInterval=30',
  ];
  if (ssh.key) args.push('-o', 'IdentitiesOnly=yes', '-i', ssh.key);
  return args;
}

/** ssh with the platform's options, the login, and the sftp subsystem, as an argv array. */
function sftpArgv(target: SftpTarget, ssh: SshSettings): string[] {
  const argv = ['ssh', ...sshOptions(ssh)];
  if (target.port) argv.push('-p', String(target.port));
  if (target.user) argv.push('-l', target.user);
  argv.push(target.host, '-s', 'sftp');
  return argv;
}

/** restic's `sftp.command`: `sftpArgv` as one string. */
export function sftpCommand(target: SftpTarget, ssh: SshSettings): string {
  const argv = sftpArgv(target, ssh);
  // restic splits the command at spaces; the settings' paths are validated to hold none.
  for (const a of argv)
    if (/[\s'"\\]/.test(a)) throw new Error(`cannot pass ${JSON.stringify(a)} to ssh through restic`);
  return argv.join(' ');
}

/**
 * ssh's own account of a login to the repository's server: restic forwards
 * what its ssh prints through a reader of its own and may exit before that
 * line is passed on, leaving only "unable to start the sftp session, error:
 * EOF". This makes the same connection (same options, the sftp subsystem,
 * nothing sent) and returns what ssh printed; '' when it could not tell.
 */
export async function sshLoginStderr(target: SftpTarget, ssh: SshSettings): Promise<string> {
  const [program, ...args] = sftpArgv(target, ssh);
  const r = await run(program!, args, {
    env: { PATH: WORKLOAD_PATH },
    timeoutMs: 30_000,
  }).catch(() => undefined);
  return r?.stderr ?? '';
}

/** What ssh's stderr says went wrong, in words; undefined when it is not an ssh failure. */
export function sshProblem(stderr: string, target: SftpTarget, ssh: SshSettings): string | undefined {
  const where = target.port ? `[${target.host}]:${target.port}` : target.host;
  const keyscan = `ssh-keyscan ${target.port ? `-p ${target.port} ` : ''}${target.host} >> ${ssh.knownHosts}`;
  if (/REMOTE HOST IDENTIFICATION HAS CHANGED/.test(stderr))
    return `the host key of ${where} is not the one in ${ssh.knownHosts} (AIQSO_BACKUP_SSH_KNOWN_HOSTS): it changed, refused. If the NAS was really re-installed, check its new fingerprint and replace its line there`;
  if (/Host key verification failed|host key is known for .* strict checking/i.test(stderr))
    return `the host key of ${where} is unknown: it is not in ${ssh.knownHosts} (AIQSO_BACKUP_SSH_KNOWN_HOSTS), and unknown keys are never accepted. Check the NAS's fingerprint, then add it: ${keyscan}`;
  if (/UNPROTECTED PRIVATE KEY FILE|bad permissions/i.test(stderr))
    return `the key ${ssh.key} (AIQSO_BACKUP_SSH_KEY) is readable by others and ssh refuses it: chmod 600 ${ssh.key}`;
  if (/Permission denied \(/.test(stderr))
    return ssh.key
      ? `${where} refused the login${target.user ? ` of ${target.user}` : ''} with the key ${ssh.key} (AIQSO_BACKUP_SSH_KEY): add its public key to that user's authorized_keys on the NAS`
      : `${where} refused the login: AIQSO_BACKUP_SSH_KEY is not set (the path of a private key whose public key is in the user's authorized_keys on the NAS)`;
  const unreachable =
    /Could not resolve hostname[^\n]*|Connection refused|Connection timed out|No route to host|Network is unreachable|Connection closed by[^\n]*/i.exec(
      stderr,
    );
  if (unreachable) return `backup repository unreachable: ssh to ${where}: ${unreachable[0].trim()}`;
  return undefined;
}
