import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { sql, type Transaction } from 'kysely';
import pg from 'pg';
import { z } from 'zod';
import { spawnTool, WORKLOAD_PATH } from '../compute/shared/run.ts';
import type { ComputeDriver } from '../core/compute.ts';
import { DomainError } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import { tenantUrl } from '../core/services.ts';
import type { Reconciler } from '../core/reconcile.ts';
import type { Database } from '../db/database.ts';
import type { DB } from '../db/tables.ts';
import { tenantOwnerEmail } from '../db/owner.ts';
import { outboxHas, writeOutbox } from '../orchestrator/outbox.ts';
import { applyResourceIn } from '../orchestrator/resources.ts';
import { findPgDump } from '../services/final-backup.ts';
import { backupTargets, DATA_FILE } from './run.ts';

/**
 * Data portability (GDPR Art. 20): one tar.gz of everything a tenant has
 * here, taken fresh. For each service: its database as a `pg_dump -Fc` and
 * one CSV per table, both read in one exported REPEATABLE READ snapshot (so
 * they agree), and its data files as the compute driver exports them. For
 * the platform: the tenant, its users, subscriptions, services and audit
 * entries as JSON, without any secret (password hashes, TOTP secrets,
 * sealed keys are never selected: every column is named). A manifest.json
 * lists every file with its size and sha256.
 *
 * The service databases are read with each service's own role (whose
 * credentials reach only its database); the platform records with the
 * caller's connection, every query naming the tenant.
 */
export interface ExportDeps {
  db: Database;
  /** Data files are included when given (the platform's compute driver). */
  compute?: ComputeDriver;
  /** Where the control plane reaches the master database server (pg_dump and psql run here). */
  dbLocal: { host: string; port: number };
  rootSecret(tenantServiceId: string): Promise<string>;
}

export interface ManifestEntry {
  path: string;
  bytes: number;
  sha256: string;
}

export interface ExportManifest {
  format: 'aiqso-tenant-export/1';
  tenant: { id: string; slug: string };
  createdAt: string;
  files: ManifestEntry[];
  /** What the archive does not hold, and why (e.g. a Proxmox container's files). */
  omitted?: { path: string; reason: string }[];
}

/**
 * Why a driver's container files cannot go into an export, or null. On Proxmox
 * an export is a vzdump archive that stays on the cluster's backup storage,
 * which the platform cannot read back over the API: the archive would hold
 * only a note naming that volume, and leave the volume behind for nobody.
 */
function filesNotExportable(compute: ComputeDriver): string | null {
  return compute.kind === 'proxmox'
    ? "on Proxmox a container's files are saved by vzdump to the cluster's backup storage, which the platform cannot read back; the service's data is in its database dump, and the operator can extract the files from the latest backup"
    : null;
}

const IDENT_FILE = /^[A-Za-z0-9_.-]+$/;

function run(binary: string, args: string[], env: Record<string, string>, out: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawnTool(binary, args, {
      env: { PATH: WORKLOAD_PATH, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (c: string) => (stderr = (stderr + c).slice(-4096)));
    const written = open(out, 'wx', 0o600).then((f) => pipeline(child.stdout!, f.createWriteStream()));
    child.on('error', (err) =>
      reject(new DomainError('dependency_failed', `cannot run ${path.basename(binary)}: ${err.message}`)),
    );
    child.on('close', (code) => {
      written.then(
        () =>
          code === 0
            ? resolve()
            : reject(
                new DomainError(
                  'dependency_failed',
                  `${path.basename(binary)} failed (${code}): ${stderr.trim().split('\n').slice(-2).join(' | ')}`,
                ),
              ),
        reject,
      );
    });
  });
}

