import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newId } from '../src/core/ids.ts';
import { alertAdmins, DIGEST_THRESHOLD } from '../src/health/monitor.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';

/**
 * Operator alerts for incidents: one per opening and one per resolution, each
 * once however often the round runs; a digest when many are waiting at once.
 */
let testDb: TestDatabase;
let tenantId: string;
beforeAll(async () => {
  testDb = await createTestDatabase();
  tenantId = newId('tenant');
  await testDb.db
    .insertInto('tenants')
    .values({ id: tenantId, slug: 'alerts', company: 'Alerts Ltd' })
    .execute();
});
afterAll(() => testDb?.drop());

const open = (n: number) =>
  testDb.db
    .insertInto('incidents')
    .values(
      Array.from({ length: n }, (_, i) => ({
        id: newId('incident'),
        tenant_id: tenantId,
        target_id: `tsv_target${i}_${Math.random()}`,
        target_kind: 'service' as const,
        target_name: `Service ${i}`,
        reason: 'answered 500',
      })),
    )
    .returning('id')
    .execute();
const alerts = () =>
  testDb.db
    .selectFrom('outbox')
    .select(['key', 'payload'])
    .where('kind', '=', 'alert')
    .orderBy('id')
    .execute();

describe('incident alerts to the operators', () => {
  it('sends one alert per opening and per resolution, once', async () => {
    const [a, b] = await open(2);
    await alertAdmins(testDb.db);
    await alertAdmins(testDb.db);
    expect((await alerts()).map((x) => x.key)).toEqual([
      `incident:${a!.id}:opened:admin`,
      `incident:${b!.id}:opened:admin`,
    ]);
    await testDb.db
      .updateTable('incidents')
      .set({ resolved_at: new Date() })
      .where('id', '=', a!.id)
      .execute();
    await alertAdmins(testDb.db);
    await alertAdmins(testDb.db);
    expect((await alerts()).map((x) => x.key)).toEqual([
      `incident:${a!.id}:opened:admin`,
      `incident:${b!.id}:opened:admin`,
      `incident:${a!.id}:resolved:admin`,
    ]);
  });

  it('sends one digest when more than the threshold open at once', async () => {
    const before = (await alerts()).length;
    await open(DIGEST_THRESHOLD + 2);
    await alertAdmins(testDb.db);
    await alertAdmins(testDb.db);
    const after = (await alerts()).slice(before);
    expect(after).toHaveLength(1);
    expect(after[0]!.key).toMatch(/^incident-digest:/);
    expect(after[0]!.payload).toMatchObject({
      subject: `${DIGEST_THRESHOLD + 2} incident(s) opened, 0 resolved`,
    });
    expect((after[0]!.payload as { text: string }).text.match(/answered 500/g)).toHaveLength(
      DIGEST_THRESHOLD + 2,
    );
  });
});
