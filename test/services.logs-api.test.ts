import { spawn } from 'node:child_process';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { readdir, readlink } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadCatalog } from '../src/catalog/load.ts';
import { syncCatalog } from '../src/catalog/sync.ts';
import { ProcessDriver } from '../src/compute/process/driver.ts';
import { sleep } from '../src/compute/shared/run.ts';
import type { ContainerInfo } from '../src/core/compute.ts';
import { createLogger } from '../src/observability/logger.ts';
import { LOG_APP_DIR } from './support/compute-app.ts';
import { AIQSO_BIN, cliEnv, runCli } from './support/cli.ts';
import { apiUrl } from './support/dashboard.ts';
import { createHarness, type Harness } from './support/identity.ts';

/**
 * The service-log routes over a real process container (test/fixtures/log-app)
 * in the harness's data directory: who may read, what is refused and why, and
 * the live tail ending (its files closed) when the client goes away.
 */
let h: Harness;
let driver: ProcessDriver;
let info: ContainerInfo;
let container: string;

async function subscribe(slug: string, token: string, service: string): Promise<string> {
  const res = await h.api.inject({
    method: 'POST',
    url: `/api/v1/tenants/${slug}/services`,
    headers: h.bearer(token),
    payload: { service },
  });
  expect(res.statusCode, res.body).toBe(202);
  const { rows } = await h.db.pool.query<{ container_name: string }>(
    `SELECT ts.container_name FROM tenant_services ts JOIN services s ON s.id = ts.service_id
      WHERE s.key = $1 AND ts.tenant_id = (SELECT id FROM tenants WHERE slug = $2)`,
    [service, slug],
  );
  return rows[0]!.container_name;
}

async function say(text: string): Promise<void> {
  const url = `http://${info.endpoint!.host}:${info.endpoint!.port}/say?text=${encodeURIComponent(text)}`;
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      if ((await fetch(url, { signal: AbortSignal.timeout(2000) })).ok) return;
    } catch (err) {
      if (Date.now() > deadline) throw err;
    }
    await sleep(100);
  }
}

const logsOf = (token: string, query = '', service = 'notes', slug = h.a.slug) =>
  h.api.inject({
    method: 'GET',
    url: `/api/v1/tenants/${slug}/services/${service}/logs${query}`,
    headers: h.bearer(token),
  });

beforeAll(async () => {
  h = await createHarness();
  await syncCatalog(h.db.db, loadCatalog());
  container = await subscribe(h.a.slug, h.a.owner.token, 'notes');
  driver = await ProcessDriver.open({
    root: path.join(h.dataDir, 'containers'),
    log: createLogger('silent'),
  });
  await driver.ensure({
    name: container,
    tenantId: h.a.id,
    role: 'notes',
    workload: { kind: 'app', dir: LOG_APP_DIR, entry: 'server.mjs' },
    resources: { memoryMb: 128, cores: 1, diskGb: 1 },
    port: 3000,
    env: {},
  });
  info = await driver.start(container);
  await say('hello from notes');
}, 60_000);

afterAll(async () => {
  await driver?.destroy(container);
  await driver?.close();
  await h?.close();
});

