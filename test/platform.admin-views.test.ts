import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadCatalog } from '../src/catalog/load.ts';
import { syncCatalog } from '../src/catalog/sync.ts';
import { maskCredentials } from '../src/config/masked.ts';
import { newId } from '../src/core/ids.ts';
import { createHarness, type Harness } from './support/identity.ts';

/**
 * The operator's views across the platform (`/api/v1/platform/users`,
 * `…/catalog`, `…/backups`, `…/config`): platform admins only (anonymous 401,
 * tenant users 403), a bad query 400 naming the parameter, and what each
 * answers over a real database; the configuration never carries a secret's
 * value.
 */

// Secret values the configuration view must never send, each distinctive enough to search for.
const SECRETS = {
  STRIPE_SECRET_KEY: 'sk_test_consoleSecretKey7731',
  STRIPE_WEBHOOK_SECRET: 'whsec_consoleWebhookSecret4410',
  AIQSO_ADMIN_PASSWORD: 'admin-password-never-shown-9982',
  AIQSO_METRICS_TOKEN: 'metrics-token-never-shown-5521',
  PROXMOX_TOKEN_SECRET: 'pve-token-secret-never-shown-3307',
  AWS_SECRET_ACCESS_KEY: 'aws-secret-never-shown-1209',
};
const URL_PASSWORDS = {
  SMTP_URL: ['smtp://mailer:smtp-pass-hidden-8812@127.0.0.1:2525', 'smtp-pass-hidden-8812'],
  LISTMONK_URL: ['https://lm:listmonk-pass-hidden-6654@listmonk.example', 'listmonk-pass-hidden-6654'],
  AIQSO_BACKUP_REPOSITORY: [
    'rest:https://backup:restic-pass-hidden-4471@backup.example/',
    'restic-pass-hidden-4471',
  ],
} as const;

let h: Harness;

beforeAll(async () => {
  h = await createHarness({
    env: {
      ...SECRETS,
      AIQSO_BILLING: 'local',
      PROXMOX_URL: 'https://pve.example:8006',
      PROXMOX_TOKEN_ID: 'aiqso@pve!platform',
      ...Object.fromEntries(Object.entries(URL_PASSWORDS).map(([k, [v]]) => [k, v])),
    },
  });
  await syncCatalog(h.db.db, loadCatalog());
}, 120_000);

afterAll(async () => {
  await h?.close();
});

const get = (url: string, token?: string) =>
  h.api.inject({ method: 'GET', url, headers: token ? h.bearer(token) : {} });

const ROUTES = [
  '/api/v1/platform/users',
  '/api/v1/platform/catalog',
  '/api/v1/platform/backups',
  '/api/v1/platform/config',
];

