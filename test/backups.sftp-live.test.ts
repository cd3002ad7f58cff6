import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from './support/cli.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import {
  dashboardLogin,
  driverCases,
  pollUntil,
  startLivePlatform,
  viaEdge,
} from './support/live-platform.ts';
import { sshdMissing, startSshd, type TestSshd } from './support/sshd.ts';

/**
 * An operator's backup and restore of a tenant's service against a real
 * `aiqso up` (process driver) whose backup repository is on a NAS over SFTP
 * (a real sshd on 127.0.0.1): note A → `aiqso backups run` → note B →
 * `aiqso restore service` → Notes answers with A and without B; `aiqso doctor`
 * says the repository is reachable and writable.
 */
const skip = sshdMissing();
let dir: string;
let sshd: TestSshd;
let testDb: TestDatabase;

const EMAIL = 'owner@acme.test';
const PASSWORD = 'correct horse battery staple';
const BROWSER = { accept: 'text/html,application/xhtml+xml' };

describe.skipIf(skip)(
  'backup and restore of a service to a NAS over SFTP, end to end',
  { timeout: 600_000 },
  () => {
    beforeAll(async () => {
      dir = await mkdtemp(path.join(os.tmpdir(), 'aiqso-sftp-live-'));
      sshd = await startSshd(path.join(dir, 'sshd'));
      testDb = await createTestDatabase();
    }, 120_000);
    afterAll(async () => {
      await testDb?.drop();
      await sshd?.stop();
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    it('process driver: note A, backup over SFTP, note B, restore → A without B', async () => {
      const nas = path.join(dir, 'nas');
      await mkdir(nas);
      const base = `sftp://${sshd.user}@127.0.0.1:${sshd.port}/${nas}`;
      const platform = await startLivePlatform({
        databaseUrl: testDb.url,
        driver: driverCases().find((d) => d.name === 'process')!,
        env: {
          AIQSO_BACKUP_REPOSITORY: base,
          AIQSO_BACKUP_SSH_KEY: sshd.clientKey,
          AIQSO_BACKUP_SSH_KNOWN_HOSTS: sshd.knownHosts,
        },
      });
      const { port } = platform;
      const host = `acme.localhost:${port}`;
      const cli = (args: string[]) => runCli(args, platform.env, 180_000);
      try {
        const signup = await platform.signup({
          company: 'Acme Widgets',
          slug: 'acme',
          email: EMAIL,
          password: PASSWORD,
        });
        expect(signup.status).toBe(201);
        await fetch(`${signup.checkoutUrl}/pay`, { method: 'POST', redirect: 'manual' });
        expect((await platform.until('acme', (p) => p.status === 200, 180_000)).status).toBe(200);
        const login = await fetch(`http://127.0.0.1:${port}/api/v1/auth/login`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ email: EMAIL, password: PASSWORD }),
        });
        const { accessToken } = (await login.json()) as { accessToken: string };
        const subscribed = await fetch(`http://127.0.0.1:${port}/api/v1/tenants/acme/services`, {
          method: 'POST',
          headers: { authorization: `Bearer ${accessToken}`, 'content-type': 'application/json' },
          body: JSON.stringify({ service: 'notes' }),
        });
        expect(subscribed.status).toBe(202);
        await pollUntil(
          () => testDb.db.selectFrom('tenant_services').select('status').executeTakeFirstOrThrow(),
          (r) => r.status === 'active',
          180_000,
        );
        const { cookies: cookie } = await dashboardLogin(host, port, EMAIL, PASSWORD, '/notes/');
        const note = (body: string) =>
          viaEdge(host, port, {
            method: 'POST',
            path: '/notes/',
            headers: { cookie, 'content-type': 'application/x-www-form-urlencoded' },
            body: `body=${encodeURIComponent(body)}`,
          });
        const page = async () =>
          (await viaEdge(host, port, { path: '/notes/', headers: { ...BROWSER, cookie } })).body;

        const doctor = await cli(['doctor', '--json']);
        expect(doctor.stdout).toContain(`${base} is reachable and writable`);

        expect((await note('Note A before the backup')).status).toBe(303);
        const run = await cli(['backups', 'run', '--tenant', 'acme', '--json']);
        expect(run.stderr).toBe('');
        expect(run.code, run.stdout).toBe(0);

        const listed = await cli(['backups', 'list', '--tenant', 'acme', '--json']);
        expect(listed.code).toBe(0);
        const backups = (JSON.parse(listed.stdout) as { backups: Record<string, unknown>[] }).backups;
        const database = backups.find((b) => b.kind === 'database')!;
        expect(database).toMatchObject({
          tenant: 'acme',
          service: 'notes',
          rowCounts: { 'public.drafts': 1 },
        });
        // The tenant's repository is on the NAS.
        const tenant = await testDb.db
          .selectFrom('tenants')
          .select('id')
          .where('slug', '=', 'acme')
          .executeTakeFirstOrThrow();
        expect(await readdir(path.join(nas, 'tenants', tenant.id))).toEqual(
          expect.arrayContaining(['config', 'snapshots']),
        );

        expect((await note('Note B after the backup')).status).toBe(303);
        expect(await page()).toContain('Note B after the backup');

        const restored = await cli(['restore', 'service', 'acme', 'notes', '--json']);
        expect(restored.stderr).toBe('');
        expect(restored.code, restored.stdout).toBe(0);
        expect(JSON.parse(restored.stdout)).toMatchObject({ snapshot: database.snapshot, status: 'done' });
        const after = await page();
        expect(after).toContain('Note A before the backup');
        expect(after).not.toContain('Note B after the backup');
      } finally {
        await platform.stop(testDb.db);
        await rm(platform.dataDir, { recursive: true, force: true });
      }
    });
  },
);
