import { execFile, spawn } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkBackupRepository } from '../src/backup/doctor.ts';
import { Restic } from '../src/backup/restic.ts';
import { loadConfig } from '../src/config/load.ts';
import { newId } from '../src/core/ids.ts';
import { loadCatalog } from '../src/catalog/load.ts';
import { syncCatalog } from '../src/catalog/sync.ts';
import { backupEngine } from '../src/platform/backups.ts';
import { recordSnapshot } from './support/backups.ts';
import { createHarness, type Harness } from './support/identity.ts';
import { sshdMissing, startSshd, type TestSshd } from './support/sshd.ts';

const exec = promisify(execFile);

/**
 * A backup repository on a NAS over SFTP, against a real OpenSSH server on
 * 127.0.0.1: a tenant's service database (a real PostgreSQL database, dumped
 * with pg_dump) is backed up into its repository under the sftp: base, listed
 * through the API, and restored into a fresh database with the same rows.
 * Bad paths: a key the server refuses, a host key not in the platform's
 * known_hosts, a changed host key, a directory that does not exist, one on a
 * read-only mount, a key file others can read, a closed port — each a clear
 * refusal from restic's calls or from `aiqso doctor`.
 */
const skip = sshdMissing();
const TEST_DB = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

let dir: string;
let sshd: TestSshd;
let nas: string;
let base: string;
let h: Harness;
const created: string[] = [];

const withDb = (name: string) => {
  const url = new URL(TEST_DB);
  url.pathname = `/${name}`;
  return url.toString();
};
async function admin<T>(fn: (c: pg.Client) => Promise<T>, url = TEST_DB): Promise<T> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

/** The doctor's answer for this sftp base and these ssh settings. */
const doctor = (repository: string, env: Record<string, string>) =>
  checkBackupRepository(loadConfig({ AIQSO_DATA_DIR: dir, AIQSO_BACKUP_REPOSITORY: repository, ...env }));

