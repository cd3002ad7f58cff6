import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../src/db/embedded.ts';
import { startCli } from './support/cli.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import { totpCode } from './support/identity.ts';

/** The bootstrap admin's way in, against a real `aiqso up`: what the banner says is what works. */
let db: TestDatabase;
let dataDir: string;
beforeAll(async () => {
  db = await createTestDatabase();
  dataDir = await mkdtemp(path.join(os.tmpdir(), 'aiqso-up-admin-'));
});
afterAll(async () => {
  await db.drop();
  await rm(dataDir, { recursive: true, force: true });
});

describe('aiqso up: first admin login', () => {
  it('prints the enrolment path, and login → enrol → confirm → login with TOTP works over HTTP', async () => {
    const port = await freePort();
    const password = 'a long operator passphrase';
    const up = await startCli(
      ['up'],
      {
        DATABASE_URL: db.url,
        AIQSO_DATA_DIR: dataDir,
        AIQSO_HTTP_PORT: String(port),
        AIQSO_ADMIN_EMAIL: 'ops@example.com',
        AIQSO_ADMIN_PASSWORD: password,
      },
      'Press Ctrl-C to stop.',
    );
    try {
      expect(up.output()).toContain(`  Operator console http://localhost:${port}/admin`);
      expect(up.output()).toContain(
        `Two-factor       required for admins, not yet enrolled: the first sign-in at\n                   http://localhost:${port}/admin sets it up`,
      );
      expect(up.output()).not.toContain(password);
      const base = `http://127.0.0.1:${port}`;
      const post = (url: string, body: unknown, token?: string) =>
        fetch(base + url, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            ...(token ? { authorization: `Bearer ${token}` } : {}),
          },
          body: JSON.stringify(body),
        });
      const refused = await post('/api/v1/auth/login', { email: 'ops@example.com', password });
      expect(refused.status).toBe(403);
      const enrolmentToken = ((await refused.json()) as { error: { details: { enrolmentToken: string } } })
        .error.details.enrolmentToken;
      const enrol = await fetch(`${base}/api/v1/auth/totp/enrol`, {
        method: 'POST',
        headers: { authorization: `Bearer ${enrolmentToken}` },
      });
      expect(enrol.status).toBe(200);
      const { secret } = (await enrol.json()) as { secret: string };
      const confirm = await post('/api/v1/auth/totp/confirm', { code: totpCode(secret) }, enrolmentToken);
      expect(confirm.status).toBe(200);
      expect(((await confirm.json()) as { recoveryCodes: string[] }).recoveryCodes).toHaveLength(10);
      const login = await post('/api/v1/auth/login', {
        email: 'ops@example.com',
        password,
        totp: totpCode(secret, 1),
      });
      expect(login.status).toBe(200);
      const { accessToken } = (await login.json()) as { accessToken: string };
      const me = await fetch(`${base}/api/v1/auth/me`, {
        headers: { authorization: `Bearer ${accessToken}` },
      });
      expect(await me.json()).toMatchObject({ kind: 'user', role: 'platform_admin', tenantId: null });
    } finally {
      up.child.kill('SIGTERM');
      await up.exited;
    }
  });
});