/** A service's database: a dump and one CSV per table, from one snapshot. */
async function exportDatabase(
  deps: ExportDeps,
  target: { name: string; role: string; password: string },
  dir: string,
): Promise<void> {
  const client = new pg.Client({
    ...deps.dbLocal,
    user: target.role,
    password: target.password,
    database: target.name,
    application_name: 'aiqso-export',
  });
  await client.connect();
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    const snapshot = (await client.query<{ id: string }>('SELECT pg_export_snapshot() AS id')).rows[0]!.id;
    const pgDump = await findPgDump();
    const bin = (name: string) => (pgDump === 'pg_dump' ? name : path.join(path.dirname(pgDump), name));
    const conn = [
      '-h',
      deps.dbLocal.host,
      '-p',
      String(deps.dbLocal.port),
      '-U',
      target.role,
      '-d',
      target.name,
    ];
    const env = { PGPASSWORD: target.password, PGCONNECT_TIMEOUT: '10' };
    await run(
      pgDump,
      ['-Fc', '--no-owner', '--no-privileges', `--snapshot=${snapshot}`, ...conn],
      env,
      path.join(dir, 'database.dump'),
    );
    const { rows } = await client.query<{ schema: string; name: string }>(
      `SELECT n.nspname AS schema, c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
          AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1, 2`,
    );
    await mkdir(path.join(dir, 'tables'), { mode: 0o700 });
    for (const t of rows) {
      const file = `${t.schema}.${t.name}.csv`;
      if (!IDENT_FILE.test(file)) continue;
      const table = `${pg.escapeIdentifier(t.schema)}.${pg.escapeIdentifier(t.name)}`;
      // psql, in the same snapshot as the dump: every table as it was at one instant.
      await run(
        bin('psql'),
        [
          ...conn,
          '--no-psqlrc',
          '-v',
          'ON_ERROR_STOP=1',
          '-q',
          '-c',
          'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY',
          '-c',
          `SET TRANSACTION SNAPSHOT ${pg.escapeLiteral(snapshot)}`,
          '-c',
          `COPY ${table} TO STDOUT WITH (FORMAT csv, HEADER true)`,
          '-c',
          'COMMIT',
        ],
        env,
        path.join(dir, 'tables', file),
      );
    }
  } finally {
    await client.query('ROLLBACK').catch(() => undefined);
    await client.end();
  }
}

/** The tenant's platform records, every column named: no password hash, TOTP secret or sealed key. */
async function platformRecords(db: Database, tenantId: string) {
  const tenant = await db
    .selectFrom('tenants')
    .select(['id', 'slug', 'company', 'status', 'created_at'])
    .where('id', '=', tenantId)
    .executeTakeFirstOrThrow();
  const users = await db
    .selectFrom('users')
    .select(['id', 'email', 'role', 'created_at', 'updated_at'])
    .where('tenant_id', '=', tenantId)
    .orderBy('created_at')
    .execute();
  const subscriptions = await db
    .selectFrom('subscriptions')
    .selectAll()
    .where('tenant_id', '=', tenantId)
    .execute();
  const services = await db
    .selectFrom('tenant_services as ts')
    .innerJoin('services as s', 's.id', 'ts.service_id')
    .select(['ts.id', 's.key', 's.name', 'ts.status', 'ts.created_at'])
    .where('ts.tenant_id', '=', tenantId)
    .orderBy('ts.created_at')
    .execute();
  const audit = await db
    .selectFrom('audit_log')
    .select(['id', 'at', 'actor_type', 'actor_id', 'action', 'target_type', 'target_id', 'result', 'details'])
    .where('tenant_id', '=', tenantId)
    .orderBy('id')
    .execute();
  return { tenant, users, subscriptions, services, audit };
}

/** Fields a record must never carry into an export, whatever a table grows. */
const SECRET_FIELD = /password|totp|secret|_enc$|token|key_hash|code_hash/i;

function withoutSecrets(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withoutSecrets);
  if (value && typeof value === 'object' && !(value instanceof Date))
    return Object.fromEntries(
      Object.entries(value)
        .filter(([k]) => !SECRET_FIELD.test(k))
        .map(([k, v]) => [k, withoutSecrets(v)]),
    );
  return value;
}

async function sha256(file: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(file), hash);
  return hash.digest('hex');
}

