// Whether the time of an answer tells an account's existence: POST /api/v1/auth/password-reset and
// /api/v1/auth/find-workspace for an address with an account against one without, interleaved, as
// time per request and the ratio known/unknown (1.00 = indistinguishable on average).
// Uses BENCH_DATABASE_URL (a superuser URL; default the local PostgreSQL) for a scratch database.
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { assembleApi } from '../src/platform/api.ts';
import { loadConfig } from '../src/config/load.ts';
import { newId } from '../src/core/ids.ts';
import { openDatabase } from '../src/db/database.ts';
import { migrate } from '../src/db/migrate.ts';
import { generateMasterKey } from '../src/identity/secrets.ts';
import { createLogger } from '../src/observability/logger.ts';
import { createMetrics } from '../src/observability/metrics.ts';

const adminUrl = process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const name = `aiqso_bench_${randomBytes(4).toString('hex')}`;
const admin = openDatabase(adminUrl, { max: 1 });
await admin.pool.query(`CREATE DATABASE ${name}`);
const url = new URL(adminUrl);
url.pathname = `/${name}`;
const handle = openDatabase(url.toString(), { max: 10 });
const dataDir = await mkdtemp(path.join(os.tmpdir(), 'aiqso-bench-'));
try {
  await migrate(handle.pool);
  const config = loadConfig({ AIQSO_DATA_DIR: dataDir, AIQSO_MASTER_KEY: generateMasterKey() });
  const { api } = await assembleApi(
    config,
    createLogger('silent'),
    { ...handle, mode: 'external' },
    createMetrics(),
    { identity: { recoveryLimits: { perIp: 1_000_000, perAddress: 1_000_000 } } },
  );
  const tenantId = newId('tenant');
  await handle.db.insertInto('tenants').values({ id: tenantId, slug: 'bench', company: 'Bench' }).execute();
  await handle.db
    .insertInto('users')
    .values({ id: newId('user'), email: 'o@bench.test', role: 'tenant_owner', tenant_id: tenantId })
    .execute();

  const N = Number(process.env.BENCH_RECOVERY_N ?? 500);
  const post = (route: string, email: string) => () =>
    api.inject({ method: 'POST', url: route, payload: { email } });
  /** Mean µs per request of `a` and `b`, taken in turns so drift hits both alike. */
  async function pair(a: () => Promise<unknown>, b: () => Promise<unknown>): Promise<[number, number]> {
    for (let i = 0; i < 50; i++) {
      await a();
      await b();
    }
    let ta = 0n;
    let tb = 0n;
    for (let i = 0; i < N; i++) {
      const t0 = process.hrtime.bigint();
      await a();
      const t1 = process.hrtime.bigint();
      await b();
      ta += t1 - t0;
      tb += process.hrtime.bigint() - t1;
    }
    return [Number(ta) / 1000 / N, Number(tb) / 1000 / N];
  }
  const rows: [string, number, number][] = [];
  for (const route of ['/api/v1/auth/password-reset', '/api/v1/auth/find-workspace']) {
    const [known, unknown] = await pair(post(route, 'o@bench.test'), post(route, 'nobody@bench.test'));
    rows.push([route, known, unknown]);
  }
  console.log(`${N} requests each, known and unknown address in turns (µs per request):`);
  for (const [route, known, unknown] of rows) {
    console.log(
      `  ${route.padEnd(30)} known ${known.toFixed(0).padStart(6)}  unknown ${unknown.toFixed(0).padStart(6)}  known/unknown ${(known / unknown).toFixed(2)}`,
    );
  }
  await api.close();
} finally {
  await handle.close();
  await admin.pool.query(`DROP DATABASE ${name} WITH (FORCE)`);
  await admin.close();
  await rm(dataDir, { recursive: true, force: true });
}
