import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import {
  dashboardLogin,
  driverCases,
  pollUntil,
  startLivePlatform,
  viaEdge,
} from './support/live-platform.ts';

const exec = promisify(execFile);

/**
 * "Export my data" against a real `aiqso up` (process driver, real
 * PostgreSQL): a tenant's Notes holds a note → its owner asks for an export
 * over the API → the platform's own worker builds it and the outbox sends the
 * owner the mail with the link → the link (the workspace's own page) asks a
 * browser without a session to sign in, and gives a signed-in owner the same
 * archive as the API gives their token, whose CSV and dump hold the note; the
 * dashboard's Backups page lists it with that link.
 */
let testDb: TestDatabase;
let scratch: string;
beforeEach(async () => {
  testDb = await createTestDatabase();
  scratch = await mkdtemp(path.join(os.tmpdir(), 'aiqso-export-live-'));
});
afterEach(async () => {
  await testDb.drop();
  await rm(scratch, { recursive: true, force: true });
});

const EMAIL = 'owner@acme.test';
const PASSWORD = 'correct horse battery staple';
const NOTE = 'note for the export, live';
const process_ = driverCases().find((d) => d.name === 'process')!;

describe('Export my data on a running platform', { timeout: 900_000 }, () => {
  it("is built by the platform's worker and mailed; the link gives the tenant's notes", async () => {
    const platform = await startLivePlatform({ databaseUrl: testDb.url, driver: process_ });
    try {
      const { port } = platform;
      const api = `http://127.0.0.1:${port}`;
      const host = `acme.localhost:${port}`;
      const signup = await platform.signup({
        company: 'Acme Widgets',
        slug: 'acme',
        email: EMAIL,
        password: PASSWORD,
      });
      expect(signup.status).toBe(201);
      await fetch(`${signup.checkoutUrl}/pay`, { method: 'POST', redirect: 'manual' });
      expect((await platform.until('acme', (p) => p.status === 200, 180_000)).status).toBe(200);
      const login = await fetch(`${api}/api/v1/auth/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ email: EMAIL, password: PASSWORD }),
      });
      const { accessToken } = (await login.json()) as { accessToken: string };
      const auth = { authorization: `Bearer ${accessToken}` };
      const subscribed = await fetch(`${api}/api/v1/tenants/acme/services`, {
        method: 'POST',
        headers: { ...auth, 'content-type': 'application/json' },
        body: JSON.stringify({ service: 'notes' }),
      });
      expect(subscribed.status).toBe(202);
      await pollUntil(
        () => testDb.db.selectFrom('tenant_services').select('status').executeTakeFirstOrThrow(),
        (r) => r.status === 'active',
        180_000,
      );
      const { cookies: cookie } = await dashboardLogin(host, port, EMAIL, PASSWORD, '/notes/');
      const posted = await viaEdge(host, port, {
        method: 'POST',
        path: '/notes/',
        headers: { cookie, 'content-type': 'application/x-www-form-urlencoded' },
        body: `body=${encodeURIComponent(NOTE)}`,
      });
      expect(posted.status).toBeLessThan(400);

      const asked = await fetch(`${api}/api/v1/tenants/acme/exports`, { method: 'POST', headers: auth });
      expect(asked.status).toBe(202);
      const { export: exp } = (await asked.json()) as { export: { id: string } };
      const listed = await pollUntil(
        async () =>
          (
            (await (await fetch(`${api}/api/v1/tenants/acme/exports`, { headers: auth })).json()) as {
              exports: { id: string; status: string; download: string | null }[];
            }
          ).exports,
        (list) => list[0]?.status === 'ready' || list[0]?.status === 'failed',
        300_000,
      );
      expect(listed[0]).toMatchObject({ id: exp.id, status: 'ready' });
      // The mail went out through the outbox, to the owner, with the link.
      const sent = await pollUntil(
        () =>
          testDb.db
            .selectFrom('emails')
            .select(['recipient', 'outbox_key'])
            .where('template', '=', 'export-ready')
            .execute(),
        (rows) => rows.length > 0,
        120_000,
      );
      expect(sent).toEqual([{ recipient: EMAIL, outbox_key: `export-ready:${exp.id}` }]);
      const outbox = await testDb.db
        .selectFrom('outbox')
        .select('payload')
        .where('key', '=', `export-ready:${exp.id}`)
        .executeTakeFirstOrThrow();
      const payload = (typeof outbox.payload === 'string' ? JSON.parse(outbox.payload) : outbox.payload) as {
        text: string;
      };
      const link = /https?:\/\/\S+\/download/.exec(payload.text)?.[0];
      // The link is the workspace's own page for the export, for a browser.
      expect(link).toBe(`http://acme.localhost:${port}/exports/${exp.id}/download`);
      const downloadPath = `/api/v1/tenants/acme/exports/${exp.id}/download`;
      expect(listed[0]!.download).toBe(downloadPath);

      expect((await fetch(`${api}${downloadPath}`)).status).toBe(401);
      const res = await fetch(`${api}${downloadPath}`, { headers: auth });
      expect(res.status).toBe(200);
      const fromApi = Buffer.from(await res.arrayBuffer());

      // Without a session the workspace asks to sign in (and comes back to the link); signed in, the
      // owner gets the same archive. The Backups page lists it with that link.
      const linkPath = new URL(link!).pathname;
      const unsigned = await viaEdge(host, port, { path: linkPath });
      expect(unsigned.status).toBe(200);
      expect(unsigned.body).toContain('name="password"');
      expect(unsigned.body).not.toContain(NOTE);
      const signedIn = await viaEdge(host, port, { path: linkPath, headers: { cookie } });
      expect(signedIn.status, signedIn.body.slice(0, 300)).toBe(200);
      expect(signedIn.headers['content-type']).toBe('application/gzip');
      expect(signedIn.bytes.equals(fromApi)).toBe(true);
      const backupsPage = await viaEdge(host, port, { path: '/backups', headers: { cookie } });
      expect(backupsPage.body).toContain(`href="exports/${exp.id}/download"`);
      const unknown = await viaEdge(host, port, {
        path: `/exports/exp_${'0'.repeat(26)}/download`,
        headers: { cookie },
      });
      expect(unknown.status).toBe(404);
      expect(unknown.body).toContain('Export not available');

      const archive = path.join(scratch, 'acme.tar.gz');
      await writeFile(archive, fromApi);
      await exec('tar', ['-xzf', archive, '-C', scratch]);
      const tables = path.join(scratch, 'acme-export', 'services', 'notes', 'tables');
      const { stdout } = await exec('ls', [tables]);
      const csvs = await Promise.all(
        stdout
          .trim()
          .split('\n')
          .map((f) => readFile(path.join(tables, f), 'utf8')),
      );
      expect(csvs.some((c) => c.includes(NOTE))).toBe(true);
      const manifest = JSON.parse(
        await readFile(path.join(scratch, 'acme-export', 'manifest.json'), 'utf8'),
      ) as { files: { path: string }[] };
      expect(manifest.files.map((f) => f.path)).toContain('services/notes/database.dump');
    } finally {
      await platform.stop(testDb.db);
    }
  });
});
