// Regenerate src/db/schema.sql from the migrations: `npm run schema:dump`.
// Uses TEST_DATABASE_URL's server when set, else an embedded one in a temp dir.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { openDatabase } from '../src/db/database.ts';
import { startEmbeddedPostgres } from '../src/db/embedded.ts';
import { migrate } from '../src/db/migrate.ts';
import { dumpSchema } from '../src/db/schema-dump.ts';
import { createLogger } from '../src/observability/logger.ts';

const log = createLogger('warn', process.stderr);
const tmp = await mkdtemp(path.join(os.tmpdir(), 'aiqso-schema-'));
const server = process.env.TEST_DATABASE_URL ? undefined : await startEmbeddedPostgres(tmp, log);
const adminUrl = process.env.TEST_DATABASE_URL ?? server!.url;
const name = `aiqso_schema_${process.pid}`;
const admin = openDatabase(adminUrl, { max: 1 });
try {
  await admin.pool.query(`CREATE DATABASE ${name}`);
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  const target = openDatabase(url.toString(), { max: 1 });
  await migrate(target.pool);
  await target.close();
  const out = path.join(import.meta.dirname, '..', 'src', 'db', 'schema.sql');
  await writeFile(out, await dumpSchema(url.toString()));
  console.log(`wrote ${out}`);
} finally {
  await admin.pool.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await admin.close();
  await server?.stop();
  await rm(tmp, { recursive: true, force: true });
}
