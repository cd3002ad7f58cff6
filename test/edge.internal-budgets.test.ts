import type { IncomingMessage } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compileCidrs } from '../src/edge/forwarding.ts';
import { budgetKey } from '../src/edge/rate-limit.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import { startTestEdge, type TestEdge } from './support/edge.ts';
import { rawGet } from './support/upstreams.ts';

/**
 * Dashboards call the platform's API through the edge from one internal
 * address (loopback). Each presents its own credential and gets a budget of
 * its own, so one attacker driving one dashboard cannot starve the others.
 */
let database: TestDatabase;
let edge: TestEdge;
beforeAll(async () => {
  database = await createTestDatabase();
  edge = await startTestEdge(database, { env: { AIQSO_EDGE_RATE_IP: '5', AIQSO_EDGE_RATE_TENANT: '0' } });
});
afterAll(async () => {
  await edge?.close();
  await database?.drop();
});

const burst = (n: number, extra = '') =>
  Promise.all(Array.from({ length: n }, () => rawGet(edge.port, '/healthz', 'localhost', extra)));

describe('internal callers at the edge', () => {
  it("one dashboard over its budget does not starve another's calls", async () => {
    const flooded = await burst(40, 'X-AIQSO-Dashboard-Key: aiqso_dashboard_of_tenant_a\r\n');
    expect(flooded.filter((r) => r.status === 429).length).toBeGreaterThanOrEqual(30);
    const other = await burst(5, 'X-AIQSO-Dashboard-Key: aiqso_dashboard_of_tenant_b\r\n');
    expect(other.map((r) => r.status)).toEqual([200, 200, 200, 200, 200]);
    const bearer = await burst(5, 'Authorization: Bearer a-user-token-at-tenant-c\r\n');
    expect(bearer.map((r) => r.status)).toEqual([200, 200, 200, 200, 200]);
  });

  it('budgets internal callers without a credential by address, and outside callers always by address', () => {
    const internal = compileCidrs(['127.0.0.0/8', '::1/128', '10.10.10.0/24']).list;
    const req = (headers: Record<string, string>) => ({ headers }) as unknown as IncomingMessage;
    const dash = { 'x-aiqso-dashboard-key': 'aiqso_k' };
    expect(budgetKey(req({}), '127.0.0.1', internal)).toBe('127.0.0.1');
    expect(budgetKey(req(dash), '198.51.100.1', internal)).toBe('198.51.100.1');
    expect(budgetKey(req({ authorization: 'Bearer x' }), '2001:db8::1', internal)).toBe('2001:db8::1');
    const a = budgetKey(req(dash), '127.0.0.1', internal);
    expect(a).toMatch(/^internal:[\w-]{22}$/);
    expect(budgetKey(req(dash), '10.10.10.7', internal)).toBe(a);
    expect(budgetKey(req({ authorization: 'Bearer aiqso_k' }), '::1', internal)).toBe(a);
    expect(budgetKey(req({ 'x-aiqso-dashboard-key': 'aiqso_other' }), '127.0.0.1', internal)).not.toBe(a);
    expect(budgetKey(req(dash), '127.0.0.1', undefined)).toBe('127.0.0.1');
  });
});