describe('platform admin views', () => {
  it('refuse anonymous callers (401) and tenant users (403)', async () => {
    for (const url of ROUTES) {
      expect((await get(url)).statusCode, url).toBe(401);
      const owner = await get(url, h.a.owner.token);
      expect(owner.statusCode, url).toBe(403);
      expect(owner.json<{ error: { code: string } }>().error.code).toBe('forbidden');
      expect((await get(url, h.admin.token)).statusCode, url).toBe(200);
    }
  });

  it('are described in the OpenAPI document', async () => {
    const doc = (await get('/api/openapi.json')).json<{ paths: Record<string, { get?: object }> }>();
    for (const url of ROUTES) expect(doc.paths[url]?.get, url).toBeDefined();
  });

  it('refuse a bad query with 400 naming the parameter', async () => {
    const bad: [string, string][] = [
      ['/api/v1/platform/users?role=chief', 'role'],
      ['/api/v1/platform/users?totp=maybe', 'totp'],
      ['/api/v1/platform/users?limit=0', 'limit'],
      ['/api/v1/platform/users?offset=-1', 'offset'],
      ['/api/v1/platform/users?colour=blue', 'colour'],
      ['/api/v1/platform/backups?limit=1000', 'limit'],
      ['/api/v1/platform/backups?status=failed', 'status'],
    ];
    for (const [url, param] of bad) {
      const res = await get(url, h.admin.token);
      expect(res.statusCode, url).toBe(400);
      expect(res.body, url).toContain(param);
    }
  });

  it('lists users with tenant, role, two-factor state and last sign-in; filters and pages', async () => {
    const all = await get('/api/v1/platform/users', h.admin.token);
    const body = all.json<{
      users: {
        id: string;
        email: string;
        role: string;
        tenant: string | null;
        totp: boolean;
        lastSignInAt: string | null;
      }[];
      total: number;
    }>();
    expect(body.total).toBe(5);
    expect(body.users.map((u) => u.email)).toEqual([
      'admin@platform.test',
      'member@alpha.test',
      'member@bravo.test',
      'owner@alpha.test',
      'owner@bravo.test',
    ]);
    const admin = body.users.find((u) => u.email === 'admin@platform.test')!;
    expect(admin).toMatchObject({ role: 'platform_admin', tenant: null, totp: true });
    expect(Date.now() - Date.parse(admin.lastSignInAt!)).toBeLessThan(10 * 60_000);
    expect(body.users.find((u) => u.email === 'owner@alpha.test')).toMatchObject({
      role: 'tenant_owner',
      tenant: 'alpha',
      totp: false,
    });

    // A user who never signed in has no last sign-in.
    await h.db.db
      .insertInto('users')
      .values({ id: newId('user'), email: 'new_100%@alpha.test', role: 'tenant_member', tenant_id: h.a.id })
      .execute();
    const filtered = async (query: string) =>
      (await get(`/api/v1/platform/users?${query}`, h.admin.token)).json<{
        users: { email: string; lastSignInAt: string | null }[];
        total: number;
      }>();
    expect((await filtered('q=NEW_100%25')).users).toEqual([
      expect.objectContaining({ email: 'new_100%@alpha.test', lastSignInAt: null }),
    ]);
    // `%` and `_` are taken literally.
    expect((await filtered('q=%25')).total).toBe(1);
    expect((await filtered('tenant=alpha')).total).toBe(3);
    expect((await filtered(`tenant=${h.b.id}&role=tenant_owner`)).users.map((u) => u.email)).toEqual([
      'owner@bravo.test',
    ]);
    expect((await filtered('totp=on')).users.map((u) => u.email)).toEqual(['admin@platform.test']);
    expect((await filtered('totp=off')).total).toBe(5);
    const page2 = await filtered('limit=2&offset=2');
    expect([page2.total, page2.users.map((u) => u.email)]).toEqual([
      6,
      ['member@bravo.test', 'new_100%@alpha.test'],
    ]);
  });

  it('shows the plans and every catalog entry, with why this platform cannot run some', async () => {
    const res = await get('/api/v1/platform/catalog', h.admin.token);
    const body = res.json<{
      driver: string;
      plans: { key: string; monthlyPrice: string; services: number }[];
      services: {
        key: string;
        kind: string;
        runnable: boolean;
        whyNotRunnable: string | null;
        resources: { memoryMb: number; requestMemoryMb: number };
      }[];
    }>();
    const publicPlans = (await get('/api/v1/plans')).json<{ plans: unknown[] }>().plans;
    expect(body.plans).toEqual(publicPlans);
    expect(body.services.map((s) => s.key)).toEqual(
      loadCatalog()
        .map((t) => t.key)
        .sort(),
    );
    // What the public catalog offers is exactly what is runnable here.
    const offered = (await get('/api/v1/catalog')).json<{ services: { key: string }[] }>().services;
    expect(body.services.filter((s) => s.runnable).map((s) => s.key)).toEqual(offered.map((s) => s.key));
    const notRunnable = body.services.filter((s) => !s.runnable);
    expect(notRunnable.length).toBeGreaterThan(0);
    for (const s of notRunnable) expect(s.whyNotRunnable).toContain(s.key);
    for (const s of body.services)
      expect(s.resources.requestMemoryMb).toBeLessThanOrEqual(s.resources.memoryMb);
  });

  it('lists backup runs and verifications across tenants, failures first', async () => {
    const db = h.db.db;
    const minutesAgo = (m: number) => new Date(Date.now() - m * 60_000);
    const run = async (id: string, tenantId: string, phase: string, at: number, lastError: string | null) =>
      db
        .insertInto('resources')
        .values({
          kind: 'backup-run',
          id,
          tenant_id: tenantId,
          spec: JSON.stringify({ tenantId, purpose: 'scheduled' }),
          phase: phase as 'ready',
          steps: '[]',
          last_error: lastError,
          created_at: minutesAgo(at),
          updated_at: minutesAgo(at - 2),
        })
        .execute();
    await run('brn_alpha_old', h.a.id, 'ready', 120, null);
    await run('brn_alpha_new', h.a.id, 'ready', 30, null);
    await run('brn_bravo_bad', h.b.id, 'failed', 90, 'restic: repository is locked');
    const snapshot = (
      runId: string,
      tenantId: string,
      kind: 'database' | 'data',
      size: number,
      verified: boolean,
    ) =>
      db
        .insertInto('backups')
        .values({
          id: newId('backup'),
          tenant_id: tenantId,
          kind,
          status: 'done',
          service: 'notes',
          snapshot_id: 'abcdef01',
          run_id: runId,
          size_bytes: String(size),
          added_bytes: String(size / 2),
          duration_ms: 1500,
          verified_at: verified ? new Date() : null,
        })
        .execute();
    await snapshot('brn_alpha_new', h.a.id, 'database', 1000, true);
    await snapshot('brn_alpha_new', h.a.id, 'data', 3000, false);
    await db
      .insertInto('backup_verifications')
      .values([
        {
          id: 'bvf_alpha_ok',
          tenant_id: h.a.id,
          status: 'passed',
          rto_ms: 4200,
          read_data_percent: 5,
          snapshots: JSON.stringify(['abcdef01']),
          started_at: minutesAgo(20),
          finished_at: minutesAgo(19),
        },
        {
          id: 'bvf_bravo_bad',
          tenant_id: h.b.id,
          status: 'failed',
          read_data_percent: 5,
          error: 'row counts differ',
          started_at: minutesAgo(200),
          finished_at: minutesAgo(199),
        },
      ])
      .execute();

    const res = await get('/api/v1/platform/backups', h.admin.token);
    const body = res.json<{
      runs: {
        run: string;
        tenant: string;
        status: string;
        error: string | null;
        snapshots: number;
        verifiedSnapshots: number;
        sizeBytes: number | null;
        addedBytes: number | null;
        durationMs: number | null;
      }[];
      verifications: { id: string; status: string; error: string | null; snapshots: number }[];
    }>();
    expect(body.runs.map((r) => [r.run, r.tenant, r.status])).toEqual([
      ['brn_bravo_bad', 'bravo', 'failed'],
      ['brn_alpha_new', 'alpha', 'done'],
      ['brn_alpha_old', 'alpha', 'done'],
    ]);
    expect(body.runs[0]!.error).toBe('restic: repository is locked');
    expect(body.runs[1]).toMatchObject({
      snapshots: 2,
      verifiedSnapshots: 1,
      sizeBytes: 4000,
      addedBytes: 2000,
      durationMs: 3000,
    });
    expect(body.runs[2]).toMatchObject({ snapshots: 0, sizeBytes: null });
    expect(body.verifications.map((v) => [v.id, v.status])).toEqual([
      ['bvf_bravo_bad', 'failed'],
      ['bvf_alpha_ok', 'passed'],
    ]);
    expect(body.verifications[1]!.snapshots).toBe(1);

    const alpha = (await get(`/api/v1/platform/backups?tenant=alpha&limit=1`, h.admin.token)).json<{
      runs: { run: string }[];
      verifications: { id: string }[];
    }>();
    expect([alpha.runs.map((r) => r.run), alpha.verifications.map((v) => v.id)]).toEqual([
      ['brn_alpha_new'],
      ['bvf_alpha_ok'],
    ]);
  });

  it('masks the password of a URL and a query parameter naming a secret', () => {
    expect(maskCredentials('redis://:hunter2@cache:6379/0')).toBe('redis://:***@cache:6379/0');
    expect(maskCredentials('s3:https://s3.example/bucket')).toBe('s3:https://s3.example/bucket');
    expect(maskCredentials('https://u@host/x')).toBe('https://u@host/x');
    expect(maskCredentials('smtp://host:25?password=hunter2&tls=1')).toBe(
      'smtp://host:25?password=***&tls=1',
    );
    expect(maskCredentials('https://host/?api_key=abc&apiToken=def')).toBe(
      'https://host/?api_key=***&apiToken=***',
    );
  });

  it('shows the effective configuration without any secret value', async () => {
    const res = await get('/api/v1/platform/config', h.admin.token);
    expect(res.statusCode).toBe(200);
    for (const [name, value] of Object.entries(SECRETS)) expect(res.body, name).not.toContain(value);
    for (const [name, [, password]] of Object.entries(URL_PASSWORDS))
      expect(res.body, name).not.toContain(password);
    expect(res.body).not.toContain(h.config.masterKey!);
    const settings = res.json<{
      settings: { name: string; value: string | null; set: boolean; secret: string | null; group: string }[];
    }>().settings;
    const byName = new Map(settings.map((s) => [s.name, s]));
    expect(byName.get('STRIPE_SECRET_KEY')).toMatchObject({ value: null, set: true, secret: 'value' });
    expect(byName.get('AIQSO_MASTER_KEY')).toMatchObject({ value: null, set: true, secret: 'value' });
    expect(byName.get('SMTP_URL')).toMatchObject({
      value: 'smtp://mailer:***@127.0.0.1:2525',
      secret: 'credentials',
    });
    expect(byName.get('AIQSO_BACKUP_REPOSITORY')!.value).toBe('rest:https://backup:***@backup.example/');
    expect(byName.get('AIQSO_BILLING')).toMatchObject({ value: 'local', set: true, secret: null });
    expect(byName.get('AIQSO_HTTP_PORT')!.value).toBe('8080');
    expect(byName.get('AWS_SECRET_ACCESS_KEY')).toMatchObject({
      group: 'Backup credentials',
      value: null,
      set: true,
    });
  });
});