describe('GET /api/v1/tenants/{tenant}/services/{service}/logs', () => {
  it("gives members, owners and platform admins the service's last lines", async () => {
    for (const token of [h.a.member.token, h.a.owner.token, h.admin.token]) {
      const res = await logsOf(token);
      expect(res.statusCode, res.body).toBe(200);
      const body = res.json<{ service: string; lines: string[]; truncated: boolean }>();
      expect(body.service).toBe('notes');
      expect(body.lines).toEqual([expect.stringMatching(/^log-app listening on \d+$/), 'hello from notes']);
      expect(body.truncated).toBe(false);
    }
    const one = await logsOf(h.a.member.token, '?lines=1');
    expect(one.json()).toEqual({ service: 'notes', lines: ['hello from notes'], truncated: true });
  });

  it('is not audited (a read)', async () => {
    const count = async () =>
      Number(
        (
          await h.db.pool.query<{ n: string }>('SELECT count(*) AS n FROM audit_log WHERE tenant_id = $1', [
            h.a.id,
          ])
        ).rows[0]!.n,
      );
    const before = await count();
    expect((await logsOf(h.a.member.token)).statusCode).toBe(200);
    expect(await count()).toBe(before);
  });

  it('refuses a bad lines count with 400 naming it', async () => {
    for (const q of ['?lines=1001', '?lines=-1', '?lines=abc', '?lines=2.5', '?other=1']) {
      const res = await logsOf(h.a.member.token, q);
      expect(res.statusCode, `${q}: ${res.body}`).toBe(400);
      expect(res.body, q).toMatch(q === '?other=1' ? /other/ : /lines must be a whole number from 0 to 1000/);
    }
  });

  it("answers 404 for another tenant's service and for a service the tenant does not have", async () => {
    const cross = await logsOf(h.b.owner.token);
    expect(cross.statusCode).toBe(404);
    expect(cross.body).not.toContain('hello from notes');
    const none = await logsOf(h.a.member.token, '', 'calcom');
    expect(none.statusCode).toBe(404);
    expect(none.json<{ error: { message: string } }>().error.message).toBe(
      'service calcom of this tenant not found',
    );
    const unknown = await logsOf(h.a.member.token, '', 'no-such-service');
    expect(unknown.statusCode).toBe(404);
  });

  it('answers 409 with the reason for a service without a container, and for a removed one', async () => {
    await subscribe(h.a.slug, h.a.owner.token, 'social-media-manager');
    const pending = await logsOf(h.a.member.token, '', 'social-media-manager');
    expect(pending.statusCode, pending.body).toBe(409);
    expect(pending.json<{ error: { message: string } }>().error.message).toMatch(
      /^service social-media-manager has no container yet \(it is (pending|deploying)\); its logs start once it runs$/,
    );
    await h.db.pool.query(
      `UPDATE tenant_services SET status = 'removed', removed_at = '2026-12-01T10:00:00Z'
        WHERE tenant_id = $1 AND service_id = (SELECT id FROM services WHERE key = 'social-media-manager')`,
      [h.a.id],
    );
    const removed = await logsOf(h.a.member.token, '', 'social-media-manager');
    expect(removed.statusCode).toBe(409);
    expect(removed.json<{ error: { message: string } }>().error.message).toBe(
      'service social-media-manager was removed on 2026-12-01T10:00:00.000Z: its container and its logs are gone',
    );
  });
});

/** This process's open files inside `dir` (the API runs in it). */
async function openFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const fd of await readdir('/proc/self/fd')) {
    const target = await readlink(`/proc/self/fd/${fd}`).catch(() => '');
    if (target.startsWith(dir)) out.push(target);
  }
  return out;
}

describe('GET /api/v1/tenants/{tenant}/services/{service}/logs/stream', () => {
  it('sends the last lines, then what the service prints, and stops (files closed) when the client goes away', async () => {
    const base = new URL(await apiUrl(h));
    const res = await new Promise<IncomingMessage>((resolve, reject) => {
      const req = httpRequest(
        {
          host: base.hostname,
          port: base.port,
          path: `/api/v1/tenants/${h.a.slug}/services/notes/logs/stream?lines=1`,
          headers: h.bearer(h.a.member.token),
        },
        resolve,
      );
      req.on('error', reject);
      req.end();
    });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toBe('text/event-stream; charset=utf-8');
    let text = '';
    res.setEncoding('utf8').on('data', (c: string) => (text += c));
    const until = async (what: string) => {
      const deadline = Date.now() + 15_000;
      while (!text.includes(what)) {
        if (Date.now() > deadline) throw new Error(`no ${what} in ${text}`);
        await sleep(50);
      }
    };
    await until('hello from notes');
    expect(text.split('\n\n')[0]).toBe('data: {"lines":["hello from notes"],"truncated":true}');
    const dir = path.join(h.dataDir, 'containers', container);
    expect((await openFiles(dir)).length).toBe(2);
    await say('printed while streaming');
    await until('printed while streaming');
    expect(text).toContain('data: {"lines":["printed while streaming"]}\n\n');
    res.destroy();
    const deadline = Date.now() + 5000;
    while ((await openFiles(dir)).length && Date.now() < deadline) await sleep(50);
    expect(await openFiles(dir)).toEqual([]);
  });

  it('ends by itself after `seconds`, and refuses bad values', async () => {
    const started = Date.now();
    const res = await h.api.inject({
      method: 'GET',
      url: `/api/v1/tenants/${h.a.slug}/services/notes/logs/stream?lines=1&seconds=1`,
      headers: h.bearer(h.a.member.token),
    });
    expect(res.statusCode).toBe(200);
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
    expect(res.body).toContain('"truncated":true');
    for (const q of ['?seconds=0', '?seconds=1801', '?lines=5000']) {
      const bad = await h.api.inject({
        method: 'GET',
        url: `/api/v1/tenants/${h.a.slug}/services/notes/logs/stream${q}`,
        headers: h.bearer(h.a.member.token),
      });
      expect(bad.statusCode, q).toBe(400);
      expect(bad.body).toMatch(/(seconds|lines) must be a whole number/);
    }
    const cross = await h.api.inject({
      method: 'GET',
      url: `/api/v1/tenants/${h.a.slug}/services/notes/logs/stream?seconds=1`,
      headers: h.bearer(h.b.owner.token),
    });
    expect(cross.statusCode).toBe(404);
  });
});