async function listFiles(root: string, dir = ''): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(path.join(root, dir), { withFileTypes: true })) {
    const rel = dir ? `${dir}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...(await listFiles(root, rel)));
    else out.push(rel);
  }
  return out.sort();
}

/**
 * Build the tenant's export archive at `file` (0600), replacing a half-built
 * one of the same name: its working directory `<file>.d` is removed first and
 * after, so an export killed half-way is simply built again.
 */
export async function buildTenantExport(
  deps: ExportDeps,
  tenantId: string,
  file: string,
): Promise<{ file: string; bytes: number; sha256: string; manifest: ExportManifest }> {
  const work = `${file}.d`;
  await rm(work, { recursive: true, force: true });
  await rm(file, { force: true });
  await mkdir(work, { recursive: true, mode: 0o700 });
  try {
    const records = await platformRecords(deps.db, tenantId);
    const root = path.join(work, `${records.tenant.slug}-export`);
    await mkdir(path.join(root, 'platform'), { recursive: true, mode: 0o700 });
    for (const [name, value] of Object.entries(records))
      await writeFile(
        path.join(root, 'platform', `${name}.json`),
        `${JSON.stringify(withoutSecrets(value), null, 2)}\n`,
        { mode: 0o600 },
      );
    const omitted: { path: string; reason: string }[] = [];
    for (const s of await backupTargets(deps.db, tenantId)) {
      if (!IDENT_FILE.test(s.service)) continue;
      const dir = path.join(root, 'services', s.service);
      await mkdir(dir, { recursive: true, mode: 0o700 });
      if (s.database)
        await exportDatabase(deps, { ...s.database, password: await deps.rootSecret(s.id) }, dir);
      if (
        deps.compute &&
        s.containerName &&
        (await deps.compute.status(s.containerName)).state !== 'missing'
      ) {
        const reason = filesNotExportable(deps.compute);
        if (reason) {
          omitted.push({ path: `services/${s.service}/${DATA_FILE}`, reason });
          continue;
        }
        const data = path.join(dir, DATA_FILE);
        await (await open(data, 'w', 0o600)).close();
        await deps.compute.exportTo(s.containerName, data);
      }
    }
    const files: ManifestEntry[] = [];
    for (const rel of await listFiles(root))
      files.push({
        path: rel,
        bytes: (await stat(path.join(root, rel))).size,
        sha256: await sha256(path.join(root, rel)),
      });
    const manifest: ExportManifest = {
      format: 'aiqso-tenant-export/1',
      tenant: { id: records.tenant.id, slug: records.tenant.slug },
      createdAt: new Date().toISOString(),
      files,
      ...(omitted.length ? { omitted } : {}),
    };
    await writeFile(path.join(root, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`, {
      mode: 0o600,
    });
    // Written under a temporary name (0600) and renamed: a reader never sees half an archive.
    const partial = `${file}.tmp`;
    await rm(partial, { force: true });
    await run('tar', ['-czf', '-', '-C', work, path.basename(root)], {}, partial).catch(async (err) => {
      await rm(partial, { force: true });
      throw err;
    });
    await rename(partial, file);
    return { file, bytes: (await stat(file)).size, sha256: await sha256(file), manifest };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** The reconcile kind of an export: killed half-way, the worker builds it again. */
export const TENANT_EXPORT_KIND = 'tenant-export';

export const tenantExportSpecSchema = z.object({
  exportId: z.string().regex(/^exp_[0-9a-z]{26}$/),
  /** Mail the owner a download link once the archive is ready (an owner's "Export my data"). */
  notify: z.boolean().optional(),
});
export type TenantExportSpec = z.infer<typeof tenantExportSpecSchema>;

/** How long an export's archive is kept (and its link works) unless configured otherwise. */
export const EXPORT_TTL_DAYS = 7;

/** Where an export's archive lives: `<dir>/<export id>.tar.gz`. */
export const exportFile = (dir: string, exportId: string): string => {
  if (!/^exp_[0-9a-z]{26}$/.test(exportId)) throw new Error(`not an export id: ${exportId}`);
  return path.join(dir, `${exportId}.tar.gz`);
};

/** The API path an export's archive is downloaded from (a signed-in owner of the tenant). */
export const exportDownloadPath = (slug: string, exportId: string): string =>
  `/api/v1/tenants/${encodeURIComponent(slug)}/exports/${exportId}/download`;

