import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProcessDriver } from '../src/compute/process/driver.ts';
import { newId } from '../src/core/ids.ts';
import { createEdgeMetrics } from '../src/edge/edge-metrics.ts';
import { createLogger } from '../src/observability/logger.ts';
import { collectUsage } from '../src/usage/collect.ts';
import { startEdgeUsageReporter } from '../src/usage/edge-report.ts';
import { addHours } from '../src/usage/metrics.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';

/**
 * Edges report their requests per tenant through the database: two edges
 * (two registries, as two processes have) counting for the same tenants, and
 * the collector's `requests` for the hour is their sum, per tenant.
 */
const log = createLogger('silent');
let db: TestDatabase;
const a = newId('tenant');
const b = newId('tenant');
const H = new Date('2031-07-01T09:00:00Z');

beforeAll(async () => {
  db = await createTestDatabase();
  await db.db
    .insertInto('tenants')
    .values([
      { id: a, slug: 'edgea', company: 'A' },
      { id: b, slug: 'edgeb', company: 'B' },
    ])
    .execute();
});
afterAll(async () => {
  await db?.drop();
});

function edge(name: string) {
  const metrics = createEdgeMetrics(new Registry());
  const routeA = { id: newId('route'), tenantId: a };
  const routeB = { id: newId('route'), tenantId: b };
  const platform = { id: 'platform', tenantId: null };
  const reporter = startEdgeUsageReporter({ db: db.db, metrics, log, edge: name, intervalMs: 3_600_000 });
  const hit = (route: { id: string; tenantId: string | null }, n: number, status = 200) => {
    for (let i = 0; i < n; i++) metrics.countRequest(route, status);
  };
  return { metrics, reporter, hit, routeA, routeB, platform };
}

describe('edge usage reports', () => {
  it('two edges report through the database; the hour counts each request once', async () => {
    const one = edge('edge-1');
    const two = edge('edge-2');
    one.hit(one.routeA, 30);
    one.hit(one.routeA, 5, 404);
    one.hit(one.routeB, 7);
    one.hit(one.platform, 50);
    await one.reporter.flush(new Date(H.getTime() + 60_000));
    // A scrape in between (what /metrics does) moves nothing twice.
    await one.metrics.requests.get();
    one.hit(one.routeA, 10);
    await one.reporter.flush(new Date(H.getTime() + 120_000));
    await one.reporter.flush(new Date(H.getTime() + 180_000)); // nothing new: adds nothing
    two.hit(two.routeA, 100);
    await two.reporter.flush(new Date(H.getTime() + 90_000));
    // Counted in the next hour: filed under it.
    two.hit(two.routeB, 3);
    await two.reporter.flush(addHours(H, 1));

    const { rows } = await db.pool.query<{ edge: string; tenant_id: string; hour: Date; requests: string }>(
      'SELECT edge, tenant_id, period_start AS hour, requests FROM usage_edge_counts ORDER BY 1, 2, 3',
    );
    expect(
      rows.map((r) => [r.edge, r.tenant_id === a ? 'a' : 'b', r.hour.toISOString(), Number(r.requests)]),
    ).toEqual([
      // Tenant ids are ULIDs made in order: a sorts before b.
      ['edge-1', 'a', H.toISOString(), 45],
      ['edge-1', 'b', H.toISOString(), 7],
      ['edge-2', 'a', H.toISOString(), 100],
      ['edge-2', 'b', addHours(H, 1).toISOString(), 3],
    ]);

    const root = await mkdtemp(path.join(os.tmpdir(), 'aiqso-usage-edge-'));
    const compute = await ProcessDriver.open({ root, log });
    try {
      const deps = {
        db: db.db,
        admin: db.pool,
        compute,
        log,
        timeZone: 'UTC',
        retention: { hourlyDays: 90, monthlyMonths: 13 },
      };
      await collectUsage(deps, addHours(H, 1));
      await collectUsage(deps, addHours(H, 1)); // again: recomputed, not added
      const requests = await db.pool.query<{ tenant_id: string; value: number }>(
        `SELECT tenant_id, value FROM usage_metrics WHERE metric = 'requests' AND period_start = $1`,
        [H],
      );
      expect(Object.fromEntries(requests.rows.map((r) => [r.tenant_id === a ? 'a' : 'b', r.value]))).toEqual({
        a: 145,
        b: 7,
      });
      // The late report of the next hour lands when that hour is collected.
      await collectUsage(deps, addHours(H, 2));
      const later = await db.pool.query<{ value: number }>(
        `SELECT value FROM usage_metrics WHERE metric = 'requests' AND period_start = $1 AND tenant_id = $2`,
        [addHours(H, 1), b],
      );
      expect(later.rows).toEqual([{ value: 3 }]);
    } finally {
      await compute.close();
      await rm(root, { recursive: true, force: true });
      await one.reporter.close();
      await two.reporter.close();
    }
  });
});
