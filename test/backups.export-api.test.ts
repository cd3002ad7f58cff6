import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  exportMailKey,
  removeExpiredExports,
  TENANT_EXPORT_KIND,
  tenantExportReconciler,
} from '../src/backup/export.ts';
import { loadCatalog } from '../src/catalog/load.ts';
import { syncCatalog } from '../src/catalog/sync.ts';
import { newId } from '../src/core/ids.ts';
import { runSteps } from '../src/orchestrator/engine.ts';
import { findPgDump } from '../src/services/final-backup.ts';
import {
  dropServiceDatabase,
  ensureServiceDatabase,
  serviceDatabaseName,
} from '../src/services/databases.ts';
import { recordSnapshot } from './support/backups.ts';
import { createHarness, PASSWORD, type Harness } from './support/identity.ts';

const exec = promisify(execFile);

/**
 * The owner's "Export my data" through the API, end to end against real
 * PostgreSQL: asked for (202, one at a time per tenant), built by the
 * tenant-export resource's steps from a fresh snapshot, mailed to the owner
 * through the outbox with a link; the link streams an archive holding the
 * tenant's notes (CSV and dump) and nothing of the other tenant nor any
 * secret, to a signed-in owner of that tenant only (token or cookie), refuses
 * the other tenant's owner, a member, an API key and a platform admin, and
 * answers 410 once the export expired. Requests and downloads are audited.
 * Then the admin's tenant restore route: bad input refused naming the field.
 */
let h: Harness;
let admin: pg.Pool;
let scratch: string;
const notes = { alpha: 'alpha note about the spring order', bravo: 'bravo note nobody else may read' };
const SEALED = 'sealed-db-password-export-api-test';
const dbs: { name: string; role: string; password: string }[] = [];
const tsIds: string[] = [];

beforeAll(async () => {
  h = await createHarness();
  scratch = await mkdtemp(path.join(os.tmpdir(), 'aiqso-export-api-'));
  admin = new pg.Pool({ connectionString: h.db.url, max: 2 });
  await syncCatalog(h.db.db, loadCatalog());
  const service = await h.db.db
    .selectFrom('services')
    .select('id')
    .where('key', '=', 'notes')
    .executeTakeFirstOrThrow();
  const url = new URL(h.db.url);
  for (const t of [h.a, h.b]) {
    const name = serviceDatabaseName(t.id, 'notes');
    const d = { name, role: name, password: `pw-${t.slug}-notes` };
    dbs.push(d);
    await ensureServiceDatabase(admin, d);
    const pool = new pg.Pool({
      host: url.hostname,
      port: Number(url.port || 5432),
      user: d.role,
      password: d.password,
      database: d.name,
      max: 1,
    });
    await pool.query(
      'CREATE TABLE drafts (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, kind text NOT NULL, body text NOT NULL)',
    );
    await pool.query(`INSERT INTO drafts (kind, body) VALUES ('note', $1)`, [
      notes[t.slug as keyof typeof notes],
    ]);
    await pool.end();
    const id = newId('tenantService');
    tsIds.push(id);
    await h.db.db
      .insertInto('tenant_services')
      .values({
        id,
        tenant_id: t.id,
        service_id: service.id,
        status: 'active',
        db_name: d.name,
        db_role: d.role,
        db_password_enc: SEALED,
      })
      .execute();
  }
}, 120_000);
afterAll(async () => {
  for (const d of dbs) await dropServiceDatabase(admin, d).catch(() => undefined);
  await admin.end();
  await h.close();
  await rm(scratch, { recursive: true, force: true });
});

const exportsDir = () => path.join(h.dataDir, 'exports');

/** The reconciler a worker registers for exports (src/platform/backups.ts), against the test's databases. */
function exportReconciler() {
  const url = new URL(h.db.url);
  return tenantExportReconciler({
    db: h.db.db,
    dbLocal: { host: url.hostname, port: Number(url.port || 5432) },
    rootSecret: (id) => Promise.resolve(dbs[tsIds.indexOf(id)]!.password),
    dir: exportsDir(),
    publicUrl: h.config.publicUrl,
  });
}

