import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { runCli } from './support/cli.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import {
  dashboardLogin,
  driverCases,
  pollUntil,
  startLivePlatform,
  viaEdge,
} from './support/live-platform.ts';
import { startSmtpSink, type SmtpSink } from './support/smtp.ts';
import { invoiceEvent, subscriptionEvent } from './support/stripe.ts';

let smtp: SmtpSink;
let testDb: TestDatabase;

beforeAll(async () => {
  smtp = await startSmtpSink();
});
afterAll(() => smtp.close());
// Each driver's run gets a database of its own and an empty mailbox.
beforeEach(async () => {
  smtp.received.length = 0;
  testDb = await createTestDatabase();
});
afterEach(async () => {
  await testDb.drop();
});

describe.each(driverCases())(
  'signup to a live subdomain, suspension, reactivation and purge ($name driver)',
  { timeout: 300_000 },
  (driver) => {
    it('goes from signup and a paid checkout to the dashboard at <slug>.localhost, then suspension, reactivation and purge', async ({
      skip,
    }) => {
      if (driver.skip()) return skip();
      const platform = await startLivePlatform({
        databaseUrl: testDb.url,
        driver,
        env: { SMTP_URL: `smtp://127.0.0.1:${smtp.port}`, AIQSO_GRACE_DAYS: '0' },
      });
      const { port, env } = platform;
      const host = `acme.localhost:${port}`;
      try {
        const signup = await platform.signup({
          company: 'Acme Widgets',
          slug: 'acme',
          email: 'owner@acme.test',
        });
        expect(signup.status).toBe(201);

        // Before payment the subdomain has no route.
        expect((await platform.page('acme')).status).toBe(404);

        const paid = await fetch(`${signup.checkoutUrl}/pay`, { method: 'POST', redirect: 'manual' });
        expect(paid.status).toBe(303);

        const page = await platform.until('acme', (p) => p.status === 200, 120_000);
        expect(page.status).toBe(200);
        expect(page.body).toContain('<h1>Acme Widgets</h1>');

        const welcome = await smtp.to('owner@acme.test');
        expect(welcome).toHaveLength(1);
        expect(welcome[0]!.raw).toContain('Welcome to your Acme Widgets workspace');

        // The owner signs in on the dashboard, which asks the control-plane API (from inside its
        // container, with its tenant-scoped key) for the workspace's status; a wrong password is refused.
        expect((await dashboardLogin(host, port, 'owner@acme.test', 'wrong password')).status).toBe(401);
        const signedIn = await dashboardLogin(host, port, 'owner@acme.test', 'correct horse battery staple');
        expect(signedIn.status).toBe(303);
        expect(signedIn.cookie).toMatch(/^aiqso_dash=/);
        const home = await viaEdge(host, port, { headers: { cookie: signedIn.cookie! } });
        expect(home.status).toBe(200);
        expect(home.body).toContain('Signed in as owner@acme.test');
        expect(home.body).toContain('Workspace status: <strong>active</strong>');

        // Stripe gives up on a renewal: the edge answers with the suspended page; payment brings it back.
        const sub = await testDb.db
          .selectFrom('subscriptions')
          .select('stripe_subscription_id')
          .executeTakeFirstOrThrow();
        const subscriptionId = sub.stripe_subscription_id!;
        expect(
          await platform.sendEvent(
            invoiceEvent('payment_failed', subscriptionId, { attempt_count: 4, next_payment_attempt: null }),
          ),
        ).toBe(200);
        const suspended = await platform.until('acme', (p) => p.status === 402);
        expect(suspended.status).toBe(402);
        expect(suspended.body).toContain('suspended');
        expect(await platform.sendEvent(invoiceEvent('paid', subscriptionId))).toBe(200);
        const back = await platform.until('acme', (p) => p.status === 200);
        expect(back.body).toContain('<h1>Acme Widgets</h1>');

        // A service, so the purge below must remove its container and database too.
        const login = await fetch(`http://127.0.0.1:${port}/api/v1/auth/login`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ email: 'owner@acme.test', password: 'correct horse battery staple' }),
        });
        const { accessToken } = (await login.json()) as { accessToken: string };
        const subscribed = await fetch(`http://127.0.0.1:${port}/api/v1/tenants/acme/services`, {
          method: 'POST',
          headers: { authorization: `Bearer ${accessToken}`, 'content-type': 'application/json' },
          body: JSON.stringify({ service: 'notes' }),
        });
        expect(subscribed.status).toBe(202);
        const notes = await pollUntil(
          () =>
            testDb.db.selectFrom('tenant_services').select(['status', 'db_name']).executeTakeFirstOrThrow(),
          (row) => row.status === 'active',
          90_000,
        );
        expect(notes.status).toBe('active');
        const notesPage = await viaEdge(host, port, {
          path: '/notes/',
          headers: { cookie: signedIn.cookies },
        });
        expect(notesPage.status).toBe(200);

        const shown = await runCli(['tenants', 'show', 'acme', '--json'], env);
        const tenant = JSON.parse(shown.stdout) as {
          id: string;
          status: string;
          resources: { steps: { name: string; state: string }[] }[];
          history: { action: string; reason: string | null }[];
        };
        expect(tenant.status).toBe('active');
        expect(tenant.history.map((h) => h.action)).toEqual([
          'tenant.signup',
          'tenant.provisioning',
          'tenant.activated',
          'tenant.suspended',
          'tenant.reactivated',
          'tenant.service.subscribe',
        ]);
        expect(tenant.history[3]!.reason).toMatch(/payment/i);
        expect(tenant.resources[0]!.steps.map((s) => [s.name, s.state])).toEqual([
          ['workspace record', 'done'],
          ['placement', 'done'],
          ['dashboard container', 'done'],
          ['dashboard running', 'done'],
          ['route', 'done'],
          ['health check', 'done'],
          ['welcome email', 'done'],
          ['activate', 'done'],
        ]);

        // Cancellation: the workspace goes dark at once; after the (zero-day) grace period a purge removes it all.
        expect(
          await platform.sendEvent(
            subscriptionEvent('deleted', {
              id: subscriptionId,
              customer: 'cus_x',
              status: 'canceled',
              tenantId: tenant.id,
            }),
          ),
        ).toBe(200);
        // The edge says so (410, not the suspended page): cancelled, and until when its data is kept.
        const gone = await platform.until('acme', (p) => p.status === 410);
        expect(gone.status).toBe(410);
        expect(gone.body).toContain('Workspace cancelled');
        expect(gone.body).toMatch(/Its data is kept until \d{4}-\d\d-\d\d and then deleted for good/);
        const purged = await runCli(['tenants', 'purge', 'acme', '--json'], env, 120_000);
        expect(purged.stderr).toBe('');
        expect(JSON.parse(purged.stdout)).toEqual({ slug: 'acme', status: 'purged' });
        expect((await platform.page('acme')).status).toBe(404);
        const compute = await driver.open(platform.dataDir, testDb.db);
        expect(await compute.list()).toEqual([]);
        await compute.close();
        expect(
          await testDb.db.selectFrom('routes').select('id').where('tenant_id', '=', tenant.id).execute(),
        ).toEqual([]);
        expect(
          await testDb.db.selectFrom('users').select('id').where('tenant_id', '=', tenant.id).execute(),
        ).toEqual([]);
        expect(
          await testDb.db.selectFrom('tenant_services').select('status').executeTakeFirstOrThrow(),
        ).toEqual({ status: 'removed' });
        const serviceDb = await testDb.pool.query('SELECT 1 FROM pg_database WHERE datname = $1', [
          notes.db_name,
        ]);
        expect(serviceDb.rowCount).toBe(0);
        const audit = await testDb.db
          .selectFrom('audit_log')
          .select('details')
          .where('action', '=', 'tenant.purged')
          .executeTakeFirstOrThrow();
        expect(audit.details).toMatchObject({
          removed: {
            users: 1,
            outside: [expect.stringMatching(/^container aiqso-/), 'route acme.localhost'],
          },
        });

        // Every transition is in the audit log, in order, and the chain holds.
        const story = await testDb.db
          .selectFrom('audit_log')
          .select('action')
          .where('tenant_id', '=', tenant.id)
          .where('action', 'like', 'tenant.%')
          .orderBy('id')
          .execute();
        expect(story.map((r) => r.action)).toEqual([
          'tenant.signup',
          'tenant.provisioning',
          'tenant.activated',
          'tenant.suspended',
          'tenant.reactivated',
          'tenant.service.subscribe',
          'tenant.cancelled',
          'tenant.purge', // the operator's command, then what it did
          'tenant.purged',
        ]);
        const verified = await runCli(['audit', 'verify'], env);
        expect(verified.code).toBe(0);
      } finally {
        await platform.stop(testDb.db);
      }
    });
  },
);
