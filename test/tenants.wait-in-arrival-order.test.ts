import os from 'node:os';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sleep } from '../src/compute/shared/run.ts';
import { requestReconcile } from '../src/orchestrator/queue.ts';
import { DASHBOARD_REQUEST_MB } from '../src/services/hosts.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import { driverCases, pollUntil, startLivePlatform, type LivePlatform } from './support/live-platform.ts';

/**
 * Tenants waiting for room are placed in the order they began to wait (#27).
 * Room is freed (the host's memory raised in its row, as when an operator
 * changes it) and, in the same transaction, the tenant that arrived last is
 * woken to look first, as a poll or a wake in any order may have it: it must
 * not take the room of one that waited longer.
 */
const processDriver = driverCases().find((d) => d.name === 'process')!;

let testDb: TestDatabase;
let platform: LivePlatform | undefined;

beforeAll(async () => {
  testDb = await createTestDatabase();
});
afterAll(async () => {
  await platform?.stop();
  await testDb?.drop();
});

describe('waiting for room (process driver)', { timeout: 400_000 }, () => {
  it('places waiting tenants in arrival order as room frees, one dashboard at a time', async () => {
    // This machine becomes the host; keep back all but 1.5 dashboard requests: alpha fits, no one else.
    const totalMb = Math.floor(os.totalmem() / 1024 ** 2);
    const allocatable = Math.floor(DASHBOARD_REQUEST_MB * 1.5);
    platform = await startLivePlatform({
      databaseUrl: testDb.url,
      driver: processDriver,
      env: { AIQSO_HOST_RESERVE_MB: String(totalMb - allocatable) },
    });
    const live = platform;
    const pay = async (slug: string) => {
      const signup = await live.signup({ company: `${slug} Ltd`, slug, email: `owner@${slug}.test` });
      expect(signup.status).toBe(201);
      const paid = await fetch(`${signup.checkoutUrl}/pay`, { method: 'POST', redirect: 'manual' });
      expect(paid.status).toBe(303);
    };
    const statuses = async () =>
      Object.fromEntries(
        (await testDb.db.selectFrom('tenants').select(['slug', 'status']).execute()).map((t) => [
          t.slug,
          t.status,
        ]),
      );
    /** When the tenant's placement step began to wait, once it does. */
    const waitingSince = (slug: string) =>
      pollUntil(
        async () => {
          const t = await testDb.db
            .selectFrom('tenants')
            .select('id')
            .where('slug', '=', slug)
            .executeTakeFirst();
          if (!t) return null;
          const r = await testDb.db
            .selectFrom('resources')
            .select('steps')
            .where('kind', '=', 'tenant')
            .where('id', '=', t.id)
            .executeTakeFirst();
          const step = r?.steps.find((s) => s.name === 'placement' && s.state === 'waiting');
          return step?.waitingSince ?? null;
        },
        (since) => since !== null,
        60_000,
      );

    await pay('alpha');
    await live.until('alpha', (p) => p.status === 200, 120_000);
    // Three wait, one after the other.
    const arrivals: string[] = [];
    for (const slug of ['beta', 'gamma', 'delta']) {
      await pay(slug);
      arrivals.push((await waitingSince(slug))!);
    }
    expect([...arrivals].sort()).toEqual(arrivals);
    expect(await statuses()).toMatchObject({ alpha: 'active', beta: 'provisioning', gamma: 'provisioning' });

    // Room for one more dashboard, delta looking first: beta goes live, not delta.
    const delta = await testDb.db
      .selectFrom('tenants')
      .select('id')
      .where('slug', '=', 'delta')
      .executeTakeFirstOrThrow();
    const addRoom = () =>
      testDb.db.transaction().execute(async (trx) => {
        await trx
          .updateTable('hosts')
          .set({ memory_mb: sql`memory_mb + ${DASHBOARD_REQUEST_MB}` })
          .execute();
        await requestReconcile(
          trx,
          { kind: 'tenant', id: delta.id },
          { reason: 'test: the last looks first' },
        );
      });
    await addRoom();
    const afterFirst = await pollUntil(
      statuses,
      (s) => s.beta === 'active' || s.gamma === 'active' || s.delta === 'active',
      120_000,
    );
    expect(afterFirst).toMatchObject({ beta: 'active', gamma: 'provisioning', delta: 'provisioning' });
    await live.until('beta', (p) => p.status === 200, 60_000);
    // Still nothing for the others while no room frees (their polls keep refusing).
    await sleep(5_000);
    expect(await statuses()).toMatchObject({ gamma: 'provisioning', delta: 'provisioning' });

    // Room for one more: gamma, who waited before delta.
    await addRoom();
    const afterSecond = await pollUntil(
      statuses,
      (s) => s.gamma === 'active' || s.delta === 'active',
      120_000,
    );
    expect(afterSecond).toMatchObject({ gamma: 'active', delta: 'provisioning' });

    // And room for the last: delta.
    await addRoom();
    await pollUntil(statuses, (s) => s.delta === 'active', 120_000);
    await live.until('delta', (p) => p.status === 200, 60_000);
  });
});
