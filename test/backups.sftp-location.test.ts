import { describe, expect, it } from 'vitest';
import { parseSftp, sftpCommand, sshProblem } from '../src/backup/sftp.ts';
import { loadConfig } from '../src/config/load.ts';

/**
 * How an sftp: repository location is read (restic's two spellings), the ssh
 * command restic is given for it, and the settings that cannot be passed.
 */
describe('sftp: locations and the ssh command', () => {
  it("reads restic's two spellings, and nothing else", () => {
    expect(parseSftp('sftp:aiqso@nas.lan:/volume1/aiqso/tenants/x')).toEqual({
      user: 'aiqso',
      host: 'nas.lan',
      path: '/volume1/aiqso/tenants/x',
    });
    expect(parseSftp('sftp:nas.lan:backups')).toEqual({ host: 'nas.lan', path: 'backups' });
    expect(parseSftp('sftp://aiqso@nas.lan:2222//volume1/aiqso')).toEqual({
      user: 'aiqso',
      host: 'nas.lan',
      port: 2222,
      path: '/volume1/aiqso',
    });
    expect(parseSftp('sftp://[fd00::5]:22/rel')).toEqual({ host: 'fd00::5', port: 22, path: 'rel' });
    expect(parseSftp('/srv/backups')).toBeUndefined();
    expect(parseSftp('s3:host/bucket')).toBeUndefined();
    expect(parseSftp('rest:https://host/')).toBeUndefined();
  });

  it('gives ssh in batch mode, strict host keys against the platform file, only its key', () => {
    const cmd = sftpCommand(
      { user: 'aiqso', host: 'nas.lan', port: 2222, path: '/x' },
      { key: '/etc/aiqso/key', knownHosts: '/etc/aiqso/known_hosts' },
    );
    expect(cmd.split(' ')).toEqual([
      'ssh',
      '-F',
      '/dev/null',
      '-o',
      'BatchMode=yes',
      '-o',
      'StrictHostKeyChecking=yes',
      '-o',
      'UserKnownHostsFile=/etc/aiqso/known_hosts',
      '-o',
      'GlobalKnownHostsFile=/dev/null',
      '-o',
      'UpdateHostKeys=no',
      '-o',
      'ConnectTimeout=15',
      '-o',
      'ServerAliveInterval=30',
      '-o',
      'IdentitiesOnly=yes',
      '-i',
      '/etc/aiqso/key',
      '-p',
      '2222',
      '-l',
      'aiqso',
      'nas.lan',
      '-s',
      'sftp',
    ]);
    expect(() => sftpCommand({ host: 'nas', path: '/x' }, { key: '/a b', knownHosts: '/k' })).toThrow(
      /cannot pass "\/a b" to ssh/,
    );
  });

  it('refuses settings restic could not pass, naming them', () => {
    expect(() => loadConfig({ AIQSO_BACKUP_SSH_KEY: '/etc/my key' })).toThrow(
      /AIQSO_BACKUP_SSH_KEY.*without spaces/,
    );
    expect(() => loadConfig({ AIQSO_BACKUP_SSH_KNOWN_HOSTS: "/etc/it's" })).toThrow(
      /AIQSO_BACKUP_SSH_KNOWN_HOSTS.*without spaces or quotes/,
    );
    const config = loadConfig({ AIQSO_DATA_DIR: '/var/lib/aiqso', AIQSO_BACKUP_SSH_KEY: '/etc/aiqso/key' });
    expect(config.backup.ssh).toEqual({
      key: '/etc/aiqso/key',
      knownHosts: '/var/lib/aiqso/ssh/known_hosts',
    });
  });

  it('says what ssh refused, and leaves other failures to the caller', () => {
    const target = { user: 'aiqso', host: 'nas.lan', path: '/x' };
    const ssh = { knownHosts: '/k' };
    expect(sshProblem('aiqso@nas.lan: Permission denied (publickey).', target, ssh)).toMatch(
      /AIQSO_BACKUP_SSH_KEY is not set/,
    );
    expect(
      sshProblem('ssh: Could not resolve hostname nas.lan: Name or service not known', target, ssh),
    ).toBe(
      'backup repository unreachable: ssh to nas.lan: Could not resolve hostname nas.lan: Name or service not known',
    );
    expect(sshProblem('Fatal: wrong password or no key found', target, ssh)).toBeUndefined();
  });
});
