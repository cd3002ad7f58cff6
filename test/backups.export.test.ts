import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  buildTenantExport,
  removeExpiredExports,
  requestTenantExport,
  TENANT_EXPORT_KIND,
  tenantExportReconciler,
  type ExportManifest,
} from '../src/backup/export.ts';
import { ProcessDriver } from '../src/compute/process/driver.ts';
import { newId } from '../src/core/ids.ts';
import { createLogger } from '../src/observability/logger.ts';
import { runSteps } from '../src/orchestrator/engine.ts';
import {
  dropServiceDatabase,
  ensureServiceDatabase,
  serviceDatabaseName,
} from '../src/services/databases.ts';
import { findPgDump } from '../src/services/final-backup.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';

const exec = promisify(execFile);

/**
 * The GDPR Art. 20 archive of a tenant with Notes, built against real
 * PostgreSQL: its notes are in the service's dump and in the drafts CSV, the
 * manifest's sizes and sha256 match the files, and nothing of another tenant
 * (its notes, its users) or any secret (password hashes, TOTP secrets, sealed
 * keys) is anywhere in it.
 */
let db: TestDatabase;
let dir: string;
let admin: pg.Pool;
const tenants = [
  { id: newId('tenant'), slug: 'exportco', note: 'alpha note about the spring order' },
  { id: newId('tenant'), slug: 'otherco', note: 'bravo note nobody else may read' },
];
const dbs = tenants.map((t) => {
  const name = serviceDatabaseName(t.id, 'notes');
  return { name, role: name, password: `pw-${t.slug}-notes-role` };
});
const SECRETS = {
  passwordHash: '$argon2id$v=19$m=65536,t=3,p=4$exporttestsaltvalue$exporttesthashvaluexyz',
  otherHash: '$argon2id$v=19$m=65536,t=3,p=4$othertenantsalt$othertenanthashvalue',
  totp: 'TOTPSECRETEXPORTTEST-sealed',
  dbPassword: 'sealed-db-password-export-test',
};

beforeAll(async () => {
  db = await createTestDatabase();
  dir = await mkdtemp(path.join(os.tmpdir(), 'aiqso-export-'));
  admin = new pg.Pool({ connectionString: db.url, max: 2 });
});
afterAll(async () => {
  for (const d of dbs) await dropServiceDatabase(admin, d).catch(() => undefined);
  await admin.end();
  await db.drop();
  await rm(dir, { recursive: true, force: true });
});

async function allFiles(root: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(root, { withFileTypes: true })) {
    const p = path.join(root, e.name);
    if (e.isDirectory()) out.push(...(await allFiles(p)));
    else out.push(p);
  }
  return out;
}

