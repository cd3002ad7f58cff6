import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import {
  dashboardLogin,
  dashboardLogout,
  driverCases,
  pollUntil,
  startLivePlatform,
  viaEdge,
} from './support/live-platform.ts';

/**
 * The sign-in in front of a tenant's service, as a user meets it on a real
 * `aiqso up` (process driver): Notes at `<slug>.localhost/notes/` sends an
 * anonymous browser to the dashboard's sign-in, which sends it back signed in;
 * the app names the user and records them as a note's author; signing out
 * refuses the service again, also to a copy of the old edge cookie.
 */
let testDb: TestDatabase;
beforeEach(async () => {
  testDb = await createTestDatabase();
});
afterEach(async () => {
  await testDb.drop();
});

const EMAIL = 'owner@acme.test';
const PASSWORD = 'correct horse battery staple';
const BROWSER = { accept: 'text/html,application/xhtml+xml' };

describe('sign-in in front of a tenant service, end to end (process driver)', { timeout: 300_000 }, () => {
  it('sends an anonymous /notes/ to the sign-in, back signed in, names the user, and refuses again after sign-out', async () => {
    const driver = driverCases().find((d) => d.name === 'process')!;
    const platform = await startLivePlatform({ databaseUrl: testDb.url, driver });
    const { port } = platform;
    const host = `acme.localhost:${port}`;
    try {
      const signup = await platform.signup({
        company: 'Acme Widgets',
        slug: 'acme',
        email: EMAIL,
        password: PASSWORD,
      });
      expect(signup.status).toBe(201);
      expect((await fetch(`${signup.checkoutUrl}/pay`, { method: 'POST', redirect: 'manual' })).status).toBe(
        303,
      );
      expect((await platform.until('acme', (p) => p.status === 200, 120_000)).status).toBe(200);
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
      const row = await pollUntil(
        () => testDb.db.selectFrom('tenant_services').select('status').executeTakeFirstOrThrow(),
        (r) => r.status === 'active',
        120_000,
      );
      expect(row.status).toBe('active');

      // Anonymous: to the dashboard's sign-in, with the way back.
      const anonymous = await viaEdge(host, port, { path: '/notes/', headers: BROWSER });
      expect(anonymous.status).toBe(302);
      expect(anonymous.headers.location).toBe('/login?next=/notes/');
      const form = await viaEdge(host, port, { path: anonymous.headers.location, headers: BROWSER });
      expect(form.status).toBe(200);
      expect(form.body).toContain('<input type="hidden" name="next" value="/notes/">');
      // A way back off this host is not taken.
      const offsite = await dashboardLogin(host, port, EMAIL, PASSWORD, '//evil.example/notes/');
      expect(offsite.location).toBe('./');

      // Signed in: back to /notes/, which names the user.
      const signedIn = await dashboardLogin(host, port, EMAIL, PASSWORD, '/notes/');
      expect(signedIn.status).toBe(303);
      expect(signedIn.location).toBe('/notes/');
      expect(signedIn.cookies).toMatch(/^aiqso_dash=[^;]+; aiqso_edge=[\w-]+\.[\w-]+\.[\w-]+$/);
      const cookie = signedIn.cookies;
      const notes = await viaEdge(host, port, { path: '/notes/', headers: { ...BROWSER, cookie } });
      expect(notes.status).toBe(200);
      expect(notes.body).toContain('<h1>Notes</h1>');
      expect(notes.body).toContain(`Signed in as <strong>${EMAIL}</strong>`);

      // A note records its author.
      const saved = await viaEdge(host, port, {
        method: 'POST',
        path: '/notes/',
        headers: { cookie, 'content-type': 'application/x-www-form-urlencoded' },
        body: 'body=Quarterly+plan',
      });
      expect(saved.status).toBe(303);
      const listed = await viaEdge(host, port, { path: '/notes/', headers: { ...BROWSER, cookie } });
      expect(listed.body).toMatch(new RegExp(`<li>Quarterly plan <small>[^<]* — ${EMAIL}</small></li>`));

      // The app itself refuses a request that did not come through the edge's sign-in.
      const containers = path.join(platform.dataDir, 'containers');
      let appPort: string | undefined;
      for (const name of await readdir(containers)) {
        const env = JSON.parse(await readFile(path.join(containers, name, 'env.json'), 'utf8')) as Record<
          string,
          string
        >;
        if (env.APP_KIND === 'notes') appPort = env.PORT;
      }
      const direct = await fetch(`http://127.0.0.1:${appPort}/`);
      expect(direct.status).toBe(403);
      expect(await direct.text()).toMatch(/sign in/);

      // Signed out: both cookies cleared, /notes/ refused again.
      const out = await dashboardLogout(host, port, cookie);
      expect(out.status).toBe(303);
      expect(([] as string[]).concat(out.headers['set-cookie'] ?? [])).toEqual(
        expect.arrayContaining([expect.stringMatching(/^aiqso_edge=; Path=\/; Max-Age=0/)]),
      );
      const after = await viaEdge(host, port, { path: '/notes/', headers: BROWSER });
      expect(after.status).toBe(302);
      expect(after.headers.location).toBe('/login?next=/notes/');
      // A copy of the old edge cookie stops working too, once the edge sees the session ended (5 s).
      const copied = await pollUntil(
        () => viaEdge(host, port, { path: '/notes/', headers: { ...BROWSER, cookie } }),
        (p) => p.status === 302,
        15_000,
      );
      expect(copied.status).toBe(302);
    } finally {
      await platform.stop(testDb.db);
    }
  });
});
