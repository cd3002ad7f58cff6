import { rm } from 'node:fs/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runCli } from './support/cli.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import {
  dashboardLogin,
  driverCases,
  pollUntil,
  startLivePlatform,
  viaEdge,
  type DriverCase,
} from './support/live-platform.ts';

/**
 * Backup and restore of a tenant's service as an operator runs them against
 * a real `aiqso up`: note A → `aiqso backups run` (pg_dump streamed into the
 * tenant's restic repository) → note B → `aiqso restore service` → Notes
 * answers with A and without B; a safety snapshot of the state it replaced
 * (A and B) was taken first, and the restore is audited.
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

async function restoreCase(driver: DriverCase) {
  const platform = await startLivePlatform({ databaseUrl: testDb.url, driver });
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

    expect((await note('Note A before the backup')).status).toBe(303);
    const run = await cli(['backups', 'run', '--tenant', 'acme', '--json']);
    expect(run.stderr).toBe('');
    expect(run.code, run.stdout).toBe(0);
    const runs = (JSON.parse(run.stdout) as { runs: { id: string; phase: string }[] }).runs;
    expect(runs).toEqual([expect.objectContaining({ phase: 'ready' })]);

    const listed = await cli(['backups', 'list', '--tenant', 'acme', '--json']);
    expect(listed.code).toBe(0);
    const backups = (JSON.parse(listed.stdout) as { backups: Record<string, unknown>[] }).backups;
    const database = backups.find((b) => b.kind === 'database')!;
    expect(database).toMatchObject({
      tenant: 'acme',
      service: 'notes',
      purpose: 'manual',
      run: runs[0]!.id,
      rowCounts: { 'public.drafts': 1 },
    });
    expect(database.snapshot).toMatch(/^[0-9a-f]{64}$/);
    expect(database.sizeBytes).toBeGreaterThan(0);
    expect(backups.find((b) => b.kind === 'data')).toMatchObject({ service: 'notes', run: runs[0]!.id });

    expect((await note('Note B after the backup')).status).toBe(303);
    expect(await page()).toContain('Note B after the backup');

    const restored = await cli(['restore', 'service', 'acme', 'notes', '--json']);
    expect(restored.stderr).toBe('');
    expect(restored.code, restored.stdout).toBe(0);
    const outcome = JSON.parse(restored.stdout) as Record<string, unknown>;
    expect(outcome).toMatchObject({ snapshot: database.snapshot, phase: 'ready', status: 'done' });
    expect(outcome.stepsDone).toEqual([
      'safety snapshot',
      'hold service',
      'stop service',
      'database',
      'data',
      'start service',
      'health check',
      'record',
    ]);
    const after = await page();
    expect(after).toContain('Note A before the backup');
    expect(after).not.toContain('Note B after the backup');

    // What it replaced (A and B) was kept first, as a safety snapshot.
    const safety = await testDb.db
      .selectFrom('backups')
      .select(['row_counts', 'purpose'])
      .where('purpose', '=', 'safety')
      .where('kind', '=', 'database')
      .executeTakeFirstOrThrow();
    expect(safety.row_counts).toEqual({ 'public.drafts': 2 });
    const audit = await testDb.db
      .selectFrom('audit_log')
      .select(['action', 'result', 'actor_type'])
      .where('action', 'like', 'tenant.service.restore%')
      .orderBy('id')
      .execute();
    expect(audit).toEqual([
      { action: 'tenant.service.restore', result: 'success', actor_type: 'operator' },
      { action: 'tenant.service.restored', result: 'success', actor_type: 'system' },
    ]);

    // Refusals change nothing: an unknown snapshot, a service the tenant does not have.
    const unknown = await cli(['restore', 'service', 'acme', 'notes', '--snapshot', 'deadbeef']);
    expect(unknown.code).toBe(3);
    expect(unknown.stderr).toMatch(/no snapshot deadbeef of notes/);
    const noService = await cli(['restore', 'service', 'acme', 'crm', '--json']);
    expect(noService.code).toBe(3);
    expect(noService.stderr).toMatch(/no service "crm"/);
    const badTime = await cli(['restore', 'service', 'acme', 'notes', '--at', 'yesterday']);
    expect(badTime.code).toBe(2);
    const tooEarly = await cli(['restore', 'service', 'acme', 'notes', '--at', '2001-01-01T00:00:00Z']);
    expect(tooEarly.code).toBe(3);
    expect(await testDb.db.selectFrom('restores').select('id').execute()).toHaveLength(1);
    expect(await page()).toContain('Note A before the backup');
  } finally {
    await platform.stop(testDb.db);
    await rm(platform.dataDir, { recursive: true, force: true });
  }
}

describe('backup and restore of a service, end to end', { timeout: 600_000 }, () => {
  for (const driver of driverCases()) {
    it(`${driver.name} driver: note A, backup, note B, restore → A without B`, async (ctx) => {
      if (driver.skip()) return ctx.skip();
      await restoreCase(driver);
    });
  }
});
