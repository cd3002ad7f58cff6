import { execFile } from 'node:child_process';
import { readdir, readFile, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findPgDump } from '../src/services/final-backup.ts';
import { runCli } from './support/cli.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import { dashboardLogin, driverCases, pollUntil, startLivePlatform } from './support/live-platform.ts';
import { withDatabase } from './support/urls.ts';

const run = promisify(execFile);

/**
 * After `aiqso tenants purge --now`, nothing personal of the tenant is left:
 * not in the database (a full pg_dump of it), not in the data directory (mail
 * files, the final dump of its service), and the audit chain still verifies.
 * On a real `aiqso up` (process driver, files mailer, external PostgreSQL so
 * the data directory holds the platform's files only), with a service whose
 * database held the owner's address.
 */
const COMPANY = 'Quillfeather Botanicals';
const SLUG = 'quillfeather';
const OWNER = 'rosalind.quill@quillfeather-mail.test';
const MEMBER = 'basil.thorne@quillfeather-mail.test';
const PASSWORD = 'correct horse battery staple';

let testDb: TestDatabase;
beforeAll(async () => {
  testDb = await createTestDatabase();
});
afterAll(() => testDb?.drop());

/** Every regular file under `dir`, with its mode. */
async function filesUnder(dir: string): Promise<{ file: string; mode: number }[]> {
  const out: { file: string; mode: number }[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue;
    const file = path.join(entry.parentPath, entry.name);
    out.push({ file, mode: (await stat(file)).mode & 0o777 });
  }
  return out;
}

/** The files under `dir` whose bytes contain `needle`. */
async function filesContaining(dir: string, needle: string): Promise<string[]> {
  const found: string[] = [];
  for (const { file } of await filesUnder(dir)) {
    if ((await readFile(file)).includes(needle)) found.push(path.relative(dir, file));
  }
  return found;
}

async function databaseDump(): Promise<string> {
  const { stdout } = await run(await findPgDump(), ['--no-owner', '-d', testDb.url], {
    maxBuffer: 256 * 1024 * 1024,
  });
  return stdout;
}

