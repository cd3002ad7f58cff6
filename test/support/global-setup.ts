import { execFileSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { TestProject } from 'vitest/node';
import { openDatabase } from '../../src/db/database.ts';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../../src/db/embedded.ts';
import { migrate } from '../../src/db/migrate.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { withDatabase } from './urls.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    /** A superuser URL on the test server (any database). */
    pgAdminUrl: string;
    /** A migrated database that test files clone. */
    pgTemplate: string;
  }
}

/**
 * dist/ up to date with src/ (the CLI the tests spawn runs it), then one PostgreSQL server per test run: TEST_DATABASE_URL's, or an embedded one
 * in a temp dir. A migrated template database is made once; each test file
 * clones its own database from it (test/support/db.ts).
 */
export default async function setup(project: TestProject) {
  // The tests run the `aiqso` command as it ships: bin/aiqso.js on the JavaScript in dist/. Rebuilt
  // here when a file under src/ changed since the last build (a no-op otherwise).
  execFileSync(
    process.execPath,
    [path.resolve(import.meta.dirname, '../../scripts/build.mjs'), '--if-stale'],
    {
      stdio: 'inherit',
    },
  );
  const log = createLogger('warn', process.stderr);
  let server: EmbeddedPostgres | undefined;
  let tmp: string | undefined;
  let adminUrl = process.env.TEST_DATABASE_URL;
  if (!adminUrl) {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'aiqso-test-pg-'));
    server = await startEmbeddedPostgres(tmp, log);
    adminUrl = server.url;
  }
  const template = `aiqso_tpl_${process.pid}`;
  const admin = openDatabase(adminUrl, { max: 1 });
  await admin.pool.query(`DROP DATABASE IF EXISTS ${template} WITH (FORCE)`);
  await admin.pool.query(`CREATE DATABASE ${template}`);
  const tpl = openDatabase(withDatabase(adminUrl, template), { max: 1 });
  await migrate(tpl.pool);
  await tpl.close();
  project.provide('pgAdminUrl', adminUrl);
  project.provide('pgTemplate', template);

  return async () => {
    await admin.pool.query(`DROP DATABASE IF EXISTS ${template} WITH (FORCE)`).catch(() => undefined);
    await admin.close();
    await server?.stop();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  };
}
