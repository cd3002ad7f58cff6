import { fileURLToPath } from 'node:url';
import path from 'node:path';
import type pg from 'pg';
import {
  containerName,
  type ComputeDriver,
  type ContainerInfo,
  type Workload,
} from '../../src/core/compute.ts';
import { newId } from '../../src/core/ids.ts';
import type { Database } from '../../src/db/database.ts';
import { serviceDatabaseName } from '../../src/services/databases.ts';
import { sleep } from '../../src/compute/shared/run.ts';

/** The workload the usage tests meter: /burn?ms=N spins the CPU, /write?bytes=N writes a file. */
export const USAGE_APP_DIR = fileURLToPath(new URL('../fixtures/usage-app/', import.meta.url));
export const usageWorkload = (): Workload => ({
  kind: 'app',
  dir: path.resolve(USAGE_APP_DIR),
  entry: 'server.mjs',
});

export interface MeteredService {
  tenantId: string;
  tenantServiceId: string;
  container: string;
  dbName: string;
  info: ContainerInfo;
}

/** GET a path of a container's app, retrying while it boots. */
export async function callApp(info: ContainerInfo, pathAndQuery: string, waitMs = 30_000): Promise<unknown> {
  if (!info.endpoint) throw new Error(`${info.name} has no endpoint`);
  const url = `http://${info.endpoint.host}:${info.endpoint.port}${pathAndQuery}`;
  const deadline = Date.now() + waitMs;
  for (;;) {
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(20_000) });
      return await res.json();
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`${url} did not answer: ${(err as Error).message}`);
      await sleep(100);
    }
  }
}

/**
 * A tenant with one service as the platform records it (tenant, catalog
 * service, tenant service with its container and database names), its
 * database created on `admin`'s server and its container started by `compute`.
 */
export async function meteredService(
  db: Database,
  admin: pg.Pool,
  compute: ComputeDriver,
  slug: string,
): Promise<MeteredService> {
  const tenantId = newId('tenant');
  const serviceId = newId('service');
  const tenantServiceId = newId('tenantService');
  const key = `use${slug}`.slice(0, 30);
  const container = containerName(tenantId, key);
  const dbName = serviceDatabaseName(tenantId, key);
  await db
    .insertInto('tenants')
    .values({ id: tenantId, slug, company: `${slug} Co` })
    .execute();
  await db
    .insertInto('services')
    .values({ id: serviceId, key, name: key, kind: 'app', template: '{}' })
    .execute();
  await db
    .insertInto('tenant_services')
    .values({
      id: tenantServiceId,
      tenant_id: tenantId,
      service_id: serviceId,
      status: 'active',
      container_name: container,
      db_name: dbName,
    })
    .execute();
  await admin.query(`CREATE DATABASE ${dbName}`);
  await compute.ensure({
    name: container,
    tenantId,
    role: key,
    workload: usageWorkload(),
    resources: { memoryMb: 256, cores: 1, diskGb: 2 },
    port: 3000,
    env: { APP_NAME: slug },
  });
  const info = await compute.start(container);
  await callApp(info, '/');
  return { tenantId, tenantServiceId, container, dbName, info };
}

export interface HourRow {
  metric: string;
  value: number | null;
}

/** The usage_metrics rows of one tenant service and hour, by metric. */
export async function hourRows(
  db: Database,
  tenantServiceId: string,
  hour: Date,
): Promise<Record<string, number | null>> {
  const rows = await db
    .selectFrom('usage_metrics')
    .select(['metric', 'value'])
    .where('tenant_service_id', '=', tenantServiceId)
    .where('period_start', '=', hour)
    .execute();
  return Object.fromEntries(rows.map((r) => [r.metric, r.value]));
}

export const within = (actual: number, expected: number, share: number): boolean =>
  Math.abs(actual - expected) <= Math.abs(expected) * share;
