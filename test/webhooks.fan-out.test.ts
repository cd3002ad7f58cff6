import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fanOutHandler } from '../src/events/fan-out.ts';
import { emitEvent, eventOutboxKey } from '../src/events/emit.ts';
import { LANE_TASK } from '../src/events/lanes.ts';
import { writeOutbox } from '../src/orchestrator/outbox.ts';
import { countRows, createTestDatabase, type TestDatabase } from './support/db.ts';

/**
 * An event fans out in the transaction of the change it reports: its
 * deliveries and their lane jobs commit with it, or nothing does. An event
 * recorded the way earlier versions did (not fanned out, an outbox item to
 * do it) is still fanned out, once.
 */
let t: TestDatabase;
const tenantId = 'ten_01fanout00000000000000000';

beforeAll(async () => {
  t = await createTestDatabase();
  await t.pool.query(`INSERT INTO tenants (id, slug, company) VALUES ($1, 'fanout', 'Fan Out Ltd')`, [
    tenantId,
  ]);
  const endpoint = (id: string, tenant: string | null, events: string[]) =>
    t.pool.query(
      `INSERT INTO webhook_endpoints (id, tenant_id, url, events, secret_enc) VALUES ($1, $2, $3, $4, 'sealed')`,
      [id, tenant, `http://127.0.0.1:9/${id}`, events],
    );
  await endpoint('whe_operator', null, ['*']);
  await endpoint('whe_tenant', tenantId, ['tenant.*']);
  await endpoint('whe_services', tenantId, ['service.*']);
});
afterAll(() => t.drop());

const deliveries = async (eventId: string) =>
  (
    await t.pool.query<{ endpoint_id: string }>(
      'SELECT endpoint_id FROM webhook_deliveries WHERE event_id = $1 ORDER BY endpoint_id',
      [eventId],
    )
  ).rows.map((r) => r.endpoint_id);
const fannedOutAt = async (eventId: string) =>
  (
    await t.pool.query<{ fanned_out_at: Date | null }>(
      'SELECT fanned_out_at FROM webhook_events WHERE id = $1',
      [eventId],
    )
  ).rows[0]?.fanned_out_at;
const laneJobs = async () =>
  (
    await t.pool.query<{ key: string }>(
      'SELECT key FROM graphile_worker.jobs WHERE task_identifier = $1 ORDER BY key',
      [LANE_TASK],
    )
  ).rows.map((r) => r.key);

describe('event fan-out', () => {
  it('makes one delivery per matching endpoint, and its lane jobs, in the emitting transaction', async () => {
    const id = await t.db
      .transaction()
      .execute((trx) =>
        emitEvent(trx, { type: 'tenant.activated', tenantId, data: { tenant: { id: tenantId } } }),
      );
    expect(id).toBeDefined();
    expect(await deliveries(id!)).toEqual(['whe_operator', 'whe_tenant']);
    expect(await laneJobs()).toEqual([
      `webhook-lane:whe_operator:${tenantId}`,
      `webhook-lane:whe_tenant:${tenantId}`,
    ]);
    expect(await fannedOutAt(id!)).toBeInstanceOf(Date);
    // No outbox item or job is left to do it again.
    expect(await countRows(t, `SELECT 1 FROM outbox WHERE kind = 'webhook'`)).toBe(0);
  });

  it('leaves no event, delivery or job behind when the change rolls back', async () => {
    const deliveriesBefore = await countRows(t, 'SELECT 1 FROM webhook_deliveries');
    const jobsBefore = await countRows(t, 'SELECT 1 FROM graphile_worker.jobs');
    await expect(
      t.db.transaction().execute(async (trx) => {
        await emitEvent(trx, { type: 'tenant.suspended', tenantId, data: {} });
        throw new Error('the change failed');
      }),
    ).rejects.toThrow('the change failed');
    expect(await countRows(t, `SELECT 1 FROM webhook_events WHERE type = 'tenant.suspended'`)).toBe(0);
    expect(await countRows(t, 'SELECT 1 FROM webhook_deliveries')).toBe(deliveriesBefore);
    expect(await countRows(t, 'SELECT 1 FROM graphile_worker.jobs')).toBe(jobsBefore);
  });

  it('happens once per key however often the emitting step runs', async () => {
    const emit = () =>
      t.db
        .transaction()
        .execute((trx) =>
          emitEvent(trx, { type: 'backup.completed', tenantId, data: {} }, { key: 'backup.completed:run_1' }),
        );
    const first = await emit();
    const again = await emit();
    expect(first).toBeDefined();
    expect(again).toBeUndefined();
    const events = await t.pool.query<{ id: string }>(
      `SELECT id FROM webhook_events WHERE type = 'backup.completed'`,
    );
    expect(events.rows.map((r) => r.id)).toEqual([first]);
    expect(await deliveries(first!)).toEqual(['whe_operator']);
    const marker = await t.pool.query('SELECT status FROM outbox WHERE key = $1', [
      eventOutboxKey('backup.completed:run_1'),
    ]);
    expect(marker.rows).toEqual([{ status: 'delivered' }]);
  });

  it('fans out, once, an event an earlier version recorded for its outbox item to fan out', async () => {
    const eventId = 'wev_01earlier0000000000000000';
    await t.pool.query(
      `INSERT INTO webhook_events (id, type, tenant_id, data) VALUES ($1, 'service.ready', $2, '{}')`,
      [eventId, tenantId],
    );
    await writeOutbox(t.db, { key: eventOutboxKey(eventId), kind: 'webhook', payload: { eventId } });
    const item = { key: eventOutboxKey(eventId), kind: 'webhook' as const, payload: { eventId } };
    await t.db.transaction().execute((trx) => fanOutHandler()(item, trx));
    await t.db.transaction().execute((trx) => fanOutHandler()(item, trx));
    expect(await deliveries(eventId)).toEqual(['whe_operator', 'whe_services']);
    expect(await fannedOutAt(eventId)).toBeInstanceOf(Date);
  });
});