describe('service logs with the proxmox driver', () => {
  let px: Harness;
  beforeAll(async () => {
    px = await createHarness({
      env: {
        AIQSO_DRIVER: 'proxmox',
        PROXMOX_URL: 'https://pve.invalid:8006',
        PROXMOX_TOKEN_ID: 'aiqso@pve!control',
        PROXMOX_TOKEN_SECRET: 'not-used',
      },
    });
    await syncCatalog(px.db.db, loadCatalog());
  }, 60_000);
  afterAll(() => px?.close());

  it('refuses with 409 saying logs are not available on this driver (no made-up lines)', async () => {
    const res0 = await px.api.inject({
      method: 'POST',
      url: `/api/v1/tenants/${px.a.slug}/services`,
      headers: px.bearer(px.a.owner.token),
      payload: { service: 'notes' },
    });
    expect(res0.statusCode, res0.body).toBe(202);
    for (const suffix of ['', '/stream']) {
      const res = await px.api.inject({
        method: 'GET',
        url: `/api/v1/tenants/${px.a.slug}/services/notes/logs${suffix}`,
        headers: px.bearer(px.a.member.token),
      });
      expect(res.statusCode, res.body).toBe(409);
      expect(res.json<{ error: { message: string } }>().error.message).toBe(
        "service logs are not available with the proxmox driver: Proxmox offers no way to read a container's files or output",
      );
    }
  });
});

describe('aiqso services logs', () => {
  const env = () => ({ DATABASE_URL: h.db.url, AIQSO_DATA_DIR: h.dataDir, AIQSO_LOG_LEVEL: 'warn' });

  it('prints the last lines, as JSON too, with exit codes for what it refuses', async () => {
    const text = await runCli(['services', 'logs', h.a.slug, 'notes', '--lines', '1'], env());
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toBe('printed while streaming\n');
    const json = await runCli(['services', 'logs', h.a.id, 'notes', '--json'], env());
    expect(json.code, json.stderr).toBe(0);
    const parsed = JSON.parse(json.stdout) as { service: string; lines: string[]; truncated: boolean };
    expect(parsed).toMatchObject({ service: 'notes', truncated: false });
    expect(parsed.lines).toContain('hello from notes');

    const noTenant = await runCli(['services', 'logs', 'nobody', 'notes'], env());
    expect(noTenant.code).toBe(3);
    expect(noTenant.stderr).toContain('no tenant with slug or id "nobody"');
    const noService = await runCli(['services', 'logs', h.a.slug, 'calcom'], env());
    expect(noService.code).toBe(3);
    expect(noService.stderr).toContain('service calcom of this tenant not found');
    const removed = await runCli(['services', 'logs', h.a.slug, 'social-media-manager'], env());
    expect(removed.code).toBe(2);
    expect(removed.stderr).toContain('was removed');
    const badLines = await runCli(['services', 'logs', h.a.slug, 'notes', '--lines', 'many'], env());
    expect(badLines.code).toBe(2);
    expect(badLines.stderr).toContain('--lines must be a whole number from 0 to 1000');
    const tooMany = await runCli(['services', 'logs', h.a.slug, 'notes', '--lines', '1001'], env());
    expect(tooMany.code).toBe(2);
    expect(tooMany.stderr).toContain('lines must be a whole number from 0 to 1000');
  });

  it('shows control characters the service printed as \\xNN, not as terminal escapes', async () => {
    await say('\u001b[2J\u001b]0;owned\u0007cleared');
    const res = await runCli(['services', 'logs', h.a.slug, 'notes', '--lines', '1'], env());
    expect(res.stdout).toBe('\\x1b[2J\\x1b]0;owned\\x07cleared\n');
  });

  it('--follow prints what the service writes next, until interrupted', async () => {
    const child = spawn(
      process.execPath,
      [AIQSO_BIN, 'services', 'logs', h.a.slug, 'notes', '--lines', '0', '--follow'],
      {
        env: cliEnv(env()),
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    try {
      // The tail is open once the process has read the last lines; keep asking until a line shows.
      const deadline = Date.now() + 30_000;
      while (!out.includes('printed for the cli')) {
        if (Date.now() > deadline) throw new Error(`no line: ${out} ${err}`);
        await say('printed for the cli');
        await sleep(500);
      }
      child.kill('SIGINT');
      expect(await exited).toBe(0);
      expect(out.startsWith('printed for the cli\n')).toBe(true);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
});
