import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openDatabase } from '../src/db/database.ts';
import { runCli } from './support/cli.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import { driverCases, startLivePlatform } from './support/live-platform.ts';

/**
 * Disaster recovery of the master database, with real restic and real
 * PostgreSQL: a platform with a live tenant → `aiqso backups run --platform`
 * (pg_dump of the master database into the platform repository, whose key is
 * derived from the master key) → the platform and its data dir gone →
 * `aiqso restore platform --snapshot` into a new, empty database from an
 * empty data dir with only the master key and the repository → the restored
 * database has the tenant and `aiqso up` on it serves it. Refusals (unknown
 * snapshot, a database that is not empty, no master key, a repository that
 * is not there) change nothing.
 */
let testDb: TestDatabase;
const extra: string[] = [];
beforeEach(async () => {
  testDb = await createTestDatabase();
});
afterEach(async () => {
  for (const name of extra.splice(0))
    await testDb.pool.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
  await testDb.drop();
});

const processDriver = driverCases().find((d) => d.name === 'process')!;

async function emptyDatabase(): Promise<string> {
  const name = `aiqso_dr_${randomBytes(5).toString('hex')}`;
  await testDb.pool.query(`CREATE DATABASE "${name}"`);
  extra.push(name);
  const url = new URL(testDb.url);
  url.pathname = `/${name}`;
  return url.toString();
}

describe('aiqso restore platform', { timeout: 600_000 }, () => {
  it('rebuilds a working platform from the platform repository into an empty database', async () => {
    const first = await startLivePlatform({ databaseUrl: testDb.url, driver: processDriver });
    const cleanup: string[] = [first.dataDir];
    let firstRunning = true;
    try {
      const signup = await first.signup({ company: 'Acme Widgets', slug: 'acme', email: 'owner@acme.test' });
      expect(signup.status).toBe(201);
      await fetch(`${signup.checkoutUrl}/pay`, { method: 'POST', redirect: 'manual' });
      expect((await first.until('acme', (p) => p.status === 200, 180_000)).status).toBe(200);

      const backedUp = await runCli(['backups', 'run', '--platform', '--json'], first.env, 120_000);
      expect(backedUp.stderr).toBe('');
      expect(backedUp.code, backedUp.stdout).toBe(0);
      const platform = (JSON.parse(backedUp.stdout) as { platform: { snapshot: string; location: string } })
        .platform;
      expect(platform.snapshot).toMatch(/^[0-9a-f]{64}$/);
      expect(platform.location.startsWith(path.join(first.dataDir, 'backups', 'platform'))).toBe(true);
      const recorded = await testDb.db.selectFrom('platform_backups').selectAll().execute();
      expect(recorded).toEqual([expect.objectContaining({ snapshot_id: platform.snapshot })]);
      expect(Number(recorded[0]!.size_bytes)).toBeGreaterThan(0);

      const masterKey = (await readFile(path.join(first.dataDir, 'master.key'), 'utf8')).trim();
      const repositoryBase = path.join(first.dataDir, 'backups');
      await first.stop(testDb.db);
      firstRunning = false;

      // A new machine: an empty data dir, a new empty database, the master key and the repository.
      const dataDir = await mkdtemp(path.join(os.tmpdir(), 'aiqso-dr-'));
      cleanup.push(dataDir);
      const target = await emptyDatabase();
      const env = {
        AIQSO_DATA_DIR: dataDir,
        DATABASE_URL: target,
        AIQSO_MASTER_KEY: masterKey,
        AIQSO_BACKUP_REPOSITORY: repositoryBase,
        AIQSO_DRIVER: 'process',
      };
      const restore = (args: string[], e: Record<string, string> = env) =>
        runCli(['restore', 'platform', ...args], e, 180_000);
      const tables = async (url: string) => {
        const h = openDatabase(url, { max: 1 });
        try {
          const { rows } = await h.pool.query<{ n: string }>(
            "SELECT count(*) AS n FROM pg_tables WHERE schemaname = 'public'",
          );
          return Number(rows[0]!.n);
        } finally {
          await h.close();
        }
      };

      // Refusals first; the target stays empty.
      const unknown = await restore(['--snapshot', 'deadbeef']);
      expect(unknown.code).toBe(3);
      expect(unknown.stderr).toMatch(/no platform snapshot deadbeef/);
      const badId = await restore(['--snapshot', 'not-an-id']);
      expect(badId.code).toBe(2);
      const { AIQSO_MASTER_KEY: _key, ...keyless } = env;
      const noKey = await restore(['--snapshot', platform.snapshot], keyless);
      expect(noKey.code).toBe(2);
      expect(noKey.stderr).toMatch(/no master key/);
      const otherKey = await restore(['--snapshot', platform.snapshot], {
        ...env,
        AIQSO_MASTER_KEY: randomBytes(32).toString('base64'),
      });
      expect(otherKey.code).toBe(3);
      expect(otherKey.stderr).toMatch(/no platform repository .* for this master key/);
      const elsewhere = await restore(['--snapshot', platform.snapshot], {
        ...env,
        AIQSO_BACKUP_REPOSITORY: path.join(dataDir, 'nowhere'),
      });
      expect(elsewhere.code).toBe(3);
      const notEmpty = await restore(['--snapshot', platform.snapshot], { ...env, DATABASE_URL: testDb.url });
      expect(notEmpty.code).toBe(2);
      expect(notEmpty.stderr).toMatch(/already holds \d+ tables/);
      expect(await tables(target)).toBe(0);

      const restored = await restore(['--snapshot', platform.snapshot.slice(0, 8), '--json']);
      expect(restored.stderr).toBe('');
      expect(restored.code, restored.stdout).toBe(0);
      expect(JSON.parse(restored.stdout)).toMatchObject({ snapshot: platform.snapshot, tenants: 1 });
      const h = openDatabase(target, { max: 1 });
      try {
        const tenants = await h.db.selectFrom('tenants').select(['slug', 'status']).execute();
        expect(tenants).toEqual([{ slug: 'acme', status: 'active' }]);
        const audit = await h.db
          .selectFrom('audit_log')
          .select(['action', 'result'])
          .where('action', '=', 'platform.restored')
          .execute();
        expect(audit).toEqual([{ action: 'platform.restored', result: 'success' }]);
      } finally {
        await h.close();
      }
      // Into a database that is no longer empty, a second restore is refused.
      const twice = await restore(['--snapshot', platform.snapshot]);
      expect(twice.code).toBe(2);

      // `aiqso up` on the restored database serves the tenant again (its dashboard re-created).
      const second = await startLivePlatform({
        databaseUrl: target,
        driver: processDriver,
        env: { AIQSO_MASTER_KEY: masterKey, AIQSO_BACKUP_REPOSITORY: repositoryBase },
      });
      cleanup.push(second.dataDir);
      try {
        expect((await second.until('acme', (p) => p.status === 200, 180_000)).status).toBe(200);
      } finally {
        const h2 = openDatabase(target, { max: 2 });
        try {
          await second.stop(h2.db);
        } finally {
          await h2.close();
        }
      }
    } finally {
      if (firstRunning) await first.stop(testDb.db);
      for (const dir of cleanup) await rm(dir, { recursive: true, force: true });
    }
  });
});