describe('purge leaves nothing personal', { timeout: 300_000 }, () => {
  it('removes or anonymises every trace of the tenant and its people; the audit chain verifies', async () => {
    const driver = driverCases().find((d) => d.name === 'process')!;
    const platform = await startLivePlatform({
      databaseUrl: testDb.url,
      driver,
      env: { AIQSO_SERVICE_GRACE_HOURS: '0.001', AIQSO_RESYNC_SECONDS: '1', AIQSO_GRACE_DAYS: '30' },
    });
    const { port, dataDir, env } = platform;
    const base = `http://127.0.0.1:${port}`;
    const api = async (method: string, url: string, token?: string, body?: object) => {
      const res = await fetch(`${base}${url}`, {
        method,
        headers: {
          ...(token ? { authorization: `Bearer ${token}` } : {}),
          ...(body ? { 'content-type': 'application/json' } : {}),
        },
        body: body ? JSON.stringify(body) : undefined,
      });
      return { status: res.status, body: (await res.json().catch(() => ({}))) as Record<string, unknown> };
    };
    try {
      // A paying tenant, active, whose owner signed in at the dashboard, added a member and a key.
      const signup = await platform.signup({
        company: COMPANY,
        slug: SLUG,
        email: OWNER,
        password: PASSWORD,
      });
      expect(signup.status).toBe(201);
      expect((await fetch(`${signup.checkoutUrl}/pay`, { method: 'POST', redirect: 'manual' })).status).toBe(
        303,
      );
      const live = await platform.until(SLUG, (p) => p.status === 200, 120_000);
      expect(live.body).toContain(COMPANY);
      expect((await dashboardLogin(`${SLUG}.localhost:${port}`, port, OWNER, PASSWORD)).status).toBe(303);
      const token = (await api('POST', '/api/v1/auth/login', undefined, { email: OWNER, password: PASSWORD }))
        .body.accessToken as string;
      expect(
        (
          await api('POST', `/api/v1/tenants/${SLUG}/users`, token, {
            email: MEMBER,
            password: PASSWORD,
            role: 'tenant_member',
          })
        ).status,
      ).toBe(201);
      expect(
        (await api('POST', `/api/v1/tenants/${SLUG}/api-keys`, token, { name: 'crm sync' })).status,
      ).toBe(201);

      // A service whose database holds the owner's address, unsubscribed: its final dump is kept.
      expect(
        (await api('POST', `/api/v1/tenants/${SLUG}/services`, token, { service: 'notes' })).status,
      ).toBe(202);
      const notes = await pollUntil(
        () => testDb.db.selectFrom('tenant_services').select(['status', 'db_name']).executeTakeFirstOrThrow(),
        (row) => row.status === 'active',
        120_000,
      );
      expect(notes.status).toBe('active');
      const content = new pg.Client({ connectionString: withDatabase(testDb.url, notes.db_name!) });
      await content.connect();
      await content.query('INSERT INTO drafts (kind, body) VALUES ($1, $2)', [
        'notes',
        `Call ${OWNER} about the ${COMPANY} catalogue`,
      ]);
      await content.end();
      expect((await api('DELETE', `/api/v1/tenants/${SLUG}/services/notes`, token)).status).toBe(202);
      await pollUntil(
        () => testDb.db.selectFrom('tenant_services').select('status').executeTakeFirstOrThrow(),
        (row) => row.status === 'removed',
        120_000,
      );
      const dumps = await readdir(path.join(dataDir, 'backups', SLUG));
      expect(dumps).toEqual([expect.stringMatching(/^notes-final-.*\.dump$/)]);

      // Every file of the platform's data directory is for its own user only.
      const open = (await filesUnder(dataDir)).filter((f) => (f.mode & 0o077) !== 0);
      expect(open.map((f) => `${path.relative(dataDir, f.file)} ${f.mode.toString(8)}`)).toEqual([]);

      // Before: the tenant is everywhere (so the searches below can find it).
      const before = await databaseDump();
      expect(before).toContain(OWNER);
      expect(before).toContain(COMPANY);
      expect(await filesContaining(dataDir, OWNER)).not.toEqual([]);

      const cancelled = await runCli(['tenants', 'cancel', SLUG], env);
      expect(cancelled.code, cancelled.stderr).toBe(0);
      const purged = await runCli(['tenants', 'purge', SLUG, '--now', '--json'], env, 120_000);
      expect(purged.code, purged.stderr).toBe(0);
      expect(JSON.parse(purged.stdout)).toEqual({ slug: SLUG, status: 'purged' });

      // After: nowhere in the database, nowhere in the data directory.
      const after = await databaseDump();
      for (const needle of [OWNER, MEMBER, COMPANY, 'quillfeather-mail.test']) {
        const lines = after.split('\n').filter((l) => l.includes(needle));
        expect(lines, needle).toEqual([]);
        expect(await filesContaining(dataDir, needle), needle).toEqual([]);
      }
      await expect(stat(path.join(dataDir, 'backups', SLUG))).rejects.toThrow(/ENOENT/);

      // The tenant row is a tombstone: id, slug, when, what was removed.
      const tombstone = await testDb.db
        .selectFrom('tenants')
        .selectAll()
        .where('slug', '=', SLUG)
        .executeTakeFirstOrThrow();
      expect(tombstone).toMatchObject({ status: 'purged', company: null, stripe_customer_id: null });
      expect(tombstone.purged_at).toBeInstanceOf(Date);
      expect(tombstone.purge_record).toMatchObject({
        removed: { users: 2, apiKeys: expect.any(Number) as number, subscriptions: 1, backups: 1 },
      });
      for (const table of ['subscriptions', 'backups', 'users', 'api_keys', 'sessions'] as const) {
        const rows = await testDb.pool.query(
          table === 'sessions'
            ? 'SELECT 1 FROM sessions s JOIN users u ON u.id = s.user_id WHERE u.tenant_id = $1'
            : `SELECT 1 FROM ${table} WHERE tenant_id = $1`,
          [tombstone.id],
        );
        expect(rows.rowCount, table).toBe(0);
      }
      const addresses = await testDb.pool.query('SELECT 1 FROM audit_addresses WHERE tenant_id = $1', [
        tombstone.id,
      ]);
      expect(addresses.rowCount).toBe(0);

      const verified = await runCli(['audit', 'verify'], env);
      expect(verified.code, verified.stdout + verified.stderr).toBe(0);
      expect(verified.stdout).toContain('audit log intact');
    } finally {
      await platform.stop(testDb.db);
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