/** The outbox key of an export's "ready" mail: one per export, however often it is reconciled. */
export const exportMailKey = (exportId: string): string => `export-ready:${exportId}`;

/**
 * Record an export and queue its resource, in one transaction; returns its id.
 * `ttlMs` is how long the archive is kept once asked for. One export per
 * tenant is built at a time: while one is still building (and not past its
 * expiry) another is refused (conflict, naming it), decided under a lock per
 * tenant so two requests at once cannot both pass.
 */
export async function requestTenantExport(
  db: Database,
  req: { tenantId: string; requestedBy: string | null; ttlMs: number; notify?: boolean },
): Promise<{ exportId: string; expiresAt: Date }> {
  const exportId = newId('export');
  const expiresAt = new Date(Date.now() + req.ttlMs);
  await db.transaction().execute(async (trx) => {
    await sql`SELECT pg_advisory_xact_lock(hashtext(${`tenant-export:${req.tenantId}`}))`.execute(trx);
    const running = await trx
      .selectFrom('tenant_exports')
      .select(['id', 'created_at'])
      .where('tenant_id', '=', req.tenantId)
      .where('status', '=', 'building')
      .where('expires_at', '>', new Date())
      .orderBy('created_at', 'desc')
      .executeTakeFirst();
    if (running)
      throw new DomainError(
        'conflict',
        `export ${running.id} (asked for at ${running.created_at.toISOString()}) is still being built; one export per tenant is built at a time, ask again once it is ready`,
        { details: { export: running.id } },
      );
    await trx
      .insertInto('tenant_exports')
      .values({ id: exportId, tenant_id: req.tenantId, requested_by: req.requestedBy, expires_at: expiresAt })
      .execute();
    const spec: TenantExportSpec = { exportId };
    if (req.notify) spec.notify = true;
    await applyResourceIn(trx, { kind: TENANT_EXPORT_KIND, id: exportId, tenantId: req.tenantId, spec });
  });
  return { exportId, expiresAt };
}

/** Who is mailed an export's link: the user who asked, when one of the tenant's owners; else its first owner. */
async function exportRecipient(db: Database, tenantId: string, requestedBy: string | null): Promise<string> {
  const userId = requestedBy?.startsWith('user:') ? requestedBy.slice('user:'.length) : undefined;
  if (userId) {
    const asked = await db
      .selectFrom('users')
      .select('email')
      .where('id', '=', userId)
      .where('tenant_id', '=', tenantId)
      .where('role', '=', 'tenant_owner')
      .executeTakeFirst();
    if (asked) return asked.email;
  }
  return tenantOwnerEmail(db, tenantId);
}

function byteSize(bytes: number): string {
  if (bytes < 1024) return `${bytes} bytes`;
  const units = ['KB', 'MB', 'GB', 'TB'];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}

/**
 * The `tenant-export` resource: step `archive`, done once the archive is
 * recorded and on disk; then, for an owner's export (`notify`), step `mail`:
 * the owner's mail with the download link, written to the outbox once. Given
 * up on, the export is marked `failed` with the reason (and no longer counts
 * as the tenant's running export).
 */
