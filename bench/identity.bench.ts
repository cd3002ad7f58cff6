// What authentication costs a request: GET /healthz (no auth) as the baseline,
// against a JWT (signature + live-session check), an API key (hash lookup +
// last-use update), a tenant read under row-level security, and audit appends
// (serialised by one lock) alone and 8 at a time.
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
import { appendAudit } from '../src/identity/audit.ts';
import { createApiKey } from '../src/identity/api-keys.ts';
import { hashPassword } from '../src/identity/passwords.ts';
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
  );
  const tenantId = newId('tenant');
  await handle.db.insertInto('tenants').values({ id: tenantId, slug: 'bench', company: 'Bench' }).execute();
  const password = 'bench password that is long';
  await handle.db
    .insertInto('users')
    .values({
      id: newId('user'),
      email: 'o@bench.test',
      role: 'tenant_owner',
      tenant_id: tenantId,
      password_hash: await hashPassword(password),
    })
    .execute();
  const login = await api.inject({
    method: 'POST',
    url: '/api/v1/auth/login',
    payload: { email: 'o@bench.test', password },
  });
  const token = login.json<{ accessToken: string }>().accessToken;
  const { key } = await createApiKey(handle.db, {
    tenantId,
    role: 'tenant_owner',
    name: 'bench',
    createdBy: null,
  });

  const N = 2000;
  async function perRequest(label: string, run: () => Promise<unknown>): Promise<number> {
    for (let i = 0; i < 100; i++) await run();
    const start = process.hrtime.bigint();
    for (let i = 0; i < N; i++) await run();
    const us = Number(process.hrtime.bigint() - start) / 1000 / N;
    return us;
  }
  const get = (u: string, auth?: string) => () =>
    api.inject({ method: 'GET', url: u, headers: auth ? { authorization: `Bearer ${auth}` } : {} });
  const base = await perRequest('healthz', get('/healthz'));
  const rows: [string, number][] = [
    ['GET /healthz (no auth, baseline)', base],
    ['GET /api/v1/auth/me with a JWT', await perRequest('jwt', get('/api/v1/auth/me', token))],
    ['GET /api/v1/auth/me with an API key', await perRequest('key', get('/api/v1/auth/me', key))],
    [
      'GET /api/v1/tenants/bench (JWT + RLS transaction)',
      await perRequest('tenant', get('/api/v1/tenants/bench', token)),
    ],
  ];
  console.log(`requests through Fastify inject, ${N} each, mean per request:`);
  for (const [label, us] of rows)
    console.log(`  ${label.padEnd(52)} ${us.toFixed(0).padStart(6)} µs  ${(us / base).toFixed(1)}× baseline`);

  const M = 1000;
  const entry = {
    actorType: 'system' as const,
    actorId: null,
    tenantId,
    action: 'bench',
    sourceIp: '127.0.0.1',
    result: 'success' as const,
  };
  let start = process.hrtime.bigint();
  for (let i = 0; i < M; i++) await appendAudit(handle.db, entry);
  const serialUs = Number(process.hrtime.bigint() - start) / 1000 / M;
  start = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      for (let i = 0; i < M / 8; i++) await appendAudit(handle.db, entry);
    }),
  );
  const parallelUs = Number(process.hrtime.bigint() - start) / 1000 / M;
  console.log(`audit appends, ${M} each way:`);
  console.log(
    `  one writer                                           ${serialUs.toFixed(0).padStart(6)} µs per row (${(1e6 / serialUs).toFixed(0)} rows/s)`,
  );
  console.log(
    `  8 concurrent writers (one chain, one lock)           ${parallelUs.toFixed(0).padStart(6)} µs per row, ${(serialUs / parallelUs).toFixed(2)}× one writer's rate`,
  );
  await api.close();
} finally {
  await handle.close();
  await admin.pool.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await admin.close();
  await rm(dataDir, { recursive: true, force: true });
}
