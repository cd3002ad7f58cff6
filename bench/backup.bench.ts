// Backups: what the platform's restic path costs against plain pg_dump and
// pg_restore of the same databases, in the same run.
//
// 1. BENCH_TENANTS databases (default 100) of about BENCH_DB_MB each (default
//    10): the platform's database snapshot (pg_dump -Fc -Z0 streamed into
//    `restic backup --stdin`, one repository per tenant, row counts taken in
//    the dumped snapshot) against `pg_dump -Fc -f file` of each, one after
//    another — wall time ratio.
// 2. The second day: 1% more rows in each database and 0.1% of its rows
//    edited among the newest 5%, backed up again — the bytes restic added against the first
//    day's (deduplication).
// 3. One database of BENCH_RESTORE_MB (default 1024): the platform's restore
//    (`restic dump` streamed into `pg_restore --single-transaction`) against
//    `pg_restore --single-transaction` from a local dump file — ratio (goal
//    ≤ 1.5×).
// PostgreSQL: TEST_DATABASE_URL's server, else an embedded one in a temp dir.
import { spawnSync } from 'node:child_process';
import { chmod, mkdir, mkdtemp, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { restoreDatabase, snapshotDatabase, type ServiceDatabaseTarget } from '../src/backup/database.ts';
import { Restic, type ResticRepository } from '../src/backup/restic.ts';
import { startEmbeddedPostgres } from '../src/db/embedded.ts';
import { createLogger } from '../src/observability/logger.ts';
import { findPgDump } from '../src/services/final-backup.ts';

const TENANTS = Number(process.env.BENCH_TENANTS ?? 100);
const DB_MB = Number(process.env.BENCH_DB_MB ?? 10);
const RESTORE_MB = Number(process.env.BENCH_RESTORE_MB ?? 1024);
const log = createLogger('silent');
const tmp = await mkdtemp(path.join(os.tmpdir(), 'aiqso-bench-backup-'));
await chmod(tmp, 0o711);
const server = process.env.TEST_DATABASE_URL
  ? undefined
  : await startEmbeddedPostgres(path.join(tmp, 'pg'), log);
const adminUrl = new URL(process.env.TEST_DATABASE_URL ?? server!.url);
const admin = new pg.Pool({ connectionString: adminUrl.toString(), max: 2 });
const restic = new Restic({ cacheDir: path.join(tmp, 'restic-cache') });
const pgDump = await findPgDump();
const pgRestore = pgDump === 'pg_dump' ? 'pg_restore' : path.join(path.dirname(pgDump), 'pg_restore');
const prefix = `aiqso_bb_${process.pid}`;

const target = (name: string): ServiceDatabaseTarget => ({
  host: adminUrl.hostname,
  port: Number(adminUrl.port || 5432),
  name,
  role: decodeURIComponent(adminUrl.username) || 'postgres',
  password: decodeURIComponent(adminUrl.password),
});
const pgEnv = (t: ServiceDatabaseTarget) => ({ ...process.env, PGPASSWORD: t.password });
const pgArgs = (t: ServiceDatabaseTarget) => ['-h', t.host, '-p', String(t.port), '-U', t.role, '-d', t.name];

function run(binary: string, args: string[], env: NodeJS.ProcessEnv): void {
  const r = spawnSync(binary, args, { env, stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${binary} ${args[0]} failed: ${r.stderr}`);
}

/** A database of about `mb` MB: rows of 1 KB of hex text, as notes or documents would hold. */
async function createDatabase(name: string, mb: number): Promise<void> {
  await admin.query(`CREATE DATABASE ${name}`);
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  const client = new pg.Client({ connectionString: url.toString() });
  await client.connect();
  await client.query('CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL)');
  const rows = mb * 1024;
  for (let done = 0; done < rows; done += 50_000) {
    await client.query(
      `INSERT INTO notes (body) SELECT string_agg(md5(random()::text || g::text || k::text), '')
       FROM generate_series(1, $1) g, generate_series(1, 32) k GROUP BY g`,
      [Math.min(50_000, rows - done)],
    );
  }
  await client.end();
}

/**
 * A day's work: 1% more rows, and as many edits as 0.1% of the rows, among the
 * newest 5% (what people edit is mostly recent). restic cuts a stream into
 * chunks of about 1 MiB: edits scattered through a whole table, one every
 * megabyte or closer, touch nearly every chunk and deduplicate little.
 */
async function aDaysChanges(name: string): Promise<void> {
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  const client = new pg.Client({ connectionString: url.toString() });
  await client.connect();
  const { rows } = await client.query<{ n: number }>('SELECT count(*)::int AS n FROM notes');
  await client.query(
    `INSERT INTO notes (body) SELECT string_agg(md5(random()::text || g::text || k::text), '')
     FROM generate_series(1, $1) g, generate_series(1, 32) k GROUP BY g`,
    [Math.ceil(rows[0]!.n / 100)],
  );
  const n = rows[0]!.n;
  await client.query(
    `UPDATE notes SET body = md5(random()::text) || substr(body, 33)
     WHERE id IN (SELECT id FROM notes WHERE id > $1 ORDER BY random() LIMIT $2)`,
    [Math.floor(n * 0.95), Math.ceil(n / 1000)],
  );
  await client.end();
}

async function timed<T>(fn: () => T | Promise<T>): Promise<{ ms: number; value: T }> {
  const start = performance.now();
  const value = await fn();
  return { ms: performance.now() - start, value };
}

const names = Array.from({ length: TENANTS }, (_, i) => `${prefix}_${i}`);
const repos = new Map<string, ResticRepository>();
const mb = (bytes: number) => (bytes / 2 ** 20).toFixed(1);
try {
  console.log(`creating ${TENANTS} databases of ~${DB_MB} MB …`);
  for (const name of names) await createDatabase(name, DB_MB);
  for (const name of names) {
    const repo = { location: path.join(tmp, 'repos', name), password: `bench-${name}` };
    await mkdir(path.dirname(repo.location), { recursive: true });
    await restic.init(repo);
    repos.set(name, repo);
  }

  // 1. Day one.
  const dumpDir = path.join(tmp, 'dumps');
  await mkdir(dumpDir);
  const plain = await timed(() => {
    for (const name of names)
      run(
        pgDump,
        ['-Fc', '--no-owner', '-f', path.join(dumpDir, `${name}.dump`), ...pgArgs(target(name))],
        pgEnv(target(name)),
      );
  });
  let dumpBytes = 0;
  for (const name of names) dumpBytes += (await stat(path.join(dumpDir, `${name}.dump`))).size;
  const day1 = await timed(async () => {
    let added = 0;
    for (const name of names)
      added += (
        await snapshotDatabase(restic, repos.get(name)!, target(name), { tags: ['bench'], host: 'bench' })
      ).dataAdded;
    return added;
  });

  // 2. Day two: 1% more rows, 0.1% edited among the newest.
  for (const name of names) await aDaysChanges(name);
  const day2 = await timed(async () => {
    let added = 0;
    for (const name of names)
      added += (
        await snapshotDatabase(restic, repos.get(name)!, target(name), { tags: ['bench'], host: 'bench' })
      ).dataAdded;
    return added;
  });
  for (const name of names) await admin.query(`DROP DATABASE ${name} WITH (FORCE)`);
  await rm(dumpDir, { recursive: true, force: true });

  // 3. Restore of one large database.
  const big = `${prefix}_restore`;
  console.log(`creating one database of ~${RESTORE_MB} MB …`);
  await createDatabase(big, RESTORE_MB);
  const bigRepo = { location: path.join(tmp, 'repos', big), password: 'bench-restore' };
  await restic.init(bigRepo);
  const bigFile = path.join(tmp, 'big.dump');
  run(pgDump, ['-Fc', '--no-owner', '-f', bigFile, ...pgArgs(target(big))], pgEnv(target(big)));
  const snap = await snapshotDatabase(restic, bigRepo, target(big), { tags: ['bench'], host: 'bench' });
  const restoreArgs = ['--clean', '--if-exists', '--no-owner', '--single-transaction', '--exit-on-error'];
  // Alternate so neither gets a warmer cache: plain, platform, plain, platform; best of two each.
  const plainRestore: number[] = [];
  const platformRestore: number[] = [];
  for (let i = 0; i < 2; i++) {
    plainRestore.push(
      (
        await timed(() =>
          run(pgRestore, [...restoreArgs, ...pgArgs(target(big)), bigFile], pgEnv(target(big))),
        )
      ).ms,
    );
    platformRestore.push(
      (await timed(() => restoreDatabase(restic, bigRepo, snap.snapshotId, target(big)))).ms,
    );
  }
  const bigDump = (await stat(bigFile)).size;
  await admin.query(`DROP DATABASE ${big} WITH (FORCE)`);

  const best = (xs: number[]) => Math.min(...xs);
  console.log(`\nbackup of ${TENANTS} databases × ~${DB_MB} MB (pg_dump -Fc: ${mb(dumpBytes)} MB in all)`);
  console.log(`  baseline: pg_dump -Fc to files      ${(plain.ms / 1000).toFixed(1)} s   1×`);
  console.log(
    `  platform: pg_dump → restic (day 1)  ${(day1.ms / 1000).toFixed(1)} s   ${(day1.ms / plain.ms).toFixed(2)}×   added ${mb(day1.value)} MB`,
  );
  console.log(
    `  platform: day 2 (+1% rows, 0.1% edited) ${(day2.ms / 1000).toFixed(1)} s   ${(day2.ms / plain.ms).toFixed(2)}×   added ${mb(day2.value)} MB = ${((day2.value / day1.value) * 100).toFixed(1)}% of day 1`,
  );
  console.log(`\nrestore of one database of ~${RESTORE_MB} MB (dump ${mb(bigDump)} MB), best of 2`);
  console.log(`  baseline: pg_restore from a local file  ${(best(plainRestore) / 1000).toFixed(1)} s   1×`);
  console.log(
    `  platform: restic dump → pg_restore      ${(best(platformRestore) / 1000).toFixed(1)} s   ${(best(platformRestore) / best(plainRestore)).toFixed(2)}×   (goal ≤ 1.5×)`,
  );
} finally {
  for (const name of [...names, `${prefix}_restore`])
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await admin.end();
  await server?.stop();
  await rm(tmp, { recursive: true, force: true });
}