describe('tenant data export (GDPR Art. 20)', { timeout: 180_000 }, () => {
  it("holds the tenant's notes in the dump and the CSV, nothing of another tenant and no secret", async () => {
    const serviceId = newId('service');
    await db.db
      .insertInto('services')
      .values({ id: serviceId, key: 'notes', name: 'Notes', kind: 'app', template: '{}' })
      .execute();
    const url = new URL(db.url);
    const tsIds: string[] = [];
    for (const [i, t] of tenants.entries()) {
      await db.db
        .insertInto('tenants')
        .values({ id: t.id, slug: t.slug, company: `${t.slug} Ltd` })
        .execute();
      await ensureServiceDatabase(admin, dbs[i]!);
      const pool = new pg.Pool({
        host: url.hostname,
        port: Number(url.port || 5432),
        user: dbs[i]!.role,
        password: dbs[i]!.password,
        database: dbs[i]!.name,
        max: 1,
      });
      await pool.query(`CREATE TABLE drafts (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, kind text NOT NULL, body text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(), author_id text, author_email text)`);
      await pool.query(`INSERT INTO drafts (kind, body) VALUES ('note', $1), ('note', 'a, "quoted" line')`, [
        t.note,
      ]);
      await pool.end();
      const tsId = newId('tenantService');
      tsIds.push(tsId);
      await db.db
        .insertInto('tenant_services')
        .values({
          id: tsId,
          tenant_id: t.id,
          service_id: serviceId,
          status: 'active',
          db_name: dbs[i]!.name,
          db_role: dbs[i]!.role,
          db_password_enc: SECRETS.dbPassword,
        })
        .execute();
    }
    const owner = newId('user');
    await db.db
      .insertInto('users')
      .values([
        {
          id: owner,
          email: 'owner@exportco.test',
          password_hash: SECRETS.passwordHash,
          role: 'tenant_owner',
          tenant_id: tenants[0]!.id,
        },
        {
          id: newId('user'),
          email: 'owner@otherco.test',
          password_hash: SECRETS.otherHash,
          role: 'tenant_owner',
          tenant_id: tenants[1]!.id,
        },
      ])
      .execute();
    await db.pool.query(`INSERT INTO user_totp (user_id, secret_enc) VALUES ($1, $2)`, [owner, SECRETS.totp]);

    const compute = await ProcessDriver.open({
      root: path.join(dir, 'containers'),
      log: createLogger('silent'),
    });
    const file = path.join(dir, 'exports', 'exp.tar.gz');
    await mkdir(path.dirname(file), { recursive: true });
    let built;
    try {
      built = await buildTenantExport(
        {
          db: db.db,
          compute,
          dbLocal: { host: url.hostname, port: Number(url.port || 5432) },
          rootSecret: (id) => Promise.resolve(dbs[tsIds.indexOf(id)]!.password),
        },
        tenants[0]!.id,
        file,
      );
    } finally {
      await compute.close();
    }
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect(built.sha256).toBe(
      createHash('sha256')
        .update(await readFile(file))
        .digest('hex'),
    );
    const out = path.join(dir, 'unpacked');
    await mkdir(out);
    await exec('tar', ['-xzf', file, '-C', out]);
    const root = path.join(out, 'exportco-export');
    const manifest = JSON.parse(await readFile(path.join(root, 'manifest.json'), 'utf8')) as ExportManifest;
    expect(manifest.tenant).toEqual({ id: tenants[0]!.id, slug: 'exportco' });
    expect(manifest.files.map((f) => f.path)).toEqual([
      'platform/audit.json',
      'platform/services.json',
      'platform/subscriptions.json',
      'platform/tenant.json',
      'platform/users.json',
      'services/notes/database.dump',
      'services/notes/tables/public.drafts.csv',
    ]);
    for (const f of manifest.files) {
      const content = await readFile(path.join(root, f.path));
      expect({
        path: f.path,
        bytes: content.length,
        sha256: createHash('sha256').update(content).digest('hex'),
      }).toEqual(f);
    }

    const csv = await readFile(path.join(root, 'services/notes/tables/public.drafts.csv'), 'utf8');
    expect(csv.split('\n')[0]).toBe('id,kind,body,created_at,author_id,author_email');
    expect(csv).toContain(tenants[0]!.note);
    expect(csv).toContain('"a, ""quoted"" line"');
    // The dump, read back as SQL by pg_restore, holds the notes too.
    const pgRestore = path.join(path.dirname(await findPgDump()), 'pg_restore');
    const sqlText = (
      await exec(
        pgRestore === 'pg_restore' ? 'pg_restore' : pgRestore,
        ['-f', '-', path.join(root, 'services/notes/database.dump')],
        { maxBuffer: 1 << 26 },
      )
    ).stdout;
    expect(sqlText).toContain(tenants[0]!.note);
    const users = JSON.parse(await readFile(path.join(root, 'platform/users.json'), 'utf8')) as Record<
      string,
      unknown
    >[];
    expect(users).toEqual([
      expect.objectContaining({ id: owner, email: 'owner@exportco.test', role: 'tenant_owner' }),
    ]);

    // Nothing of the other tenant, no secret: in any file, nor in the dump's SQL.
    const texts = [sqlText, ...(await Promise.all((await allFiles(root)).map((f) => readFile(f, 'latin1'))))];
    for (const text of texts) {
      expect(text).not.toContain(tenants[1]!.note);
      expect(text).not.toContain(tenants[1]!.id);
      expect(text).not.toContain('owner@otherco.test');
      for (const secret of Object.values(SECRETS)) expect(text).not.toContain(secret);
      expect(text).not.toMatch(/password_hash|secret_enc|password_enc/);
    }
    // Built again (an export resumed after a crash) it replaces the archive, leaving no working files.
    await buildTenantExport(
      {
        db: db.db,
        dbLocal: { host: url.hostname, port: Number(url.port || 5432) },
        rootSecret: (id) => Promise.resolve(dbs[tsIds.indexOf(id)]!.password),
      },
      tenants[0]!.id,
      file,
    );
    expect(await readdir(path.dirname(file))).toEqual(['exp.tar.gz']);
  });

  it('is a resource: built by its step, done when run again, its archive removed after expiry', async () => {
    const url = new URL(db.url);
    const exportsDir = path.join(dir, 'resource-exports');
    const reconciler = tenantExportReconciler({
      db: db.db,
      dbLocal: { host: url.hostname, port: Number(url.port || 5432) },
      rootSecret: async (id) => {
        const ts = await db.db
          .selectFrom('tenant_services')
          .select('tenant_id')
          .where('id', '=', id)
          .executeTakeFirstOrThrow();
        return dbs[tenants.findIndex((t) => t.id === ts.tenant_id)]!.password;
      },
      dir: exportsDir,
    });
    const { exportId } = await requestTenantExport(db.db, {
      tenantId: tenants[0]!.id,
      requestedBy: 'operator:test',
      ttlMs: 60_000,
    });
    const target = {
      kind: TENANT_EXPORT_KIND,
      id: exportId,
      tenantId: tenants[0]!.id,
      spec: { exportId },
      generation: 1,
    };
    const step = (previous: Awaited<ReturnType<typeof runSteps>>['steps'] = []) =>
      runSteps({
        reconciler,
        target,
        deleting: false,
        previous,
        converged: previous.length > 0,
        signal: new AbortController().signal,
        onProgress: () => Promise.resolve(),
      });
    const first = await step();
    expect(first.steps.map((s) => [s.name, s.state])).toEqual([
      ['archive', 'done'],
      ['mail', 'done'],
    ]);
    // Asked for by an operator (no `notify`), nobody is mailed.
    expect(
      await db.db.selectFrom('outbox').select('key').where('key', 'like', 'export-ready:%').execute(),
    ).toEqual([]);
    const row = await db.db
      .selectFrom('tenant_exports')
      .selectAll()
      .where('id', '=', exportId)
      .executeTakeFirstOrThrow();
    expect(row).toMatchObject({ status: 'ready', file: path.join(exportsDir, `${exportId}.tar.gz`) });
    expect(row.sha256).toBe(
      createHash('sha256')
        .update(await readFile(row.file!))
        .digest('hex'),
    );
    expect(await step(first.steps)).toMatchObject({ actions: 0 });
    // Not yet expired: kept. Past its expiry: the archive deleted, the export marked expired.
    expect(await removeExpiredExports(db.db, exportsDir)).toBe(0);
    expect(await readdir(exportsDir)).toEqual([`${exportId}.tar.gz`]);
    expect(await removeExpiredExports(db.db, exportsDir, new Date(Date.now() + 120_000))).toBe(1);
    expect(await readdir(exportsDir)).toEqual([]);
    const expired = await db.db
      .selectFrom('tenant_exports')
      .select(['status', 'file'])
      .where('id', '=', exportId)
      .executeTakeFirstOrThrow();
    expect(expired).toEqual({ status: 'expired', file: null });
  });
});
