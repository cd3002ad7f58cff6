import { rename, rm } from 'node:fs/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ComputeDriver } from '../src/core/compute.ts';
import { runCli } from './support/cli.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import {
  dashboardLogin,
  driverCases,
  pollUntil,
  startLivePlatform,
  viaEdge,
  type DriverCase,
  type LivePlatform,
} from './support/live-platform.ts';

/**
 * `aiqso restore tenant` against a real `aiqso up` (process and lxc drivers),
 * real restic and real PostgreSQL: Notes holds note A and its container a data
 * file → `aiqso backups run` → the container and the service database are
 * destroyed by hand → `aiqso restore tenant` → Notes answers with A and the
 * file is back. Refusals change nothing; a restore killed with `aiqso up`
 * (SIGKILL) at random points completes after the restart (process driver),
 * and until then its row says it is running.
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
const MARKER = 'restore-marker.txt';
const process_ = driverCases().find((d) => d.name === 'process')!;

async function notesTenant(platform: LivePlatform, driverCase: DriverCase) {
  const { port } = platform;
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
  const ts = await testDb.db
    .selectFrom('tenant_services')
    .select(['container_name', 'db_name', 'db_role', 'tenant_id'])
    .executeTakeFirstOrThrow();
  // Opened only for a moment: `aiqso up` owns the containers.
  const withDriver = async <T>(fn: (driver: ComputeDriver) => Promise<T>): Promise<T> => {
    const driver = await driverCase.open(platform.dataDir, testDb.db);
    try {
      return await fn(driver);
    } finally {
      await driver.close();
    }
  };
  // A file in the service's home, which each driver keeps as the container's data: the process
  // driver's data directory; on lxc /root, in the container's own writable layer.
  const writeMarker = (text: string) =>
    withDriver(async (d) => {
      const r = await d.exec(ts.container_name!, ['sh', '-c', `cat > "$HOME/${MARKER}"`], { stdin: text });
      expect(r.exitCode, r.stderr).toBe(0);
    });
  const readMarker = () =>
    withDriver(async (d) => {
      const r = await d.exec(ts.container_name!, ['sh', '-c', `cat "$HOME/${MARKER}"`]);
      return r.exitCode === 0 ? r.stdout : null;
    });
  return { note, page, ts, withDriver, writeMarker, readMarker };
}

/** Destroy what a disaster would: the service's container and its database and role, by hand. */
async function destroyByHand(
  driver: ComputeDriver,
  ts: { container_name: string | null; db_name: string | null; db_role: string | null },
) {
  await driver.destroy(ts.container_name!);
  expect((await driver.status(ts.container_name!)).state).toBe('missing');
  await testDb.pool.query(`DROP DATABASE IF EXISTS "${ts.db_name!}" WITH (FORCE)`);
  await testDb.pool.query(`DROP ROLE IF EXISTS "${ts.db_role!}"`);
}

const STEPS = [
  'safety snapshot',
  'hold service',
  'stop service',
  'database',
  'data',
  'start service',
  'health check',
  'record',
];

/**
 * Note A and a file → backup → container and database destroyed by hand →
 * `aiqso restore tenant` → A without B, and the file, on `driver`.
 */
