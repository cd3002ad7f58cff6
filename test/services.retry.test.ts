import { copyFile, mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CATALOG_DIR } from '../src/catalog/load.ts';
import { runCli } from './support/cli.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import {
  dashboardLogin,
  driverCases,
  pollUntil,
  startLivePlatform,
  viaEdge,
  type LivePlatform,
} from './support/live-platform.ts';

/**
 * A failed service can be deployed again — by its owner from the dashboard or
 * the API, by an operator with `aiqso services retry` — and while failed it
 * does not count against the plan's service limit. On a real `aiqso up`
 * (process driver): a template whose health check never passes fails; the
 * operator fixes it; a retry brings it up.
 */
const STUCK = `key: stuck
name: Stuck
description: Never answers its health check until the operator fixes its template.
kind: app
app: { dir: apps/drafts, entry: server.mjs }
resources: { memory_mb: 128, cores: 1, disk_gb: 1 }
port: 3000
health: { path: /never-healthy, status: 200, timeout_seconds: 3 }
route: { path: /stuck, strip_prefix: true }
database: { postgres: true }
env:
  APP_TITLE: Stuck
  DATABASE_URL: \${db.url}
  PORT: \${port}
`;
const PASSWORD = 'correct horse battery staple';

interface ServiceView {
  service: string;
  status: string;
  statusReason: string | null;
  phase: string | null;
  steps: { name: string; state: string; attempts: number }[];
}

let testDb: TestDatabase;
let platform: LivePlatform;

beforeAll(async () => {
  testDb = await createTestDatabase();
  const catalogDir = await mkdtemp(path.join(os.tmpdir(), 'aiqso-catalog-'));
  for (const f of ['notes.yaml', 'social-media-manager.yaml'])
    await copyFile(path.join(CATALOG_DIR, f), path.join(catalogDir, f));
  await writeFile(path.join(catalogDir, 'stuck.yaml'), STUCK);
  platform = await startLivePlatform({
    databaseUrl: testDb.url,
    driver: driverCases().find((d) => d.name === 'process')!,
    env: { AIQSO_CATALOG_DIR: catalogDir },
  });
}, 180_000);
afterAll(async () => {
  await platform?.stop(testDb.db);
  await testDb?.drop();
}, 120_000);