/** What a worker does with the export's resource: its steps, run until they are done. */
async function buildOnWorker(exportId: string) {
  const reconciler = exportReconciler();
  const resource = await h.db.db
    .selectFrom('resources')
    .select(['spec', 'tenant_id'])
    .where('kind', '=', TENANT_EXPORT_KIND)
    .where('id', '=', exportId)
    .executeTakeFirstOrThrow();
  return runSteps({
    reconciler,
    target: {
      kind: TENANT_EXPORT_KIND,
      id: exportId,
      tenantId: resource.tenant_id,
      spec: reconciler.parseSpec(resource.spec),
      generation: 1,
    },
    deleting: false,
    previous: [],
    converged: false,
    signal: new AbortController().signal,
    onProgress: () => Promise.resolve(),
  });
}

const get = (url: string, token?: string, headers: Record<string, string> = {}) =>
  h.api.inject({ method: 'GET', url, headers: { ...(token ? h.bearer(token) : {}), ...headers } });
const ask = (slug: string, token: string) =>
  h.api.inject({ method: 'POST', url: `/api/v1/tenants/${slug}/exports`, headers: h.bearer(token) });
const message = (res: { json<T>(): T }) => res.json<{ error: { message: string } }>().error.message;

async function apiKey(slug: string, token: string): Promise<string> {
  const res = await h.api.inject({
    method: 'POST',
    url: `/api/v1/tenants/${slug}/api-keys`,
    headers: h.bearer(token),
    payload: { name: 'export test', role: 'tenant_owner' },
  });
  expect(res.statusCode, res.body).toBe(201);
  return res.json<{ key: string }>().key;
}

async function allFiles(root: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(root, { withFileTypes: true })) {
    const p = path.join(root, e.name);
    if (e.isDirectory()) out.push(...(await allFiles(p)));
    else out.push(p);
  }
  return out;
}