async function restoreDestroyedTenant(driver: DriverCase) {
  const platform = await startLivePlatform({ databaseUrl: testDb.url, driver });
  const cli = (args: string[]) => runCli(args, platform.env, 300_000);
  try {
    const t = await notesTenant(platform, driver);
    expect((await t.note('Note A before the backup')).status).toBe(303);
    await t.writeMarker('file A');
    const run = await cli(['backups', 'run', '--tenant', 'acme', '--json']);
    expect(run.code, run.stderr).toBe(0);

    // Refusals first: nothing is queued, nothing changes.
    const unknown = await cli(['restore', 'tenant', 'nosuch']);
    expect(unknown.code).toBe(3);
    expect(unknown.stderr).toMatch(/no tenant with slug or id "nosuch"/);
    const tooEarly = await cli(['restore', 'tenant', 'acme', '--at', '2001-01-01T00:00:00Z']);
    expect(tooEarly.code).toBe(3);
    expect(tooEarly.stderr).toMatch(/no snapshot at or before 2001-01-01T00:00:00.000Z of notes/);
    const badTime = await cli(['restore', 'tenant', 'acme', '--at', 'last tuesday']);
    expect(badTime.code).toBe(2);
    expect(badTime.stderr).toMatch(/--at must be an ISO time/);
    // The repository gone from where it was (an unmounted NAS): refused before anything is stopped.
    const repo = await testDb.db
      .selectFrom('backup_repositories')
      .select('location')
      .executeTakeFirstOrThrow();
    await rename(repo.location, `${repo.location}.away`);
    const unreachable = await cli(['restore', 'tenant', 'acme']);
    await rename(`${repo.location}.away`, repo.location);
    expect(unreachable.code).not.toBe(0);
    expect(unreachable.stderr).toMatch(/backup repository/);
    expect(await testDb.db.selectFrom('restores').select('id').execute()).toEqual([]);
    expect(await t.page()).toContain('Note A before the backup');
    const refusals = await testDb.db
      .selectFrom('audit_log')
      .select(['result'])
      .where('action', '=', 'tenant.restore')
      .execute();
    expect(refusals.map((r) => r.result)).toEqual(['failure', 'failure']);

    // The disaster: container and database gone.
    expect((await t.note('Note B after the backup')).status).toBe(303);
    await t.withDriver((d) => destroyByHand(d, t.ts));

    const restored = await cli(['restore', 'tenant', 'acme', '--json']);
    expect(restored.stderr).toBe('');
    expect(restored.code, restored.stdout).toBe(0);
    const out = JSON.parse(restored.stdout) as { restores: Record<string, unknown>[] };
    expect(out.restores).toHaveLength(1);
    expect(out.restores[0]).toMatchObject({
      service: 'notes',
      phase: 'ready',
      status: 'done',
      stepsDone: STEPS,
    });
    expect(out.restores[0]!.dataSnapshot).toMatch(/^[0-9a-f]{64}$/);

    const after = await pollUntil(
      () => t.page(),
      (p) => p.includes('Note A before the backup'),
      60_000,
    );
    expect(after).toContain('Note A before the backup');
    expect(after).not.toContain('Note B after the backup');
    expect(await t.readMarker()).toBe('file A');
    const audit = await testDb.db
      .selectFrom('audit_log')
      .select(['action', 'result'])
      .where('action', 'in', ['tenant.restore', 'tenant.service.restored'])
      .where('result', '=', 'success')
      .orderBy('id')
      .execute();
    expect(audit.map((a) => a.action)).toEqual(['tenant.restore', 'tenant.service.restored']);
    // Nothing existed to keep: no safety snapshot was taken of a container and database that were gone.
    expect(
      await testDb.db.selectFrom('backups').select('id').where('purpose', '=', 'safety').execute(),
    ).toEqual([]);
  } finally {
    await platform.stop(testDb.db);
    await rm(platform.dataDir, { recursive: true, force: true });
  }
}