describe('retrying a failed service (process driver)', { timeout: 300_000 }, () => {
  it('from the dashboard, the API and the CLI; a failed service leaves room in the plan', async () => {
    const { port, env } = platform;
    const base = `http://127.0.0.1:${port}`;
    const host = `acme.localhost:${port}`;
    const signup = await platform.signup({ company: 'Acme', slug: 'acme', email: 'owner@acme.test' });
    expect((await fetch(`${signup.checkoutUrl}/pay`, { method: 'POST', redirect: 'manual' })).status).toBe(
      303,
    );
    expect((await platform.until('acme', (p) => p.status === 200, 120_000)).status).toBe(200);
    const login = await fetch(`${base}/api/v1/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email: 'owner@acme.test', password: PASSWORD }),
    });
    const { accessToken } = (await login.json()) as { accessToken: string };
    const call = async (method: string, url: string, body?: object) => {
      const res = await fetch(`${base}/api/v1/tenants/acme${url}`, {
        method,
        headers: {
          authorization: `Bearer ${accessToken}`,
          ...(body ? { 'content-type': 'application/json' } : {}),
        },
        body: body ? JSON.stringify(body) : undefined,
      });
      return { status: res.status, body: (await res.json()) as Record<string, unknown> };
    };
    const view = async (key: string) =>
      ((await call('GET', '/services')).body.services as ServiceView[]).find((s) => s.service === key);
    const settledFailed = () =>
      pollUntil(
        () => view('stuck'),
        (v) => v?.status === 'failed' && v.phase === 'failed',
        60_000,
      );

    // The Starter plan allows 2 services. A failed one does not count: two more fit.
    expect((await call('POST', '/services', { service: 'stuck' })).status).toBe(202);
    const failed = await settledFailed();
    expect(failed?.statusReason).toMatch(/^health check: GET \/never-healthy did not answer 200 within 3 s/);
    expect((await call('POST', '/services', { service: 'notes' })).status).toBe(202);
    expect((await call('POST', '/services', { service: 'social-media-manager' })).status).toBe(202);

    // Retrying it now would exceed the plan: refused by the API and by the CLI, nothing changes.
    const full = await call('POST', '/services/stuck/retry');
    expect(full.status).toBe(409);
    expect((full.body.error as { message: string }).message).toBe(
      'the Starter plan allows 2 services and acme already has 2; upgrade the plan or unsubscribe one',
    );
    const cliFull = await runCli(['services', 'retry', 'acme', 'stuck'], env);
    expect([cliFull.code, cliFull.stderr]).toEqual([
      2,
      'aiqso: the Starter plan allows 2 services and acme already has 2; upgrade the plan or unsubscribe one\n',
    ]);
    expect((await view('stuck'))?.status).toBe('failed');
    expect((await call('DELETE', '/services/social-media-manager')).status).toBe(202);

    // The owner's dashboard shows why, in plain words, with a Retry button; pressing it runs the steps again.
    const signedIn = await dashboardLogin(host, port, 'owner@acme.test', PASSWORD);
    const cookie = signedIn.cookie!;
    const home = await viaEdge(host, port, { headers: { cookie } });
    expect(home.body).toMatch(
      /<td>Stuck<\/td><td><span class="badge bad">Failed<\/span><br>Setting it up failed: it started but did not answer in time\. <small class="muted">health check: GET \/never-healthy/,
    );
    const form =
      /<form method="post" action="retry"[^>]*><input type="hidden" name="csrf" value="([^"]+)">\s*<input type="hidden" name="service" value="stuck"><button type="submit">Retry<\/button>/.exec(
        home.body,
      );
    expect(form).not.toBeNull();
    const healthRuns = failed!.steps.find((s) => s.name === 'health check')!.attempts;
    const pressed = await viaEdge(host, port, {
      method: 'POST',
      path: '/retry',
      headers: { cookie, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ csrf: form![1]!, service: 'stuck' }).toString(),
    });
    expect(pressed.status).toBe(303);
    expect(decodeURIComponent(pressed.headers.location!)).toBe(
      './?msg=Stuck is being set up again; this page shows when it is active.',
    );
    // Still broken, so it fails again, having run its health check again.
    const again = await pollUntil(
      () => view('stuck'),
      (v) => v?.status === 'failed' && v.steps.find((s) => s.name === 'health check')!.attempts > healthRuns,
      60_000,
    );
    expect(again?.status).toBe('failed');
    const forged = await viaEdge(host, port, {
      method: 'POST',
      path: '/retry',
      headers: { cookie, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ csrf: 'forged', service: 'stuck' }).toString(),
    });
    expect(forged.status).toBe(403);

    // The operator fixes the template, then retries from the command line: it comes up.
    await testDb.pool.query(
      `UPDATE services SET template = jsonb_set(template, '{health,path}', '"/healthz"') WHERE key = 'stuck'`,
    );
    const retried = await runCli(['services', 'retry', 'acme', 'stuck', '--json'], env);
    expect(retried.code, retried.stderr).toBe(0);
    expect(JSON.parse(retried.stdout)).toMatchObject({ service: 'stuck', status: 'pending' });
    const up = await pollUntil(
      () => view('stuck'),
      (v) => v?.status === 'active',
      60_000,
    );
    expect(up?.status).toBe('active');
    // A service path needs the owner's edge session; without one the edge refuses it.
    expect(
      (await viaEdge(host, port, { path: '/stuck/', headers: { cookie: signedIn.cookies } })).status,
    ).toBe(200);
    expect((await viaEdge(host, port, { path: '/stuck/' })).status).toBe(401);

    // Only a failed service is retried; unknown tenants and services are "not found".
    const notFailed = await call('POST', '/services/stuck/retry');
    expect([notFailed.status, (notFailed.body.error as { message: string }).message]).toEqual([
      409,
      'service stuck is active; only a failed service can be retried',
    ]);
    expect((await call('POST', '/services/espocrm/retry')).status).toBe(404);
    expect((await runCli(['services', 'retry', 'nosuch', 'stuck'], env)).code).toBe(3);
    const audit = await testDb.pool.query<{ actor_type: string; result: string }>(
      "SELECT actor_type, result FROM audit_log WHERE action = 'tenant.service.retry' ORDER BY id",
    );
    expect(audit.rows.map((r) => `${r.actor_type} ${r.result}`)).toEqual([
      'user failure',
      'operator failure',
      'user success',
      'operator success',
      'user failure',
      'user failure',
    ]);
  });
});
