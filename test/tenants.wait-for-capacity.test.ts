import os from 'node:os';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { DASHBOARD_REQUEST_MB } from '../src/services/hosts.ts';
import { runCli } from './support/cli.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import { driverCases, pollUntil, startLivePlatform, type LivePlatform } from './support/live-platform.ts';
import { startSmtpSink, type SmtpSink } from './support/smtp.ts';

/**
 * Waiting for capacity is a state, not a failure: on a host made full by
 * configuration (a reserve that leaves room for one dashboard's request), the
 * next paid tenants wait with their reason in the API and on the preparing
 * page, the operator gets one alert, and when room frees (a tenant purged) a
 * waiting tenant goes live without anyone acting.
 */
const OPS = 'ops@platform.test';
const PASSWORD = 'correct horse battery staple';
const processDriver = driverCases().find((d) => d.name === 'process')!;

let smtp: SmtpSink;
let testDb: TestDatabase;
let platform: LivePlatform | undefined;

beforeAll(async () => {
  smtp = await startSmtpSink();
});
afterAll(() => smtp.close());
beforeEach(async () => {
  testDb = await createTestDatabase();
});
afterEach(async () => {
  await platform?.stop();
  platform = undefined;
  await testDb.drop();
});

interface WorkspaceStatus {
  workspace: { status: string; waitingFor: string | null };
}

describe('a full host (process driver)', { timeout: 300_000 }, () => {
  it('makes the next paid tenants wait with their reason and one alert, and places one when room frees', async () => {
    // This machine becomes the host with its whole memory; keep back all but 1.5 dashboard requests.
    const totalMb = Math.floor(os.totalmem() / 1024 ** 2);
    const allocatable = Math.floor(DASHBOARD_REQUEST_MB * 1.5);
    platform = await startLivePlatform({
      databaseUrl: testDb.url,
      driver: processDriver,
      env: {
        SMTP_URL: `smtp://127.0.0.1:${smtp.port}`,
        AIQSO_ALERT_EMAIL: OPS,
        AIQSO_GRACE_DAYS: '0',
        AIQSO_HOST_RESERVE_MB: String(totalMb - allocatable),
      },
    });
    const live = platform;
    const base = `http://127.0.0.1:${live.port}`;
    const pay = async (slug: string) => {
      const signup = await live.signup({ company: `${slug} Ltd`, slug, email: `owner@${slug}.test` });
      expect(signup.status).toBe(201);
      const paid = await fetch(`${signup.checkoutUrl}/pay`, { method: 'POST', redirect: 'manual' });
      expect(paid.status).toBe(303);
    };
    const statusOf = async (slug: string): Promise<WorkspaceStatus> => {
      const login = await fetch(`${base}/api/v1/auth/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ email: `owner@${slug}.test`, password: PASSWORD }),
      });
      expect(login.status).toBe(200);
      const { accessToken } = (await login.json()) as { accessToken: string };
      const res = await fetch(`${base}/api/v1/tenants/${slug}/status`, {
        headers: { authorization: `Bearer ${accessToken}` },
      });
      expect(res.status).toBe(200);
      return (await res.json()) as WorkspaceStatus;
    };
    const capacityAlerts = () =>
      smtp.received.filter((m) => m.to.includes(OPS) && /Subject: \[aiqso alert\] capacity:/.test(m.raw));

    // The first tenant fits and goes live.
    await pay('alpha');
    expect((await live.until('alpha', (p) => p.status === 200, 120_000)).body).toContain(
      '<h1>alpha Ltd</h1>',
    );

    // The next two wait: the API names what is short, the preparing page says they wait for room.
    await pay('beta');
    await pay('gamma');
    for (const slug of ['beta', 'gamma']) {
      const waiting = await pollUntil(
        () => statusOf(slug),
        (s) => s.workspace.waitingFor !== null,
        60_000,
      );
      expect(waiting.workspace.status).toBe('provisioning');
      expect(waiting.workspace.waitingFor).toMatch(
        new RegExp(
          `^capacity: host .+ has \\d+ MB of memory free; the dashboard needs ${DASHBOARD_REQUEST_MB} MB$`,
        ),
      );
      const page = await live.page(slug);
      expect(page.status).toBe(503);
      expect(page.body).toContain('Preparing your workspace');
      expect(page.body).toContain('placement — waiting (waiting for room: the servers are short of memory;');
    }
    // Not failed: no resource gave up, and the tenants are not `failed`.
    const tenants = await testDb.db
      .selectFrom('tenants')
      .select(['slug', 'status'])
      .orderBy('slug')
      .execute();
    expect(tenants).toEqual([
      { slug: 'alpha', status: 'active' },
      { slug: 'beta', status: 'provisioning' },
      { slug: 'gamma', status: 'provisioning' },
    ]);
    const failed = await testDb.db
      .selectFrom('resources')
      .select('id')
      .where('phase', '=', 'failed')
      .execute();
    expect(failed).toEqual([]);

    // Exactly one alert for the operator, naming what is short.
    await smtp.to(OPS, { atLeast: 1 });
    expect(capacityAlerts()).toHaveLength(1);
    const alert = capacityAlerts()[0]!.raw.replace(/=\r?\n/g, ''); // quoted-printable soft line breaks
    expect(alert).toContain('Subject: [aiqso alert] capacity: host ');
    expect(alert).toMatch(
      /tenant beta cannot be placed: host .+ has 16 MB of memory free; the dashboard needs 32 MB/,
    );

    // Room frees: alpha is cancelled and purged. The waiter that waited longest (beta) goes live by
    // itself; the other still waits, as one dashboard's room freed.
    const cancelled = await runCli(['tenants', 'cancel', 'alpha', '--json'], live.env);
    expect(cancelled.code, cancelled.stderr).toBe(0);
    const purged = await runCli(['tenants', 'purge', 'alpha', '--now', '--json'], live.env, 120_000);
    expect(purged.code, purged.stderr).toBe(0);
    const placed = await pollUntil(
      () =>
        testDb.db.selectFrom('tenants').select(['slug', 'status']).where('status', '=', 'active').execute(),
      (rows) => rows.length > 0,
      120_000,
    );
    expect(placed).toEqual([{ slug: 'beta', status: 'active' }]);
    const [first, second] = ['beta', 'gamma'];
    const firstLive = await live.until(first, (p) => p.status === 200, 60_000);
    expect(firstLive.body).toContain(`<h1>${first} Ltd</h1>`);
    expect((await statusOf(first)).workspace).toEqual({ status: 'active', waitingFor: null });
    expect((await statusOf(second)).workspace.waitingFor).toMatch(/^capacity: /);
    expect((await live.page(second)).status).toBe(503);

    // Still the one alert: the same shortage, not a new one.
    expect(capacityAlerts()).toHaveLength(1);
  });
});
