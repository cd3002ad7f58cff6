import { readdir, readFile, rm } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dropServiceDatabase, listServiceDatabases } from '../src/services/databases.ts';
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
 * The data plane through control-plane restarts (#19), per driver, on a real
 * `aiqso up` with its embedded PostgreSQL: a tenant with a database-backed
 * service (Notes) answers 200 through the edge again after a graceful stop, a
 * kill -9, and a restart that finds the database's old port taken by
 * something else (the containers are then reconfigured). Resyncs are an hour
 * apart, so only the one every start runs can repair anything; no reconcile
 * fails and no mail is sent twice. With an external database the tenant
 * processes do not stop with the platform: they serve, database included,
 * while it is down.
 */
const PASSWORD = 'correct horse battery staple';

interface Services {
  services: { service: string; status: string; statusReason: string | null; phase: string | null }[];
}

async function api(platform: LivePlatform, method: string, url: string, token?: string, body?: object) {
  const res = await fetch(`http://127.0.0.1:${platform.port}${url}`, {
    method,
    headers: {
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...(body ? { 'content-type': 'application/json' } : {}),
    },
    body: body ? JSON.stringify(body) : undefined,
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

async function login(platform: LivePlatform, email: string): Promise<string> {
  const { body } = await api(platform, 'POST', '/api/v1/auth/login', undefined, {
    email,
    password: PASSWORD,
  });
  return body.accessToken as string;
}

async function notes(platform: LivePlatform, token: string) {
  const { body } = await api(platform, 'GET', '/api/v1/tenants/acme/services', token);
  return (body as unknown as Services).services.find((s) => s.service === 'notes');
}

/** The browser cookies of the owner's dashboard sign-in, per platform (the edge lets only members reach Notes). */
const signedIn = new WeakMap<LivePlatform, string>();

const notesPage = (platform: LivePlatform) =>
  viaEdge(`acme.localhost:${platform.port}`, platform.port, {
    path: '/notes/',
    headers: { cookie: signedIn.get(platform) ?? '' },
  });

/** What the edge tells a service about a signed-in user: a request straight to Notes carries it too. */
const AS_EDGE = {
  'x-aiqso-user-id': 'usr_owner',
  'x-aiqso-user-email': 'owner@acme.test',
  'x-aiqso-user-role': 'tenant_owner',
  'x-aiqso-tenant-id': 'ten_acme',
};

/** Mail files per template: the files driver writes one `.eml` per outbox key. */
async function mails(platform: LivePlatform): Promise<string[]> {
  const files = await readdir(path.join(platform.dataDir, 'mail')).catch(() => [] as string[]);
  return files.filter((f) => f.endsWith('.eml')).sort();
}

/** DATABASE_URL as the driver wrote it for the Notes container. */
async function notesDatabaseUrl(platform: LivePlatform, driver: string): Promise<URL> {
  const root = path.join(platform.dataDir, driver === 'lxc' ? 'lxc' : 'containers');
  const name = (await readdir(root)).find((n) => n.endsWith('-notes'))!;
  if (driver === 'lxc') {
    const env = await readFile(path.join(root, name, 'aiqso', 'env'), 'utf8');
    return new URL(/^export DATABASE_URL='([^']*)'$/m.exec(env)![1]!);
  }
  const env = JSON.parse(await readFile(path.join(root, name, 'env.json'), 'utf8')) as Record<string, string>;
  return new URL(env.DATABASE_URL!);
}

/** The pid each container's workload runs as: the process, or the LXC container's init (as the driver started it). */
async function workloadPids(platform: LivePlatform, driver: string): Promise<Record<string, number>> {
  const root = path.join(platform.dataDir, driver === 'lxc' ? 'lxc' : 'containers');
  const pids: Record<string, number> = {};
  for (const name of (await readdir(root)).filter((n) => n.startsWith('aiqso-'))) {
    const file =
      driver === 'lxc'
        ? path.join(root, name, 'aiqso', 'applied.json')
        : path.join(root, name, 'container.json');
    pids[name] = (JSON.parse(await readFile(file, 'utf8')) as { pid: number }).pid;
  }
  return pids;
}

/** `http://127.0.0.1:<port>` of the process driver's Notes and dashboard workloads, bypassing the edge. */
async function directEndpoints(platform: LivePlatform): Promise<{ notes: string; dashboard: string }> {
  const root = path.join(platform.dataDir, 'containers');
  const at = async (suffix: string) => {
    const name = (await readdir(root)).find((n) => n.endsWith(suffix))!;
    const state = JSON.parse(await readFile(path.join(root, name, 'container.json'), 'utf8')) as {
      hostPort: number;
    };
    return `http://127.0.0.1:${state.hostPort}`;
  };
  return { notes: await at('-notes'), dashboard: await at('-dashboard') };
}

const recordedPort = async (platform: LivePlatform) =>
  Number((await readFile(path.join(platform.dataDir, 'pg-port'), 'utf8')).trim());

/** An active tenant `acme` with Notes answering through the edge; returns the mail files sent so far. */
async function tenantWithNotes(platform: LivePlatform): Promise<string[]> {
  const signup = await platform.signup({
    company: 'Acme',
    slug: 'acme',
    email: 'owner@acme.test',
    password: PASSWORD,
  });
  expect(signup.status).toBe(201);
  const paid = await fetch(`${signup.checkoutUrl}/pay`, { method: 'POST', redirect: 'manual' });
  expect(paid.status).toBe(303);
  expect((await platform.until('acme', (p) => p.status === 200, 180_000)).status).toBe(200);
  const token = await login(platform, 'owner@acme.test');
  const subscribed = await api(platform, 'POST', '/api/v1/tenants/acme/services', token, {
    service: 'notes',
  });
  expect(subscribed.status).toBe(202);
  const active = await pollUntil(
    () => notes(platform, token),
    (s) => s?.status === 'active' || s?.status === 'failed',
    180_000,
  );
  expect(active).toMatchObject({ status: 'active' });
  const host = `acme.localhost:${platform.port}`;
  const signIn = await dashboardLogin(host, platform.port, 'owner@acme.test', PASSWORD);
  expect(signIn.status).toBe(303);
  signedIn.set(platform, signIn.cookies);
  expect(
    (
      await pollUntil(
        () => notesPage(platform),
        (p) => p.status === 200,
        30_000,
      )
    ).status,
  ).toBe(200);
  const ready = await pollUntil(
    () => mails(platform),
    (m) => m.some((f) => f.startsWith('service-ready')) && m.some((f) => f.startsWith('welcome')),
    60_000,
  );
  expect(ready.filter((f) => f.startsWith('service-ready'))).toHaveLength(1);
  return ready;
}

/**
 * After a restart: dashboard and Notes answer 200 through the edge, with at
 * most the start's one resync to repair them, no reconcile failed and no new mail.
 */
async function servesAgain(platform: LivePlatform, mailsBefore: string[]): Promise<void> {
  const dashboard = await platform.until('acme', (p) => p.status === 200, 180_000);
  expect(dashboard.status).toBe(200);
  const page = await pollUntil(
    () => notesPage(platform),
    (p) => p.status === 200,
    180_000,
    250,
  );
  expect(page.status).toBe(200);
  expect(page.body).toContain('<h1>Notes</h1>');
  // The start's resync has run (its line is logged); the log is written at least every second, so
  // a moment later it holds every line up to now.
  await pollUntil(
    () => Promise.resolve(platform.output()),
    (log) => /"msg":"resync"/.test(log),
    10_000,
  );
  await new Promise((r) => setTimeout(r, 1500));
  const log = platform.output();
  expect(log.match(/"msg":"resync"/g)).toHaveLength(1);
  expect(log).not.toMatch(/"msg":"(reconcile failed; will retry|resource failed; operators alerted)"/);
  const token = await login(platform, 'owner@acme.test');
  expect(await notes(platform, token)).toMatchObject({ status: 'active', statusReason: null });
  expect(await mails(platform)).toEqual(mailsBefore);
}

for (const driver of driverCases()) {
  const skip = driver.skip();
  describe(`the data plane with the ${driver.name} driver`, { timeout: 900_000 }, () => {
    let platform: LivePlatform;
    let mailsBefore: string[];

    beforeAll(async () => {
      if (skip) return;
      platform = await startLivePlatform({ driver, env: { AIQSO_RESYNC_SECONDS: '3600' } });
    }, 180_000);
    afterAll(async () => {
      if (skip || !platform) return;
      await platform.stop();
      await rm(platform.dataDir, { recursive: true, force: true });
    }, 180_000);

    it('a tenant with Notes answers through the edge', async ({ skip: skipTest }) => {
      if (skip) return skipTest();
      mailsBefore = await tenantWithNotes(platform);
    });

    it('serves again after a graceful stop and start (SIGINT)', async ({ skip: skipTest }) => {
      if (skip) return skipTest();
      const before = await workloadPids(platform, driver.name);
      expect(Object.keys(before)).toHaveLength(2);
      expect((await platform.restart('SIGINT')).code).toBe(0);
      await servesAgain(platform, mailsBefore);
      const after = await workloadPids(platform, driver.name);
      // LXC containers kept running through it; process containers stopped with the platform and its database.
      if (driver.name === 'lxc') expect(after).toEqual(before);
      else for (const name of Object.keys(before)) expect(after[name]).not.toBe(before[name]);
    });

    it('serves again after the platform is killed (SIGKILL)', async ({ skip: skipTest }) => {
      if (skip) return skipTest();
      const before = await workloadPids(platform, driver.name);
      await platform.restart('SIGKILL');
      await servesAgain(platform, mailsBefore);
      // Nobody stopped them: the next start re-adopted them as they were.
      expect(await workloadPids(platform, driver.name)).toEqual(before);
    });

    it('reconfigures the containers when the database had to move to another port', async ({
      skip: skipTest,
    }) => {
      if (skip) return skipTest();
      const oldPort = await recordedPort(platform);
      expect((await notesDatabaseUrl(platform, driver.name)).port).toBe(String(oldPort));
      // Something else takes the database's port while the platform is down (and hangs up on whoever calls).
      const squatter = net.createServer((socket) => socket.destroy());
      try {
        await platform.restart(
          'SIGTERM',
          () => new Promise<void>((r) => squatter.listen(oldPort, '127.0.0.1', r)),
        );
        const newPort = await recordedPort(platform);
        expect(newPort).not.toBe(oldPort);
        await servesAgain(platform, mailsBefore);
        expect((await notesDatabaseUrl(platform, driver.name)).port).toBe(String(newPort));
        expect(platform.output()).toMatch(/"steps":\["container"[^\]]*\],"msg":"drift repaired"/);
      } finally {
        await new Promise((r) => squatter.close(r));
      }
    });
  });
}

describe('the data plane with an external database (process driver)', { timeout: 600_000 }, () => {
  const processDriver = driverCases().find((d) => d.name === 'process')!;
  let master: TestDatabase;
  let platform: LivePlatform;
  let mailsBefore: string[];

  beforeAll(async () => {
    master = await createTestDatabase({ max: 2 });
    platform = await startLivePlatform({
      databaseUrl: master.url,
      driver: processDriver,
      env: { AIQSO_RESYNC_SECONDS: '3600' },
    });
  }, 180_000);
  afterAll(async () => {
    if (platform) {
      await platform.stop(master.db);
      await rm(platform.dataDir, { recursive: true, force: true });
    }
    // The service databases live on the shared test server: drop them with the platform's database.
    for (const name of master ? await listServiceDatabases(master.pool) : [])
      await dropServiceDatabase(master.pool, { name, role: name });
    await master?.drop();
  }, 180_000);

  it('keeps serving, database included, while the control plane is down, and after it is back', async () => {
    mailsBefore = await tenantWithNotes(platform);
    const before = await workloadPids(platform, 'process');
    const endpoints = await directEndpoints(platform);
    let whileDown: { status: number; body: string }[] = [];
    expect(
      (
        await platform.restart('SIGINT', async () => {
          // No control plane: straight to the workloads. Notes reads its own database to answer `/`.
          whileDown = await Promise.all(
            [`${endpoints.notes}/`, `${endpoints.dashboard}/healthz`].map(async (url) => {
              const res = await fetch(url, { headers: AS_EDGE });
              return { status: res.status, body: await res.text() };
            }),
          );
        })
      ).code,
    ).toBe(0);
    expect(whileDown.map((r) => r.status)).toEqual([200, 200]);
    expect(whileDown[0]!.body).toContain('<h1>Notes</h1>');
    await servesAgain(platform, mailsBefore);
    expect(await workloadPids(platform, 'process')).toEqual(before);
  });
});

const lxcDriver = driverCases().find((d) => d.name === 'lxc')!;
describe('the data plane with an external database (lxc driver)', { timeout: 600_000 }, () => {
  const skip = lxcDriver.skip();
  let master: TestDatabase;
  let platform: LivePlatform;
  let mailsBefore: string[];

  beforeAll(async () => {
    if (skip) return;
    master = await createTestDatabase({ max: 2 });
    platform = await startLivePlatform({
      databaseUrl: master.url,
      driver: lxcDriver,
      env: { AIQSO_RESYNC_SECONDS: '3600' },
    });
  }, 180_000);
  afterAll(async () => {
    if (skip) return;
    if (platform) {
      await platform.stop(master.db);
      await rm(platform.dataDir, { recursive: true, force: true });
    }
    for (const name of master ? await listServiceDatabases(master.pool) : [])
      await dropServiceDatabase(master.pool, { name, role: name });
    await master?.drop();
  }, 180_000);

  it('keeps the containers running while the control plane is down; a loopback database is out of their reach meanwhile', async ({
    skip: skipTest,
  }) => {
    if (skip) return skipTest();
    mailsBefore = await tenantWithNotes(platform);
    const before = await workloadPids(platform, 'lxc');
    const compute = await lxcDriver.open(platform.dataDir, master.db);
    const endpoint = async (suffix: string) => {
      const name = Object.keys(before).find((n) => n.endsWith(suffix))!;
      const { host, port } = (await compute.status(name)).endpoint!;
      return `http://${host}:${port}`;
    };
    const urls = [`${await endpoint('-dashboard')}/healthz`, `${await endpoint('-notes')}/`];
    await compute.close();
    let whileDown: number[] = [];
    await platform.restart('SIGINT', async () => {
      whileDown = await Promise.all(urls.map(async (url) => (await fetch(url, { headers: AS_EDGE })).status));
    });
    // The dashboard serves; Notes answers, but its database (127.0.0.1:5432, forwarded by the
    // control plane's host gateway) is unreachable until the control plane is back (README).
    expect(whileDown).toEqual([200, 503]);
    await servesAgain(platform, mailsBefore);
    expect(await workloadPids(platform, 'lxc')).toEqual(before);
  });
});