describe("the owner's Export my data", { timeout: 180_000 }, () => {
  let exportId: string;
  let downloadPath: string;

  it('is asked for once at a time per tenant (202, then 409 naming the one being built)', async () => {
    const first = await ask(h.a.slug, h.a.owner.token);
    expect(first.statusCode, first.body).toBe(202);
    exportId = first.json<{ export: { id: string; expiresAt: string } }>().export.id;
    expect(exportId).toMatch(/^exp_[0-9a-z]{26}$/);
    const second = await ask(h.a.slug, h.a.owner.token);
    expect(second.statusCode).toBe(409);
    expect(message(second)).toMatch(new RegExp(`export ${exportId} .* is still being built`));
    // The other tenant has its own.
    const theirs = await ask(h.b.slug, h.b.owner.token);
    expect(theirs.statusCode).toBe(202);
    const listed = await get(`/api/v1/tenants/${h.a.slug}/exports`, h.a.owner.token);
    expect(listed.statusCode).toBe(200);
    expect(listed.json<{ exports: unknown[] }>().exports).toEqual([
      expect.objectContaining({ id: exportId, status: 'building', download: null, sizeBytes: null }),
    ]);
    // While it is being built there is nothing to download.
    const early = await get(`/api/v1/tenants/${h.a.slug}/exports/${exportId}/download`, h.a.owner.token);
    expect(early.statusCode).toBe(409);
    expect(message(early)).toMatch(/is still being built/);
  });

  it('is built by its resource and the owner is mailed a link, through the outbox, once', async () => {
    const run = await buildOnWorker(exportId);
    expect(run.steps.map((s) => [s.name, s.state])).toEqual([
      ['archive', 'done'],
      ['mail', 'done'],
    ]);
    const mail = await h.db.db
      .selectFrom('outbox')
      .select(['kind', 'payload'])
      .where('key', '=', exportMailKey(exportId))
      .executeTakeFirstOrThrow();
    const payload = (typeof mail.payload === 'string' ? JSON.parse(mail.payload) : mail.payload) as Record<
      string,
      string
    >;
    expect(mail.kind).toBe('email');
    expect(payload).toMatchObject({ to: h.a.owner.email, template: 'export-ready', tenantId: h.a.id });
    // The mail links to the workspace's own download page (a browser signs in there first; the
    // dashboard streams from the API route below with the owner's token).
    const publicUrl = new URL(h.config.publicUrl);
    expect(payload.text).toContain(
      `${publicUrl.protocol}//${h.a.slug}.${publicUrl.host}/exports/${exportId}/download`,
    );
    downloadPath = `/api/v1/tenants/${h.a.slug}/exports/${exportId}/download`;
    // Reconciled again, nothing is built or mailed twice.
    expect((await buildOnWorker(exportId)).actions).toBe(0);
    const mails = await h.db.db
      .selectFrom('outbox')
      .select('key')
      .where('key', 'like', 'export-ready:%')
      .execute();
    expect(mails).toHaveLength(1);
    const listed = await get(`/api/v1/tenants/${h.a.slug}/exports`, h.a.owner.token);
    expect(listed.json<{ exports: unknown[] }>().exports).toEqual([
      expect.objectContaining({ id: exportId, status: 'ready', download: downloadPath }),
    ]);
  });

  it("streams the tenant's notes and nothing of the other tenant nor any secret to its signed-in owner", async () => {
    const res = await get(downloadPath, h.a.owner.token);
    expect(res.statusCode, res.body).toBe(200);
    expect(res.headers['content-type']).toBe('application/gzip');
    expect(res.headers['content-disposition']).toMatch(
      /^attachment; filename="alpha-export-\d{4}-\d\d-\d\d\.tar\.gz"$/,
    );
    const row = await h.db.db
      .selectFrom('tenant_exports')
      .select(['sha256', 'size_bytes'])
      .where('id', '=', exportId)
      .executeTakeFirstOrThrow();
    expect(createHash('sha256').update(res.rawPayload).digest('hex')).toBe(row.sha256);
    expect(res.rawPayload.length).toBe(Number(row.size_bytes));

    const archive = path.join(scratch, 'alpha.tar.gz');
    await writeFile(archive, res.rawPayload);
    const out = path.join(scratch, 'unpacked');
    await mkdir(out);
    await exec('tar', ['-xzf', archive, '-C', out]);
    const root = path.join(out, 'alpha-export');
    expect(await readFile(path.join(root, 'services/notes/tables/public.drafts.csv'), 'utf8')).toContain(
      notes.alpha,
    );
    const pgRestore = path.join(path.dirname(await findPgDump()), 'pg_restore');
    const dumpSql = (
      await exec(
        pgRestore === 'pg_restore' ? 'pg_restore' : pgRestore,
        ['-f', '-', path.join(root, 'services/notes/database.dump')],
        { maxBuffer: 1 << 26 },
      )
    ).stdout;
    expect(dumpSql).toContain(notes.alpha);
    const texts = [dumpSql, ...(await Promise.all((await allFiles(root)).map((f) => readFile(f, 'latin1'))))];
    for (const text of texts) {
      expect(text).not.toContain(notes.bravo);
      expect(text).not.toContain(h.b.id);
      expect(text).not.toContain(h.b.owner.email);
      expect(text).not.toContain(SEALED);
      expect(text).not.toContain('$argon2');
      expect(text).not.toMatch(/password_hash|secret_enc|password_enc/);
    }

    // The link clicked in a browser signed in to the portal (cookie session) works the same.
    const login = await h.api.inject({
      method: 'POST',
      url: '/api/v1/auth/login',
      payload: { email: h.a.owner.email, password: PASSWORD, mode: 'cookie' },
    });
    const access = login.cookies.find((c) => c.name === 'aiqso_at');
    expect(access).toBeDefined();
    const byCookie = await get(downloadPath, undefined, { cookie: `aiqso_at=${access!.value}` });
    expect(byCookie.statusCode).toBe(200);
    expect(byCookie.rawPayload.equals(res.rawPayload)).toBe(true);
  });

  it("refuses the other tenant's owner, a member, an API key and a platform admin", async () => {
    for (const token of [h.b.owner.token, await apiKey(h.b.slug, h.b.owner.token)]) {
      const res = await get(downloadPath, token);
      expect(res.statusCode).toBe(404);
      expect(res.body).not.toContain(h.a.owner.email);
    }
    // Nor through its own tenant's URL.
    const own = await get(`/api/v1/tenants/${h.b.slug}/exports/${exportId}/download`, h.b.owner.token);
    expect(own.statusCode).toBe(404);
    expect(message(own)).toBe(`export ${exportId} not found`);
    expect((await get(downloadPath, h.a.member.token)).statusCode).toBe(403);
    const key = await get(downloadPath, await apiKey(h.a.slug, h.a.owner.token));
    expect(key.statusCode).toBe(403);
    expect(message(key)).toMatch(/signed-in owner of its tenant, not with an API key/);
    const operator = await get(downloadPath, h.admin.token);
    expect(operator.statusCode).toBe(403);
    expect(message(operator)).toMatch(/aiqso tenants export/);
    const malformed = await get(`/api/v1/tenants/${h.a.slug}/exports/exp_..%2Fetc/download`, h.a.owner.token);
    expect(malformed.statusCode).toBe(400);
    expect(message(malformed)).toMatch(/params\.export/);
  });

  it('audits the request and every download, refused ones too', async () => {
    const rows = await h.db.db
      .selectFrom('audit_log')
      .select(['tenant_id', 'action', 'actor_id', 'target_id', 'result'])
      .where('action', 'in', ['tenant.export', 'tenant.export.download'])
      .orderBy('id')
      .execute();
    expect(rows).toEqual(
      expect.arrayContaining([
        {
          tenant_id: h.a.id,
          action: 'tenant.export',
          actor_id: h.a.owner.id,
          target_id: exportId,
          result: 'success',
        },
        {
          tenant_id: h.a.id,
          action: 'tenant.export',
          actor_id: h.a.owner.id,
          target_id: h.a.id,
          result: 'failure',
        },
        {
          tenant_id: h.a.id,
          action: 'tenant.export.download',
          actor_id: h.a.owner.id,
          target_id: exportId,
          result: 'success',
        },
        {
          tenant_id: h.b.id,
          action: 'tenant.export.download',
          actor_id: h.b.owner.id,
          target_id: exportId,
          result: 'failure',
        },
        {
          tenant_id: h.a.id,
          action: 'tenant.export.download',
          actor_id: h.a.member.id,
          target_id: exportId,
          result: 'denied',
        },
        {
          tenant_id: h.a.id,
          action: 'tenant.export.download',
          actor_id: h.admin.id,
          target_id: exportId,
          result: 'denied',
        },
      ]),
    );
    expect(rows.filter((r) => r.action === 'tenant.export.download' && r.result === 'success')).toHaveLength(
      2,
    );
  });

  it('works no more after its expiry (410), and retention deletes the archive', async () => {
    await h.db.db
      .updateTable('tenant_exports')
      .set({ expires_at: new Date(Date.now() - 1000) })
      .where('id', '=', exportId)
      .execute();
    const res = await get(downloadPath, h.a.owner.token);
    expect(res.statusCode).toBe(410);
    expect(message(res)).toMatch(new RegExp(`export ${exportId} expired at .* ask for a new export`));
    const listed = await get(`/api/v1/tenants/${h.a.slug}/exports`, h.a.owner.token);
    expect(listed.json<{ exports: unknown[] }>().exports).toEqual([
      expect.objectContaining({ id: exportId, status: 'expired', download: null }),
    ]);
    expect(await removeExpiredExports(h.db.db, exportsDir())).toBe(1);
    await expect(stat(path.join(exportsDir(), `${exportId}.tar.gz`))).rejects.toThrow(/ENOENT/);
    expect((await get(downloadPath, h.a.owner.token)).statusCode).toBe(410);
    // With none being built, the owner may ask again.
    expect((await ask(h.a.slug, h.a.owner.token)).statusCode).toBe(202);
  });

  it('once the platform gives up on an export, it is failed with the reason and no longer blocks another', async () => {
    const building = await h.db.db
      .selectFrom('tenant_exports')
      .select('id')
      .where('tenant_id', '=', h.a.id)
      .where('status', '=', 'building')
      .executeTakeFirstOrThrow();
    expect((await ask(h.a.slug, h.a.owner.token)).statusCode).toBe(409);
    // What the orchestrator calls, in the transaction that marks the resource failed, when it stops
    // retrying it.
    await h.db.db.transaction().execute((trx) =>
      exportReconciler().onFailed!(
        {
          id: building.id,
          tenantId: h.a.id,
          spec: { exportId: building.id, notify: true },
          error: 'pg_dump failed (1): connection refused',
        },
        trx,
      ),
    );
    const listed = await get(`/api/v1/tenants/${h.a.slug}/exports`, h.a.owner.token);
    expect(listed.json<{ exports: unknown[] }>().exports[0]).toMatchObject({
      id: building.id,
      status: 'failed',
      error: 'pg_dump failed (1): connection refused',
      download: null,
    });
    const res = await get(`/api/v1/tenants/${h.a.slug}/exports/${building.id}/download`, h.a.owner.token);
    expect(res.statusCode).toBe(409);
    expect(message(res)).toMatch(/failed \(pg_dump failed \(1\): connection refused\); ask for a new export/);
    expect((await ask(h.a.slug, h.a.owner.token)).statusCode).toBe(202);
  });
});

