import { mkdtemp, readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProcessDriver } from '../src/compute/process/driver.ts';
import { freePort } from '../src/db/embedded.ts';
import { createLogger } from '../src/observability/logger.ts';
import { runCli, startCli } from './support/cli.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import { getAs, pollUntil, startMailbox, type Mailbox } from './support/live-platform.ts';
import { invoiceEvent, signed, subscriptionEvent } from './support/stripe.ts';

let mailbox: Mailbox;
let testDb: TestDatabase;

beforeAll(async () => {
  mailbox = await startMailbox();
  testDb = await createTestDatabase();
});
afterAll(async () => {
  await mailbox.close();
  await testDb.drop();
});

describe(
  'signup to a live subdomain, suspension and reactivation (process driver)',
  { timeout: 240_000 },
  () => {
    it('goes from signup and a paid checkout to the dashboard answering at <slug>.localhost, with one welcome email', async () => {
      const dataDir = await mkdtemp(path.join(os.tmpdir(), 'aiqso-live-'));
      const port = await freePort();
      const env = {
        AIQSO_DATA_DIR: dataDir,
        AIQSO_HTTP_PORT: String(port),
        DATABASE_URL: testDb.url,
        SMTP_URL: `smtp://127.0.0.1:${mailbox.port}`,
        AIQSO_GRACE_DAYS: '0',
      };
      const up = await startCli(['up'], env, 'Press Ctrl-C to stop.');
      try {
        const signup = await fetch(`http://127.0.0.1:${port}/api/v1/signup`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({
            company: 'Acme Widgets',
            slug: 'acme',
            email: 'owner@acme.test',
            password: 'correct horse battery staple',
          }),
        });
        expect(signup.status).toBe(201);
        const { checkoutUrl } = (await signup.json()) as { checkoutUrl: string };

        // Before payment the subdomain has no route.
        expect((await getAs(`acme.localhost:${port}`, port)).status).toBe(404);

        const paid = await fetch(`${checkoutUrl}/pay`, { method: 'POST', redirect: 'manual' });
        expect(paid.status).toBe(303);

        let page = { status: 0, body: '' };
        for (let i = 0; i < 600 && !(page.status === 200 && page.body.includes('Acme Widgets')); i++) {
          await new Promise((r) => setTimeout(r, 200));
          page = await getAs(`acme.localhost:${port}`, port);
        }
        expect(page.status).toBe(200);
        expect(page.body).toContain('<h1>Acme Widgets</h1>');

        const welcome = await mailbox.waitFor('owner@acme.test');
        expect(welcome).toHaveLength(1);
        expect(welcome[0]!.raw).toContain('Welcome to your Acme Widgets workspace');

        // Stripe gives up on a renewal: the edge answers with the suspended page; payment brings it back.
        const secret = (
          await readFile(path.join(dataDir, 'secrets', 'stripe-webhook-secret'), 'utf8')
        ).trim();
        const sub = await testDb.db
          .selectFrom('subscriptions')
          .select('stripe_subscription_id')
          .executeTakeFirstOrThrow();
        const send = async (event: object) => {
          const req = signed(event, secret);
          const res = await fetch(`http://127.0.0.1:${port}${req.url}`, {
            method: 'POST',
            headers: req.headers,
            body: req.payload,
          });
          expect(res.status).toBe(200);
        };
        const until = async (want: (p: { status: number; body: string }) => boolean) => {
          for (let i = 0; i < 150; i++) {
            const p = await getAs(`acme.localhost:${port}`, port);
            if (want(p)) return p;
            await new Promise((r) => setTimeout(r, 100));
          }
          return getAs(`acme.localhost:${port}`, port);
        };
        await send(
          invoiceEvent('payment_failed', sub.stripe_subscription_id!, {
            attempt_count: 4,
            next_payment_attempt: null,
          }),
        );
        const suspended = await until((p) => p.status === 402);
        expect(suspended.status).toBe(402);
        expect(suspended.body).toContain('suspended');
        await send(invoiceEvent('paid', sub.stripe_subscription_id!));
        const back = await until((p) => p.status === 200);
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

        const shown = await runCli(['tenants', 'show', 'acme', '--json'], env);
        const tenant = JSON.parse(shown.stdout) as {
          status: string;
          resources: { steps: { name: string; state: string }[] }[];
        };
        expect(tenant.status).toBe('active');
        expect(tenant.resources[0]!.steps.map((s) => [s.name, s.state])).toEqual([
          ['workspace record', 'done'],
          ['dashboard container', 'done'],
          ['dashboard running', 'done'],
          ['route', 'done'],
          ['health check', 'done'],
          ['welcome email', 'done'],
          ['activate', 'done'],
        ]);

        // Cancellation: the workspace goes dark at once; after the (zero-day) grace period a purge removes it all.
        const tenantId = (JSON.parse(shown.stdout) as { id: string }).id;
        await send(
          subscriptionEvent('deleted', {
            id: sub.stripe_subscription_id!,
            customer: 'cus_x',
            status: 'canceled',
            tenantId,
          }),
        );
        expect((await until((p) => p.status === 402)).status).toBe(402);
        const purged = await runCli(['tenants', 'purge', 'acme', '--json'], env, 120_000);
        expect(purged.stderr).toBe('');
        expect(JSON.parse(purged.stdout)).toEqual({ slug: 'acme', status: 'purged' });
        expect((await getAs(`acme.localhost:${port}`, port)).status).toBe(404);
        const driver = await ProcessDriver.open({
          root: path.join(dataDir, 'containers'),
          log: createLogger('silent'),
        });
        expect(await driver.list()).toEqual([]);
        await driver.close();
        expect(
          await testDb.db.selectFrom('routes').select('id').where('tenant_id', '=', tenantId).execute(),
        ).toEqual([]);
        expect(
          await testDb.db.selectFrom('users').select('id').where('tenant_id', '=', tenantId).execute(),
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
      } finally {
        up.child.kill('SIGINT');
        await up.exited;
        // The process driver's containers outlive the control plane by design; this test removes them.
        const driver = await ProcessDriver.open({
          root: path.join(dataDir, 'containers'),
          log: createLogger('silent'),
        });
        for (const c of await driver.list()) await driver.destroy(c.name);
        await driver.close();
      }
    });
  },
);
