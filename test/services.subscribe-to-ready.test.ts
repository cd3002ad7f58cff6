import { execFile } from 'node:child_process';
import { copyFile, mkdtemp, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CATALOG_DIR, loadCatalog } from '../src/catalog/load.ts';
import { ProcessDriver } from '../src/compute/process/driver.ts';
import { openDatabase, type DatabaseHandle } from '../src/db/database.ts';
import { freePort, startEmbeddedPostgres } from '../src/db/embedded.ts';
import { memoryRequest } from '../src/core/services.ts';
import { createLogger } from '../src/observability/logger.ts';
import { loadPlans, PLANS_FILE } from '../src/catalog/plans.ts';
import { findPgDump } from '../src/services/final-backup.ts';
import { DASHBOARD_REQUEST_MB } from '../src/services/hosts.ts';
import { setServiceResources } from '../src/services/subscriptions.ts';
import { startCli } from './support/cli.ts';
import { dashboardLogin, pollUntil, viaEdge } from './support/live-platform.ts';
import { startSmtpSink, type SmtpSink } from './support/smtp.ts';

const run = promisify(execFile);

/**
 * A tenant's service from subscription to ready and back to nothing, on a
 * real `aiqso up` (process driver, embedded PostgreSQL, which enforces
 * passwords) with a real SMTP server: deploy, reach it through the edge and
 * its database with its own role only, one ready email; a never-healthy
 * template fails with its reason; a full host refuses and creates nothing;
 * unsubscribe unroutes at once, dumps the database, and after the grace
 * period destroys the container and database.
 */
const STUCK = `key: stuck
name: Stuck
description: Never answers its health check.
kind: app
app: { dir: apps/drafts, entry: server.mjs }
resources: { memory_mb: 256, cores: 1, disk_gb: 1 }
port: 3000
health: { path: /never-healthy, status: 200, timeout_seconds: 3 }
route: { path: /stuck, strip_prefix: true }
database: { postgres: true }
env:
  APP_TITLE: Stuck
  DATABASE_URL: \${db.url}
`;

interface ServiceView {
  id: string;
  service: string;
  status: string;
  statusReason: string | null;
  url: string;
  phase: string | null;
  steps: { name: string; state: string }[];
}

let mailbox: SmtpSink;
beforeAll(async () => {
  mailbox = await startSmtpSink();
});
afterAll(() => mailbox.close());

