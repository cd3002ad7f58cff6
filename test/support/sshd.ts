import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { missingPart } from './strict.ts';

const exec = promisify(execFile);
export const SSHD = '/usr/sbin/sshd';

/** True when the test should skip for want of OpenSSH's server (throws in strict mode). */
export const sshdMissing = (): boolean =>
  missingPart('sshd (openssh-server)', existsSync(SSHD), 'apt-get install openssh-server');

export interface TestSshd {
  port: number;
  user: string;
  /** The client key the server accepts (mode 0600). */
  clientKey: string;
  /** A key the server does not accept. */
  strangerKey: string;
  /** A known_hosts file listing this server's host key. */
  knownHosts: string;
  /** A known_hosts file listing another key for the same host and port. */
  wrongKnownHosts: string;
  /** sshd's own log (stderr), for a failing test's message. */
  log(): string;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

const keygen = (file: string) =>
  exec('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'aiqso-test', '-f', file]);

/**
 * A private OpenSSH server on 127.0.0.1 (a free port) with its own host key,
 * one authorized client key made here, public-key logins only and the sftp
 * subsystem: what a NAS's SSH service offers. `stop()` ends it.
 */
export async function startSshd(dir: string): Promise<TestSshd> {
  await mkdir(dir, { recursive: true });
  for (const k of ['host_key', 'client_key', 'stranger_key', 'other_host_key'])
    await keygen(path.join(dir, k));
  await writeFile(path.join(dir, 'authorized_keys'), await readFile(path.join(dir, 'client_key.pub')), {
    mode: 0o600,
  });
  // sshd refuses to start without its privilege-separation directory.
  await mkdir('/run/sshd', { recursive: true, mode: 0o755 }).catch(() => undefined);
  const port = await freePort();
  const user = os.userInfo().username;
  const conf = path.join(dir, 'sshd_config');
  await writeFile(
    conf,
    [
      `Port ${port}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${path.join(dir, 'host_key')}`,
      `PidFile ${path.join(dir, 'sshd.pid')}`,
      `AuthorizedKeysFile ${path.join(dir, 'authorized_keys')}`,
      'PubkeyAuthentication yes',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'UsePAM no',
      'StrictModes no',
      'PermitRootLogin prohibit-password',
      `AllowUsers ${user}`,
      'Subsystem sftp internal-sftp',
      'LogLevel VERBOSE',
      '',
    ].join('\n'),
    { mode: 0o600 },
  );
  const hostLine = (pub: string) => `[127.0.0.1]:${port} ${pub.trim().split(' ').slice(0, 2).join(' ')}\n`;
  const knownHosts = path.join(dir, 'known_hosts');
  const wrongKnownHosts = path.join(dir, 'wrong_known_hosts');
  await writeFile(knownHosts, hostLine(await readFile(path.join(dir, 'host_key.pub'), 'utf8')));
  await writeFile(wrongKnownHosts, hostLine(await readFile(path.join(dir, 'other_host_key.pub'), 'utf8')));
  await chmod(path.join(dir, 'client_key'), 0o600);

  const child: ChildProcess = spawn(SSHD, ['-D', '-e', '-f', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (log = (log + c).slice(-16384)));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let gone = false;
  void exited.then(() => (gone = true));
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (gone) throw new Error(`sshd exited at start: ${log}`);
    const open = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => (s.destroy(), resolve(true)));
      s.once('error', () => resolve(false));
    });
    if (open) break;
    if (Date.now() > deadline) {
      child.kill('SIGTERM');
      throw new Error(`sshd did not listen on ${port}: ${log}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    port,
    user,
    clientKey: path.join(dir, 'client_key'),
    strangerKey: path.join(dir, 'stranger_key'),
    knownHosts,
    wrongKnownHosts,
    log: () => log,
    async stop() {
      if (!gone) child.kill('SIGTERM');
      await exited;
    },
  };
}