describe.skipIf(skip)('backups on a NAS over SFTP (real sshd)', { timeout: 180_000 }, () => {
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'aiqso-sftp-'));
    sshd = await startSshd(path.join(dir, 'sshd'));
    nas = path.join(dir, 'nas', 'backups');
    await mkdir(nas, { recursive: true });
    base = `sftp://${sshd.user}@127.0.0.1:${sshd.port}/${nas}`;
    h = await createHarness({
      env: {
        AIQSO_BACKUP_REPOSITORY: base,
        AIQSO_BACKUP_SSH_KEY: sshd.clientKey,
        AIQSO_BACKUP_SSH_KNOWN_HOSTS: sshd.knownHosts,
      },
    });
    await syncCatalog(h.db.db, loadCatalog());
  }, 120_000);
  afterAll(async () => {
    await h?.close();
    await sshd?.stop();
    for (const name of created)
      await admin((c) => c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`)).catch(() => undefined);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const good = () => ({
    AIQSO_BACKUP_SSH_KEY: sshd.clientKey,
    AIQSO_BACKUP_SSH_KNOWN_HOSTS: sshd.knownHosts,
  });

  it('doctor: the NAS directory is reachable and writable, and nothing is left behind', async () => {
    const check = await doctor(base, good());
    expect(check, sshd.log()).toMatchObject({ part: 'backups', status: 'ok' });
    expect(check.detail).toBe(`${check.detail.split(';')[0]}; ${base} is reachable and writable`);
    expect(check.detail).toMatch(/^restic \d+\.\d+\.\d+; /);
    expect(await readdir(nas)).toEqual([]);
  });

  it("backs up a tenant's service database to the SFTP repository, lists and restores it", async () => {
    // The tenant's service database: a real one, with rows.
    const source = `aiqso_sftp_src_${Date.now()}`;
    const target = `aiqso_sftp_dst_${Date.now()}`;
    created.push(source, target);
    await admin((c) => c.query(`CREATE DATABASE "${source}"`));
    await admin(async (c) => {
      await c.query('CREATE TABLE drafts (id int PRIMARY KEY, body text NOT NULL)');
      await c.query("INSERT INTO drafts VALUES (1, 'Note A before the backup'), (2, 'Note B, ünïcode')");
    }, withDb(source));
    const { stdout: dump } = await exec('pg_dump', ['--no-owner', '--no-privileges', withDb(source)], {
      maxBuffer: 16 << 20,
    });
    expect(dump).toContain('Note A before the backup');

    const serviceId = (
      await h.db.db.selectFrom('services').select('id').where('key', '=', 'notes').executeTakeFirstOrThrow()
    ).id;
    const tenantServiceId = newId('tenantService');
    await h.db.db
      .insertInto('tenant_services')
      .values({ id: tenantServiceId, tenant_id: h.a.id, service_id: serviceId, status: 'active' })
      .execute();
    const snapshot = await recordSnapshot(h, {
      tenantId: h.a.id,
      tenantServiceId,
      runId: `run_${h.a.id}`,
      content: dump,
      rowCounts: { 'public.drafts': 2 },
    });

    // The repository is on the NAS, under tenants/<tenant id>, and restic's files are there.
    const { restic, keys } = backupEngine(h.config, h.db.db);
    const repo = await keys.forTenant(h.a.id);
    expect(repo.location).toBe(`${base}/tenants/${h.a.id}`);
    expect((await readdir(path.join(nas, 'tenants', h.a.id))).sort()).toEqual(
      expect.arrayContaining(['config', 'data', 'index', 'keys', 'snapshots']),
    );

    // Listed: by restic over SFTP, and by the tenant's API.
    const snaps = await restic.snapshots(repo, [`tenant=${h.a.id}`]);
    expect(snaps.map((s) => s.id)).toEqual([snapshot]);
    const res = await h.api.inject({
      method: 'GET',
      url: `/api/v1/tenants/${h.a.slug}/backups`,
      headers: h.bearer(h.a.owner.token),
    });
    expect(res.statusCode).toBe(200);
    const { backups } = res.json<{ backups: { snapshot: string; rowCounts: Record<string, number> }[] }>();
    expect(backups.map((b) => b.snapshot)).toEqual([snapshot]);

    // Restored: the dump read back over SFTP into a fresh database has the same rows.
    await admin((c) => c.query(`CREATE DATABASE "${target}"`));
    const psql = spawn('psql', ['-q', '-v', 'ON_ERROR_STOP=1', withDb(target)], {
      stdio: ['pipe', 'ignore', 'pipe'],
    });
    let psqlErr = '';
    psql.stderr.setEncoding('utf8').on('data', (c: string) => (psqlErr += c));
    const done = new Promise<number>((resolve) => psql.on('close', (code) => resolve(code ?? 1)));
    const pipe = new PassThrough();
    pipe.pipe(psql.stdin);
    await restic.dump(repo, snapshot, '/database.dump', pipe);
    pipe.end();
    expect(await done, psqlErr).toBe(0);
    const rows = await admin((c) => c.query('SELECT id, body FROM drafts ORDER BY id'), withDb(target));
    expect(rows.rows).toEqual([
      { id: 1, body: 'Note A before the backup' },
      { id: 2, body: 'Note B, ünïcode' },
    ]);
  });

  it('refuses a key the NAS does not accept, in words (restic and doctor)', async () => {
    const env = { AIQSO_BACKUP_SSH_KEY: sshd.strangerKey, AIQSO_BACKUP_SSH_KNOWN_HOSTS: sshd.knownHosts };
    const config = loadConfig({ AIQSO_DATA_DIR: dir, AIQSO_BACKUP_REPOSITORY: base, ...env });
    const restic = new Restic({ cacheDir: path.join(dir, 'cache'), ssh: config.backup.ssh });
    const err = await restic.exists({ location: `${base}/tenants/x`, password: 'p' }).catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toBe(
      `[127.0.0.1]:${sshd.port} refused the login of ${sshd.user} with the key ${sshd.strangerKey} (AIQSO_BACKUP_SSH_KEY): add its public key to that user's authorized_keys on the NAS`,
    );
    const check = await doctor(base, env);
    expect(check).toMatchObject({ part: 'backups', status: 'failed' });
    expect(check.detail).toBe(`${base}: ${(err as Error).message}`);
    expect(check.fix).toMatch(/AIQSO_BACKUP_SSH_KEY/);
  });

  it('names the refused login even when restic exits before passing on what its ssh printed', async () => {
    // restic forwards its ssh's stderr through a reader of its own and can exit first, leaving only
    // this line: a stand-in restic that prints just that, as the real one sometimes does.
    const lossy = path.join(dir, 'lossy-restic');
    await writeFile(
      lossy,
      `#!/bin/sh\necho "Fatal: unable to open repository at ${base}/tenants/x: unable to start the sftp session, error: EOF" >&2\nexit 1\n`,
    );
    await chmod(lossy, 0o755);
    const env = { AIQSO_BACKUP_SSH_KEY: sshd.strangerKey, AIQSO_BACKUP_SSH_KNOWN_HOSTS: sshd.knownHosts };
    const config = loadConfig({ AIQSO_DATA_DIR: dir, AIQSO_BACKUP_REPOSITORY: base, ...env });
    const restic = new Restic({ binary: lossy, cacheDir: path.join(dir, 'cache'), ssh: config.backup.ssh });
    const err = await restic.exists({ location: `${base}/tenants/x`, password: 'p' }).catch((e: Error) => e);
    expect((err as Error).message).toBe(
      `[127.0.0.1]:${sshd.port} refused the login of ${sshd.user} with the key ${sshd.strangerKey} (AIQSO_BACKUP_SSH_KEY): add its public key to that user's authorized_keys on the NAS`,
    );
    // With a key the NAS accepts, ssh has nothing to say: restic's own line is what is reported.
    const accepted = new Restic({
      binary: lossy,
      cacheDir: path.join(dir, 'cache'),
      ssh: loadConfig({
        AIQSO_DATA_DIR: dir,
        AIQSO_BACKUP_REPOSITORY: base,
        AIQSO_BACKUP_SSH_KEY: sshd.clientKey,
        AIQSO_BACKUP_SSH_KNOWN_HOSTS: sshd.knownHosts,
      }).backup.ssh,
    });
    const other = await accepted
      .exists({ location: `${base}/tenants/x`, password: 'p' })
      .catch((e: Error) => e);
    expect((other as Error).message).toMatch(
      /^backup repository unreachable: .*unable to start the sftp session/,
    );
  });

  it('refuses a host key that is not in the platform’s known_hosts, never accepting it', async () => {
    const empty = path.join(dir, 'empty_known_hosts');
    await exec('touch', [empty]);
    const env = { AIQSO_BACKUP_SSH_KEY: sshd.clientKey, AIQSO_BACKUP_SSH_KNOWN_HOSTS: empty };
    const config = loadConfig({ AIQSO_DATA_DIR: dir, AIQSO_BACKUP_REPOSITORY: base, ...env });
    const restic = new Restic({ cacheDir: path.join(dir, 'cache'), ssh: config.backup.ssh });
    const err = (await restic
      .exists({ location: `${base}/tenants/x`, password: 'p' })
      .catch((e: Error) => e)) as Error;
    expect(err).toBeInstanceOf(Error);
    expect(err.message).toMatch(
      new RegExp(`^the host key of \\[127\\.0\\.0\\.1\\]:${sshd.port} is unknown: it is not in ${empty}`),
    );
    expect(err.message).toContain(`ssh-keyscan -p ${sshd.port} 127.0.0.1 >> ${empty}`);
    const check = await doctor(base, env);
    expect(check).toMatchObject({ part: 'backups', status: 'failed' });
    expect(check.detail).toMatch(/host key of .* is unknown/);
    expect(check.fix).toMatch(/fingerprint/);
    // Nothing was added to the file: the key was not accepted on first sight.
    expect((await exec('cat', [empty])).stdout).toBe('');

    // No known_hosts file at all (the default under the data directory): the same refusal, saying so.
    const none = await doctor(base, { AIQSO_BACKUP_SSH_KEY: sshd.clientKey });
    expect(none.status).toBe('failed');
    expect(none.detail).toContain(
      `AIQSO_BACKUP_SSH_KNOWN_HOSTS ${path.join(dir, 'ssh', 'known_hosts')} does not exist`,
    );
  });

  it('refuses a changed host key', async () => {
    const env = { AIQSO_BACKUP_SSH_KEY: sshd.clientKey, AIQSO_BACKUP_SSH_KNOWN_HOSTS: sshd.wrongKnownHosts };
    const check = await doctor(base, env);
    expect(check).toMatchObject({ part: 'backups', status: 'failed' });
    expect(check.detail).toMatch(/is not the one in .*wrong_known_hosts.*it changed, refused/);
  });

  it('doctor: a directory missing on the NAS, and a key file others can read', async () => {
    const missing = `sftp://${sshd.user}@127.0.0.1:${sshd.port}/${path.join(dir, 'nas', 'nope')}`;
    const check = await doctor(missing, good());
    expect(check).toMatchObject({ part: 'backups', status: 'failed' });
    expect(check.detail).toMatch(
      new RegExp(`the directory ${path.join(dir, 'nas', 'nope')} does not exist on 127\\.0\\.0\\.1`),
    );
    expect(check.fix).toMatch(/create .* on the NAS/);

    const loose = path.join(dir, 'loose_key');
    await exec('cp', [sshd.clientKey, loose]);
    await exec('chmod', ['644', loose]);
    const open = await doctor(base, { ...good(), AIQSO_BACKUP_SSH_KEY: loose });
    expect(open).toMatchObject({ status: 'failed' });
    expect(open.detail).toMatch(/readable by others \(mode 644\).*chmod 600/);
  });

  it('doctor: a NAS directory the user cannot write (a real read-only mount)', async () => {
    const ro = path.join(dir, 'nas', 'ro');
    await mkdir(ro);
    await exec('mount', ['-t', 'tmpfs', '-o', 'ro,size=1m', 'aiqso-sftp-ro', ro]);
    try {
      const check = await doctor(`sftp://${sshd.user}@127.0.0.1:${sshd.port}/${ro}`, good());
      expect(check).toMatchObject({ part: 'backups', status: 'failed' });
      expect(check.detail).toMatch(new RegExp(`${sshd.user} cannot write in ${ro} on 127\\.0\\.0\\.1`));
      expect(check.fix).toBe(`give ${sshd.user} write permission on ${ro} on the NAS`);
    } finally {
      await exec('umount', [ro]);
    }
  });

  it('refuses a closed port as unreachable', async () => {
    const closed = `sftp://${sshd.user}@127.0.0.1:1/${nas}`;
    const check = await doctor(closed, good());
    expect(check).toMatchObject({ status: 'failed' });
    expect(check.detail).toMatch(
      /backup repository unreachable: ssh to \[127\.0\.0\.1\]:1: .*Connection refused/,
    );
  });
});