describe('a tenant service from subscription to removal (process driver)', { timeout: 300_000 }, () => {
  it('deploys notes to <slug>.localhost/notes/, fails a never-healthy one, refuses a full host, and removes on unsubscribe', async () => {
    const dataDir = await mkdtemp(path.join(os.tmpdir(), 'aiqso-svc-'));
    const catalogDir = await mkdtemp(path.join(os.tmpdir(), 'aiqso-catalog-'));
    for (const f of ['notes.yaml', 'social-media-manager.yaml', 'espocrm.yaml'])
      await copyFile(path.join(CATALOG_DIR, f), path.join(catalogDir, f));
    await writeFile(path.join(catalogDir, 'stuck.yaml'), STUCK);
    const port = await freePort();
    const env = {
      AIQSO_DATA_DIR: dataDir,
      AIQSO_HTTP_PORT: String(port),
      AIQSO_CATALOG_DIR: catalogDir,
      SMTP_URL: `smtp://127.0.0.1:${mailbox.port}`,
      // 3.6 s of grace, and a resync every second to notice it is over.
      AIQSO_SERVICE_GRACE_HOURS: '0.001',
      AIQSO_RESYNC_SECONDS: '1',
      // The host's whole memory is allocatable, so the full host below is exactly what is claimed.
      AIQSO_HOST_RESERVE_MB: '0',
    };
    const base = `http://127.0.0.1:${port}`;
    const host = `acme.localhost:${port}`;
    const up = await startCli(['up'], env, 'Press Ctrl-C to stop.', 120_000);
    let master: DatabaseHandle | undefined;
    try {
      // An active tenant: signup on the Business plan, paid through local billing mode.
      const signup = await fetch(`${base}/api/v1/signup`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          company: 'Acme Widgets',
          slug: 'acme',
          email: 'owner@acme.test',
          password: 'correct horse battery staple',
          plan: 'business',
        }),
      });
      expect(signup.status).toBe(201);
      const { checkoutUrl, tenant } = (await signup.json()) as {
        checkoutUrl: string;
        tenant: { id: string };
      };
      expect((await fetch(`${checkoutUrl}/pay`, { method: 'POST', redirect: 'manual' })).status).toBe(303);
      const dashboard = await pollUntil(
        () => viaEdge(host, port),
        (p) => p.status === 200,
        120_000,
      );
      expect(dashboard.status).toBe(200);

      const pgServer = await startEmbeddedPostgres(dataDir, createLogger('silent'));
      master = openDatabase(pgServer.url.replace(/\/postgres$/, '/aiqso'), { max: 2 });
      const db = master.db;

      const login = await fetch(`${base}/api/v1/auth/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ email: 'owner@acme.test', password: 'correct horse battery staple' }),
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
      const list = async () => (await call('GET', '/services')).body.services as ServiceView[];
      const view = async (key: string) => (await list()).find((s) => s.service === key);

      // Subscribe: 202 pending, then the named steps run to `active`.
      const subscribed = await call('POST', '/services', { service: 'notes' });
      expect(subscribed.status).toBe(202);
      expect(subscribed.body).toMatchObject({
        service: 'notes',
        status: 'pending',
        url: `http://${host}/notes/`,
      });
      const states = new Set<string>();
      const notes = await pollUntil(
        async () => {
          const v = await view('notes');
          states.add(v?.status ?? 'none');
          return v;
        },
        // Active once healthy; the ready email and the last step follow in the same run.
        (v) => (v?.status === 'active' && v.phase === 'ready') || v?.status === 'failed',
        120_000,
      );
      expect(notes?.statusReason ?? null).toBeNull();
      expect(notes?.status).toBe('active');
      expect(states.has('deploying') || states.has('pending')).toBe(true);
      expect(notes!.steps.map((s) => [s.name, s.state])).toEqual([
        ['service record', 'done'],
        ['restore hold', 'done'],
        ['capacity check', 'done'],
        ['image pull', 'done'],
        ['container', 'done'],
        ['database', 'done'],
        ['redis user', 'done'],
        ['running', 'done'],
        ['route', 'done'],
        ['final backup', 'done'],
        ['health check', 'done'],
        ['activate', 'done'],
        ['ready email', 'done'],
        ['retire', 'done'],
      ]);
      // The tenant's status shows the service's resource and steps too.
      const shown = await call('GET', '');
      expect(shown.body.resources).toEqual(
        expect.arrayContaining([expect.objectContaining({ kind: 'tenant_service', id: notes!.id })]),
      );

      // Through the edge, with the prefix stripped, signed in (the dashboard sets the edge session).
      const notesUser = await dashboardLogin(host, port, 'owner@acme.test', 'correct horse battery staple');
      const signedInNotes = () =>
        viaEdge(host, port, { path: '/notes/', headers: { cookie: notesUser.cookies } });
      const page = await pollUntil(signedInNotes, (p) => p.status === 200, 10_000);
      expect(page.status).toBe(200);
      expect(page.body).toContain('<h1>Notes</h1>');

      // Its database, with its own role and password (from the container's environment, 0600).
      const containers = path.join(dataDir, 'containers');
      const envOf = async (name: string) =>
        JSON.parse(await readFile(path.join(containers, name, 'env.json'), 'utf8')) as Record<string, string>;
      const notesRow = await db
        .selectFrom('tenant_services')
        .select(['container_name', 'db_name', 'db_role', 'db_password_enc'])
        .where('id', '=', notes!.id)
        .executeTakeFirstOrThrow();
      expect(notesRow.db_password_enc).toMatch(/^aes256gcm:/);
      const notesUrl = new URL((await envOf(notesRow.container_name!)).DATABASE_URL!);
      expect(notesUrl.port).toBe(String(pgServer.port));
      const asNotes = new pg.Client({ connectionString: notesUrl.href });
      await asNotes.connect();
      expect((await asNotes.query('SELECT count(*)::int AS n FROM drafts')).rows).toEqual([{ n: 0 }]);
      await asNotes.end();
      const wrongUrl = new URL(notesUrl.href);
      wrongUrl.password = 'wrong';
      const wrong = new pg.Client({ connectionString: wrongUrl.href });
      await expect(wrong.connect()).rejects.toThrow(/password authentication failed/);

      // A never-healthy template: its own database exists, its health check times out, it ends failed.
      expect((await call('POST', '/services', { service: 'stuck' })).status).toBe(202);
      const stuck = await pollUntil(
        () => view('stuck'),
        (v) => v?.status === 'failed' && v.phase === 'failed',
        60_000,
      );
      expect(stuck?.status).toBe('failed');
      // The app answers 403 to anything but /healthz without the edge's identity headers.
      expect(stuck?.statusReason).toMatch(
        /^health check: GET \/never-healthy did not answer 200 within 3 s \(last answer 403\)$/,
      );
      expect(stuck?.phase).toBe('failed');
      // Not retried: still failed, the health step ran once.
      await new Promise((r) => setTimeout(r, 3000));
      expect((await view('stuck'))?.steps.find((s) => s.name === 'health check')).toMatchObject({
        state: 'failed',
        attempts: 1,
      });
      const stuckRow = await db
        .selectFrom('tenant_services')
        .select('container_name')
        .where('id', '=', stuck!.id)
        .executeTakeFirstOrThrow();
      // Another service's role cannot reach notes' database (the embedded server's pg_hba.conf refuses it).
      const stuckUrl = new URL((await envOf(stuckRow.container_name!)).DATABASE_URL!);
      const intruderUrl = new URL(stuckUrl.href);
      intruderUrl.pathname = notesUrl.pathname;
      const intruder = new pg.Client({ connectionString: intruderUrl.href });
      await expect(intruder.connect()).rejects.toThrow(
        /no pg_hba\.conf entry|permission denied for database/,
      );

      // A full host: 409 naming it, and nothing is created.
      const count = async () => ({
        rows: (await db.selectFrom('tenant_services').select('id').execute()).length,
        resources: (await db.selectFrom('resources').select('id').execute()).length,
        containers: (await readdir(containers)).length,
      });
      const hostRow = await db
        .selectFrom('hosts')
        .select(['id', 'name', 'memory_mb'])
        .executeTakeFirstOrThrow();
      // Placement counts requests: notes its measured one, stuck (none declared) its 256 MB limit.
      const requestOf = (key: string) => memoryRequest(loadCatalog().find((t) => t.key === key)!.resources);
      const claimed = DASHBOARD_REQUEST_MB + requestOf('notes') + 256; /* stuck */
      const free = requestOf('social-media-manager') - 8;
      await db
        .updateTable('hosts')
        .set({ memory_mb: claimed + free })
        .where('id', '=', hostRow.id)
        .execute();
      const before = await count();
      const full = await call('POST', '/services', { service: 'social-media-manager' });
      expect(full.status).toBe(409);
      expect(full.body).toEqual({
        error: {
          code: 'conflict',
          message: `host ${hostRow.name} has ${free} MB of memory free; social-media-manager needs ${requestOf('social-media-manager')} MB`,
          details: { host: hostRow.name },
        },
      });
      await new Promise((r) => setTimeout(r, 1500));
      expect(await count()).toEqual(before);
      await db
        .updateTable('hosts')
        .set({ memory_mb: hostRow.memory_mb })
        .where('id', '=', hostRow.id)
        .execute();

      // An image service: this driver runs only app services, so the catalog does not offer it and a
      // subscription is refused before anything is written (no plan slot taken).
      const offered = (await (await fetch(`${base}/api/v1/catalog`)).json()) as {
        services: { key: string }[];
      };
      expect(offered.services.map((s) => s.key)).toEqual(['notes', 'social-media-manager', 'stuck']);
      const beforeImage = await count();
      const image = await call('POST', '/services', { service: 'espocrm' });
      expect(image).toEqual({
        status: 409,
        body: {
          error: {
            code: 'conflict',
            message: 'espocrm is an image service; the process driver runs only app services',
            details: { driver: 'process' },
          },
        },
      });
      expect(await count()).toEqual(beforeImage);

      // One ready email, for notes only.
      const ready = await mailbox.to('owner@acme.test', { atLeast: 2 });
      expect(ready.filter((m) => m.raw.includes('Subject: Notes is ready'))).toHaveLength(1);
      expect(ready.filter((m) => /^Subject: .* is ready/m.test(m.raw))).toHaveLength(1);
      expect(ready.some((m) => m.raw.includes('Stuck'))).toBe(false);

      // New resources (what PATCH .../services/notes writes): the running process is restarted with them.
      const heapOf = async () => {
        const state = JSON.parse(
          await readFile(path.join(containers, notesRow.container_name!, 'container.json'), 'utf8'),
        ) as { pid?: number };
        if (!state.pid) return undefined;
        const argv = await readFile(`/proc/${state.pid}/cmdline`, 'utf8').catch(() => '');
        return /--max-old-space-size=(\d+)/.exec(argv)?.[1];
      };
      expect(await heapOf()).toBe('128');
      await setServiceResources(
        db,
        {
          plans: loadPlans(PLANS_FILE),
          driver: 'process',
          dataDir,
          publicUrl: `http://localhost:${port}`,
          serviceGraceHours: 1,
        },
        tenant.id,
        'notes',
        { memory_mb: 192 },
      );
      expect(await pollUntil(heapOf, (heap) => heap === '192', 30_000)).toBe('192');
      expect((await pollUntil(signedInNotes, (p) => p.status === 200, 15_000)).status).toBe(200);

      // The tenant's dashboard: the owner signs in, sees notes active with its link and the catalog's
      // other services to subscribe to, and unsubscribes notes as themselves.
      const form = (fields: Record<string, string>) => ({
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams(fields).toString(),
      });
      const signedIn = await dashboardLogin(host, port, 'owner@acme.test', 'correct horse battery staple');
      expect(signedIn.status).toBe(303);
      const cookie = signedIn.cookie!;
      const home = await viaEdge(host, port, { method: 'GET', path: '/', headers: { cookie } });
      expect(home.body).toContain(`<a href="http://${host}/notes/">Notes</a>`);
      expect(home.body).toMatch(/Notes<\/a>.*?<\/td><td><span class="badge ok">Running<\/span>/);
      expect(home.body).toMatch(
        /value="social-media-manager"><button type="submit">Subscribe to [^<]+<\/button>/,
      );
      expect(home.body).not.toContain('value="espocrm"');
      const csrf = /name="csrf" value="([^"]+)"/.exec(home.body)![1]!;
      const refused = await viaEdge(host, port, {
        method: 'POST',
        path: '/unsubscribe',
        ...form({ service: 'notes', csrf: 'forged' }),
        headers: { ...form({}).headers, cookie },
      });
      expect(refused.status).toBe(403);
      const gone = await viaEdge(host, port, {
        method: 'POST',
        path: '/unsubscribe',
        ...form({ service: 'notes', csrf }),
        headers: { ...form({}).headers, cookie },
      });
      expect(gone.status).toBe(303);
      expect(decodeURIComponent(gone.headers.location!)).toMatch(
        /^\.\/\?msg=Notes is unsubscribed\. Its data/,
      );
      expect((await view('notes'))?.status).toBe('removing');
      // The route is gone at once (the dashboard, at the root route, has no /notes/).
      const unrouted = await pollUntil(
        () => viaEdge(host, port, { path: '/notes/' }),
        (p) => p.status === 404,
        2_000,
        50,
      );
      expect(unrouted.status).toBe(404);

      // The final backup: a pg_dump archive, recorded with its size and checksum.
      const backup = await pollUntil(
        () =>
          db.selectFrom('backups').selectAll().where('tenant_service_id', '=', notes!.id).executeTakeFirst(),
        (b) => b !== undefined,
        30_000,
      );
      expect(backup).toMatchObject({ kind: 'database', status: 'done', tenant_id: tenant.id });
      expect(backup!.location).toMatch(
        new RegExp(`^${dataDir}/backups/acme/notes-final-\\d{4}-\\d\\d-\\d\\dT[\\d-]+Z\\.dump$`),
      );
      expect(Number(backup!.size_bytes)).toBe((await stat(backup!.location!)).size);
      expect(backup!.sha256).toMatch(/^[0-9a-f]{64}$/);
      const restore = path.join(path.dirname(await findPgDump()), 'pg_restore');
      const listing = await run(restore.includes('/') ? restore : 'pg_restore', [
        '--list',
        backup!.location!,
      ]);
      expect(listing.stdout).toContain('TABLE public drafts');

      // After the grace period: container and database destroyed, status removed.
      const removed = await pollUntil(
        () => view('notes'),
        (v) => v?.status === 'removed',
        60_000,
      );
      expect(removed?.status).toBe('removed');
      expect((await readdir(containers)).includes(notesRow.container_name!)).toBe(false);
      const databases = await master.pool.query('SELECT 1 FROM pg_database WHERE datname = $1', [
        notesRow.db_name,
      ]);
      expect(databases.rowCount).toBe(0);
      const roles = await master.pool.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [notesRow.db_role]);
      expect(roles.rowCount).toBe(0);

      // Subscribing again after the removal is a new subscription: deployed afresh, with its own ready email.
      expect((await call('POST', '/services', { service: 'notes' })).status).toBe(202);
      const again = await pollUntil(
        () => view('notes'),
        (v) => (v?.status === 'active' && v.phase === 'ready') || v?.status === 'failed',
        120_000,
      );
      expect(again).toMatchObject({ id: notes!.id, status: 'active' });
      const back = await pollUntil(signedInNotes, (p) => p.status === 200, 15_000);
      expect(back.body).toContain('<h1>Notes</h1>');
      const mails = await mailbox.to('owner@acme.test', { atLeast: 3 });
      expect(mails.filter((m) => m.raw.includes('Subject: Notes is ready'))).toHaveLength(2);
    } finally {
      await master?.close();
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
});