describe('aiqso restore tenant', { timeout: 900_000 }, () => {
  for (const driver of driverCases()) {
    it(`${driver.name} driver: brings back a tenant whose container and service database were destroyed by hand; refusals change nothing`, async (ctx) => {
      if (driver.skip()) return ctx.skip();
      await restoreDestroyedTenant(driver);
    });
  }

  it('a restore killed with the platform (SIGKILL) at random points completes after the restart', async () => {
    const platform = await startLivePlatform({ databaseUrl: testDb.url, driver: process_ });
    const cli = (args: string[]) => runCli(args, platform.env, 600_000);
    try {
      const t = await notesTenant(platform, process_);
      expect((await t.note('Note A before the backup')).status).toBe(303);
      await t.writeMarker('file A');
      const run = await cli(['backups', 'run', '--tenant', 'acme', '--json']);
      expect(run.code, run.stderr).toBe(0);
      for (let round = 0; round < 3; round++) {
        expect((await t.note(`Note B${round} after the backup`)).status).toBe(303);
        await t.writeMarker(`file B${round}`);
        const restoring = cli(['restore', 'tenant', 'acme', '--json']);
        // Wait for the restore's row, then kill the platform somewhere in its steps.
        await pollUntil(
          () => testDb.db.selectFrom('restores').select('id').where('status', '=', 'running').execute(),
          (rows) => rows.length > 0,
          60_000,
          20,
        );
        await new Promise((r) => setTimeout(r, Math.floor(Math.random() * 12_000)));
        await platform.restart('SIGKILL', async () => {
          // While the platform is down, a restore not done says so.
          const rows = await testDb.db.selectFrom('restores').select(['status', 'steps_done']).execute();
          for (const r of rows) if (!r.steps_done.includes('record')) expect(r.status).toBe('running');
        });
        const restored = await restoring;
        expect(restored.code, restored.stderr + restored.stdout).toBe(0);
        const out = JSON.parse(restored.stdout) as { restores: Record<string, unknown>[] };
        expect(out.restores[0]).toMatchObject({ phase: 'ready', status: 'done', stepsDone: STEPS });
        const page = await pollUntil(
          () => t.page(),
          (p) => p.includes('Note A before the backup') && !p.includes(`Note B${round}`),
          60_000,
        );
        expect(page).toContain('Note A before the backup');
        expect(page).not.toContain(`Note B${round} after the backup`);
        expect(await t.readMarker()).toBe('file A');
      }
      const statuses = await testDb.db.selectFrom('restores').select('status').execute();
      expect(statuses.map((s) => s.status)).toEqual(['done', 'done', 'done']);
    } finally {
      await platform.stop(testDb.db);
      await rm(platform.dataDir, { recursive: true, force: true });
    }
  });

  it('a restore that fails ends failed with the reason, and the platform says so', async () => {
    const platform = await startLivePlatform({ databaseUrl: testDb.url, driver: process_ });
    const cli = (args: string[]) => runCli(args, platform.env, 300_000);
    try {
      const t = await notesTenant(platform, process_);
      expect((await t.note('Note A before the backup')).status).toBe(303);
      // The backup holds Notes' fault switch: restored, Notes answers its health check 500.
      await t.withDriver(async (d) =>
        expect((await d.exec(t.ts.container_name!, ['tee', 'health-fault'], { stdin: '500' })).exitCode).toBe(
          0,
        ),
      );
      const run = await cli(['backups', 'run', '--tenant', 'acme', '--json']);
      await t.withDriver((d) => d.exec(t.ts.container_name!, ['rm', '-f', 'health-fault']));
      expect(run.code, run.stderr).toBe(0);

      const restored = await cli(['restore', 'service', 'acme', 'notes', '--json']);
      expect(restored.code).toBe(1);
      const out = JSON.parse(restored.stdout) as Record<string, unknown>;
      expect(out).toMatchObject({ phase: 'failed', status: 'failed' });
      expect(out.error).toMatch(/GET \/healthz did not answer 200/);
      expect(out.stepsDone).toEqual(STEPS.slice(0, STEPS.indexOf('health check')));
      const row = await testDb.db
        .selectFrom('restores')
        .select(['status', 'error', 'finished_at'])
        .executeTakeFirstOrThrow();
      expect(row.status).toBe('failed');
      expect(row.error).toMatch(/did not answer 200/);
      expect(row.finished_at).not.toBeNull();
      const audit = await testDb.db
        .selectFrom('audit_log')
        .select(['result'])
        .where('action', '=', 'tenant.service.restored')
        .execute();
      expect(audit).toEqual([{ result: 'failure' }]);
      // The service is no longer held: another restore may be asked for (and is refused only for its snapshot).
      const again = await cli(['restore', 'service', 'acme', 'notes', '--snapshot', 'deadbeef']);
      expect(again.code).toBe(3);
      expect(again.stderr).toMatch(/no snapshot deadbeef of notes/);
    } finally {
      await platform.stop(testDb.db);
      await rm(platform.dataDir, { recursive: true, force: true });
    }
  });
});