describe("the admin's tenant restore route", { timeout: 120_000 }, () => {
  const restore = (slug: string, token: string, payload?: unknown) =>
    h.api.inject({
      method: 'POST',
      url: `/api/v1/tenants/${slug}/restore`,
      headers: h.bearer(token),
      ...(payload === undefined ? {} : { payload: payload as object }),
    });
  const restores = async () => (await h.db.db.selectFrom('restores').select('id').execute()).length;
  let snapshot: string;

  beforeAll(async () => {
    snapshot = await recordSnapshot(h, {
      tenantId: h.a.id,
      tenantServiceId: tsIds[0]!,
      runId: 'run_export_api_restore',
      content: 'dump',
    });
  }, 60_000);

  it('refuses bad input naming the field, an owner, a tenant without snapshots, and changes nothing', async () => {
    const badAt = await restore(h.a.slug, h.admin.token, { at: 'yesterday' });
    expect(badAt.statusCode).toBe(400);
    expect(message(badAt)).toMatch(/^body\.at: /);
    const withSnapshot = await restore(h.a.slug, h.admin.token, { snapshot });
    expect(withSnapshot.statusCode).toBe(400);
    expect(message(withSnapshot)).toMatch(/^body\.snapshot: a tenant restore takes `at`/);
    const unknown = await restore(h.a.slug, h.admin.token, { when: 'now' });
    expect(unknown.statusCode).toBe(400);
    expect(message(unknown)).toMatch(/when/);
    const early = await restore(h.a.slug, h.admin.token, { at: '2001-01-01T00:00:00Z' });
    expect(early.statusCode).toBe(404);
    expect(message(early)).toMatch(/no snapshot at or before 2001-01-01T00:00:00.000Z of notes/);
    const owner = await restore(h.a.slug, h.a.owner.token, {});
    expect(owner.statusCode).toBe(403);
    const none = await restore(h.b.slug, h.admin.token);
    expect(none.statusCode, none.body).toBe(404);
    expect(message(none)).toMatch(/of notes for this tenant/);
    expect(await restores()).toBe(0);
  });

  it('starts the same restore-tenant resources as the CLI (202), and audits it', async () => {
    const res = await restore(h.a.slug, h.admin.token, {});
    expect(res.statusCode, res.body).toBe(202);
    const { restores: started } = res.json<{
      restores: { service: string; restore: string; snapshot: string }[];
    }>();
    expect(started).toEqual([expect.objectContaining({ service: 'notes', snapshot })]);
    const resource = await h.db.db
      .selectFrom('resources')
      .select(['kind', 'tenant_id'])
      .where('id', '=', started[0]!.restore)
      .executeTakeFirstOrThrow();
    expect(resource).toEqual({ kind: 'service-restore', tenant_id: h.a.id });
    // A second one while the first runs is refused, naming it.
    const again = await restore(h.a.slug, h.admin.token, {});
    expect(again.statusCode).toBe(409);
    expect(message(again)).toMatch(new RegExp(`restore ${started[0]!.restore} of notes is still running`));
    const audit = await h.db.db
      .selectFrom('audit_log')
      .select(['tenant_id', 'actor_id', 'result'])
      .where('action', '=', 'tenant.restore')
      .orderBy('id')
      .execute();
    expect(audit).toContainEqual({ tenant_id: h.a.id, actor_id: h.admin.id, result: 'success' });
  });
});
