import { request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { SMTPServer } from 'smtp-server';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { removeBridge } from '../src/compute/lxc/bridge.ts';
import { LxcDriver } from '../src/compute/lxc/driver.ts';
import { ProcessDriver } from '../src/compute/process/driver.ts';
import type { ComputeDriver } from '../src/core/compute.ts';
import { freePort } from '../src/db/embedded.ts';
import { createLogger } from '../src/observability/logger.ts';
import { runCli, startCli } from './support/cli.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import { lxcAvailable, privateNetwork } from './support/lxc.ts';
import { missingPart } from './support/strict.ts';
import { invoiceEvent, signed, subscriptionEvent } from './support/stripe.ts';

interface EdgeAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** A request through the platform's edge with a tenant's Host header. */
function viaEdge(
  host: string,
  port: number,
  options: { method?: string; path?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<EdgeAnswer> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        method: options.method ?? 'GET',
        path: options.path ?? '/',
        headers: { host, ...options.headers },
      },
      (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });
}

const getAs = (host: string, port: number): Promise<EdgeAnswer> => viaEdge(host, port);

/** Sign in on the tenant's dashboard (a form post through the edge); returns the session cookie. */
async function dashboardLogin(host: string, port: number, email: string, password: string) {
  const res = await viaEdge(host, port, {
    method: 'POST',
    path: '/login',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ email, password }).toString(),
  });
  const cookie = ([] as string[]).concat(res.headers['set-cookie'] ?? [])[0]?.split(';')[0];
  return { status: res.status, cookie };
}

let smtp: SMTPServer;
let smtpPort: number;
const mail: { to: string[]; raw: string }[] = [];
let testDb: TestDatabase;

beforeAll(async () => {
  smtp = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS'],
    onData(stream, session, callback) {
      let raw = '';
      stream.on('data', (c: Buffer) => (raw += c.toString()));
      stream.on('end', () => {
        mail.push({ to: session.envelope.rcptTo.map((r) => r.address), raw });
        callback();
      });
    },
  });
  await new Promise<void>((resolve) => smtp.listen(0, '127.0.0.1', resolve));
  smtpPort = (smtp.server.address() as AddressInfo).port;
});
afterAll(async () => {
  await new Promise<void>((resolve) => smtp.close(() => resolve()));
});
// Each driver's run gets a database of its own and an empty mailbox.
beforeEach(async () => {
  mail.length = 0;
  testDb = await createTestDatabase();
});
afterEach(async () => {
  await testDb.drop();
});

/** How each driver's run is configured, and how the test sees (and clears) its containers. */
interface DriverCase {
  name: 'process' | 'lxc';
  skip: () => boolean;
  env(dataDir: string): Promise<Record<string, string>>;
  open(dataDir: string): Promise<ComputeDriver>;
  cleanUp(dataDir: string): Promise<void>;
}

const lxcNet = privateNetwork('e2e');
const DRIVERS: DriverCase[] = [
  {
    name: 'process',
    skip: () => false,
    env: () => Promise.resolve({ AIQSO_DRIVER: 'process' }),
    open: (dataDir) =>
      ProcessDriver.open({ root: path.join(dataDir, 'containers'), log: createLogger('silent') }),
    cleanUp: () => Promise.resolve(),
  },
  {
    name: 'lxc',
    skip: () =>
      missingPart('lxc (root and lxc tools)', lxcAvailable(), 'apt-get install lxc and run as root'),
    env: (dataDir) =>
      Promise.resolve({
        AIQSO_DRIVER: 'lxc',
        AIQSO_LXC_PATH: path.join(dataDir, 'lxc'),
        AIQSO_LXC_BRIDGE: lxcNet.bridge,
        AIQSO_LXC_SUBNET: lxcNet.subnet,
      }),
    open: (dataDir) =>
      Promise.resolve(
        new LxcDriver({
          db: testDb.db,
          log: createLogger('silent'),
          lxcPath: path.join(dataDir, 'lxc'),
          ...lxcNet,
        }),
      ),
    cleanUp: () => removeBridge(lxcNet.bridge),
  },
];

describe.each(DRIVERS)(
  'signup to a live subdomain, suspension, reactivation and purge ($name driver)',
  { timeout: 300_000 },
  (driverCase) => {
    it('goes from signup and a paid checkout to the dashboard answering at <slug>.localhost, with one welcome email', async ({
      skip,
    }) => {
      if (driverCase.skip()) return skip();
      const dataDir = await mkdtemp(path.join(os.tmpdir(), 'aiqso-live-'));
      const port = await freePort();
      const env = {
        AIQSO_DATA_DIR: dataDir,
        AIQSO_HTTP_PORT: String(port),
        DATABASE_URL: testDb.url,
        SMTP_URL: `smtp://127.0.0.1:${smtpPort}`,
        AIQSO_GRACE_DAYS: '0',
        ...(await driverCase.env(dataDir)),
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

        let page: EdgeAnswer = { status: 0, headers: {}, body: '' };
        for (let i = 0; i < 600 && !(page.status === 200 && page.body.includes('Acme Widgets')); i++) {
          await new Promise((r) => setTimeout(r, 200));
          page = await getAs(`acme.localhost:${port}`, port);
        }
        expect(page.status).toBe(200);
        expect(page.body).toContain('<h1>Acme Widgets</h1>');

        for (let i = 0; i < 150 && !mail.some((m) => m.to.includes('owner@acme.test')); i++) {
          await new Promise((r) => setTimeout(r, 200));
        }
        const welcome = mail.filter((m) => m.to.includes('owner@acme.test'));
        expect(welcome).toHaveLength(1);
        expect(welcome[0]!.raw).toContain('Welcome to your Acme Widgets workspace');

        // The owner signs in on the dashboard, which asks the control-plane API (from inside its
        // container, with its tenant-scoped key) for the workspace's status; a wrong password is refused.
        const host = `acme.localhost:${port}`;
        expect((await dashboardLogin(host, port, 'owner@acme.test', 'wrong password')).status).toBe(401);
        const signedIn = await dashboardLogin(host, port, 'owner@acme.test', 'correct horse battery staple');
        expect(signedIn.status).toBe(303);
        expect(signedIn.cookie).toMatch(/^aiqso_dash=/);
        const home = await viaEdge(host, port, { headers: { cookie: signedIn.cookie! } });
        expect(home.status).toBe(200);
        expect(home.body).toContain('Signed in as owner@acme.test');
        expect(home.body).toContain('Workspace status: <strong>active</strong>');

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
        const until = async (want: (p: EdgeAnswer) => boolean) => {
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
        const driver = await driverCase.open(dataDir);
        expect(await driver.list()).toEqual([]);
        await driver.close();
        expect(
          await testDb.db.selectFrom('routes').select('id').where('tenant_id', '=', tenantId).execute(),
        ).toEqual([]);
        expect(
          await testDb.db.selectFrom('users').select('id').where('tenant_id', '=', tenantId).execute(),
        ).toEqual([]);
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
        // Containers outlive the control plane by design; this test removes them.
        const driver = await driverCase.open(dataDir);
        for (const c of await driver.list()) await driver.destroy(c.name);
        await driver.close();
        await driverCase.cleanUp(dataDir);
      }
    });
  },
);