export function tenantExportReconciler(
  deps: ExportDeps & { dir: string; publicUrl?: string },
): Reconciler<TenantExportSpec> {
  const row = (id: string) =>
    deps.db.selectFrom('tenant_exports').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
  return {
    kind: TENANT_EXPORT_KIND,
    parseSpec: (raw) => tenantExportSpecSchema.parse(raw),
    steps: [
      {
        name: 'archive',
        async observe(ctx) {
          const r = await row(ctx.resource.spec.exportId);
          // An expired export is done: its archive is gone on purpose.
          if (r.status === 'expired') return 'ok';
          if (r.status !== 'ready' || !r.file) return 'missing';
          return (await stat(r.file).catch(() => undefined)) ? 'ok' : 'missing';
        },
        async apply(ctx) {
          const r = await row(ctx.resource.spec.exportId);
          if (r.expires_at.getTime() <= Date.now()) {
            await deps.db
              .updateTable('tenant_exports')
              .set({ status: 'expired', finished_at: new Date() })
              .where('id', '=', r.id)
              .execute();
            return;
          }
          // A failed export the operator retries (aiqso jobs) is being built again.
          await deps.db
            .updateTable('tenant_exports')
            .set({ status: 'building', error: null })
            .where('id', '=', r.id)
            .where('status', '=', 'failed')
            .execute();
          await mkdir(deps.dir, { recursive: true, mode: 0o700 });
          const built = await buildTenantExport(deps, r.tenant_id, exportFile(deps.dir, r.id));
          await deps.db
            .updateTable('tenant_exports')
            .set({
              status: 'ready',
              file: built.file,
              size_bytes: String(built.bytes),
              sha256: built.sha256,
              error: null,
              finished_at: new Date(),
            })
            .where('id', '=', r.id)
            .where('status', '=', 'building')
            .execute();
        },
      },
      {
        name: 'mail',
        async observe(ctx) {
          if (!ctx.resource.spec.notify) return 'ok';
          if ((await row(ctx.resource.spec.exportId)).status === 'expired') return 'ok';
          return (await outboxHas(deps.db, exportMailKey(ctx.resource.spec.exportId))) ? 'ok' : 'missing';
        },
        async apply(ctx) {
          if (!deps.publicUrl) throw new DomainError('internal', 'no public URL to link the export from');
          const r = await row(ctx.resource.spec.exportId);
          const tenant = await deps.db
            .selectFrom('tenants')
            .select(['slug', 'company'])
            .where('id', '=', r.tenant_id)
            .executeTakeFirstOrThrow();
          const to = await exportRecipient(deps.db, r.tenant_id, r.requested_by);
          // The workspace's own page for it: a browser signs in there first (the API route takes a token).
          const link = `${tenantUrl(deps.publicUrl, tenant.slug)}/exports/${r.id}/download`;
          const until = r.expires_at.toISOString().replace('T', ' ').slice(0, 16);
          await writeOutbox(deps.db, {
            key: exportMailKey(r.id),
            kind: 'email',
            payload: {
              template: 'export-ready',
              tenantId: r.tenant_id,
              to,
              subject: `Your ${tenant.company} data export is ready`,
              text:
                `The export of your ${tenant.company} workspace (${tenant.slug}) is ready: ` +
                `${byteSize(Number(r.size_bytes ?? 0))}, every service's database (a dump and one CSV per table), ` +
                `its files and your workspace's records.\n\n` +
                `Download it until ${until} UTC, signed in as an owner of ${tenant.slug}:\n${link}\n\n` +
                `The link works only for a signed-in owner of this workspace; after ${until} UTC it ` +
                `stops working and the archive is deleted. Its SHA-256 is ${r.sha256 ?? 'unknown'}.\n`,
            },
          });
        },
      },
    ],
    // In the transaction that marks the resource failed: a crash can never leave an export given up
    // on still `building` (which would refuse the tenant's next export until it expired).
    async onFailed(failure, trx) {
      const spec = tenantExportSpecSchema.safeParse(failure.spec);
      if (!spec.success) return;
      await (trx as Transaction<DB>)
        .updateTable('tenant_exports')
        .set({ status: 'failed', error: failure.error, finished_at: new Date() })
        .where('id', '=', spec.data.exportId)
        .where('status', '=', 'building')
        .execute();
    },
  };
}

/** Delete the archives of exports past their expiry (the retention schedule); returns how many. */
export async function removeExpiredExports(db: Database, dir: string, now = new Date()): Promise<number> {
  const expired = await db
    .selectFrom('tenant_exports')
    .select(['id'])
    .where('status', 'in', ['building', 'ready', 'failed'])
    .where('expires_at', '<=', now)
    .execute();
  for (const e of expired) {
    const file = exportFile(dir, e.id);
    await rm(file, { force: true });
    await rm(`${file}.tmp`, { force: true });
    await rm(`${file}.d`, { recursive: true, force: true });
    await db
      .updateTable('tenant_exports')
      .set({ status: 'expired', file: null })
      .where('id', '=', e.id)
      .execute();
  }
  return expired.length;
}
