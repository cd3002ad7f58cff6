import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBillingPort } from '../src/billing/index.ts';
import { storeStripeEvent } from '../src/billing/webhook.ts';
import { newId } from '../src/core/ids.ts';
import { registerBilling } from '../src/platform/worker.ts';
import { createLogger } from '../src/observability/logger.ts';
import { INBOX_MAX_ATTEMPTS, type InboxHandler } from '../src/orchestrator/inbox.ts';
import { orchestratorParts } from '../src/platform/orchestrator.ts';
import { testConfig } from './support/api.ts';
import { runCli } from './support/cli.ts';
import type { TestDatabase } from './support/db.ts';
import { startOrchestratorFixture, type OrchestratorFixture } from './support/orchestrator/fixture.ts';
import { waitFor } from './support/orchestrator/wait.ts';
import { checkoutCompleted } from './support/stripe.ts';

/**
 * Stored Stripe events are work for the workers, like the outbox: whatever
 * became of the job that processes one, an unprocessed event is processed, and
 * one that keeps failing is shown to the operator with its error.
 */
let fixture: OrchestratorFixture;
let testDb: TestDatabase;
const log = createLogger('silent');
const stranded = newId('tenant');

async function addTenant(db: TestDatabase, id: string) {
  await db.db
    .insertInto('tenants')
    .values({ id, slug: `t${id.slice(-12)}`, company: 'Inbox Ltd' })
    .execute();
}

/** An inbox row as the webhook stored it before events had jobs: nothing would ever process it. */
async function storeWithoutJob(db: TestDatabase, event: { id: string; type: string }) {
  await db.db
    .insertInto('inbox')
    .values({ id: event.id, source: 'stripe', type: event.type, payload: JSON.stringify(event) })
    .execute();
}

const statusOf = async (id: string) =>
  (await testDb.db.selectFrom('tenants').select('status').where('id', '=', id).executeTakeFirstOrThrow())
    .status;

beforeAll(async () => {
  const config = testConfig();
  let stripe: InboxHandler | undefined;
  fixture = await startOrchestratorFixture(
    log,
    { inboxHandlers: { stripe: (id) => stripe!(id) } },
    async (db) => {
      const parts = orchestratorParts(config);
      registerBilling(parts, { config, db: db.db, billing: await createBillingPort(config, db.db, []), log });
      stripe = parts.inboxHandlers.stripe;
      await addTenant(db, stranded);
      await storeWithoutJob(db, checkoutCompleted(stranded, 'sub_localstranded'));
    },
  );
  testDb = fixture.testDb;
});
afterAll(() => fixture?.close());

describe('the Stripe inbox', () => {
  it('processes at worker start an event that no job would process', async () => {
    await waitFor('the stranded event', async () => (await statusOf(stranded)) === 'provisioning');
  });

  it('processes on the next resync an event whose job is gone', async () => {
    const tenant = newId('tenant');
    await addTenant(testDb, tenant);
    await storeWithoutJob(testDb, checkoutCompleted(tenant, 'sub_localresync'));
    await new Promise((r) => setTimeout(r, 1500));
    expect(await statusOf(tenant)).toBe('pending_payment');
    await fixture.worker.resyncNow();
    await waitFor('the resync to process it', async () => (await statusOf(tenant)) === 'provisioning');
  });

  it('retries an event that fails, counts each failure, and lists it in aiqso jobs with its error', async () => {
    // Verified when it arrived, but it names no tenant a checkout could belong to.
    const event = checkoutCompleted(newId('tenant'), 'sub_localbroken');
    delete (event.data.object as { client_reference_id?: string }).client_reference_id;
    expect(await storeStripeEvent(testDb.db, event)).toEqual({ duplicate: false });
    const row = () =>
      testDb.db
        .selectFrom('inbox')
        .select(['attempts', 'last_error', 'processed_at'])
        .where('id', '=', event.id)
        .executeTakeFirstOrThrow();
    await waitFor('a failed attempt', async () => (await row()).attempts >= 1);
    expect(await row()).toMatchObject({
      processed_at: null,
      last_error: expect.stringContaining('client_reference_id') as string,
    });
    const job = await sql<{ attempts: number; run_at: Date }>`
      SELECT attempts, run_at FROM graphile_worker.jobs WHERE key = ${`inbox:${event.id}`}`.execute(
      testDb.db,
    );
    expect(job.rows[0]!.run_at.getTime()).toBeGreaterThan(Date.now()); // backing off, not dropped

    const env = { DATABASE_URL: testDb.url, AIQSO_DATA_DIR: await mkdtemp(path.join(os.tmpdir(), 'aiqso-')) };
    const listed = JSON.parse((await runCli(['jobs', '--json'], env)).stdout) as {
      failingInbox: { id: string; type: string; state: string; lastError: string }[];
    };
    expect(listed.failingInbox).toEqual([
      expect.objectContaining({
        id: event.id,
        type: 'checkout.session.completed',
        state: 'retrying',
        lastError: expect.stringContaining('client_reference_id') as string,
      }),
    ]);
    expect((await runCli(['jobs'], env)).stdout).toMatch(
      /Received events that keep failing:\n.*\nstripe\s+checkout\.session\.completed\s+evt_\S+\s+retrying\s+\d+\s+/,
    );

    // Given up after its last attempt: no resync brings it back; the operator still sees it.
    await testDb.db
      .updateTable('inbox')
      .set({ attempts: INBOX_MAX_ATTEMPTS })
      .where('id', '=', event.id)
      .execute();
    await sql`DELETE FROM graphile_worker._private_jobs WHERE key = ${`inbox:${event.id}`}`.execute(
      testDb.db,
    );
    await fixture.worker.resyncNow();
    await waitFor('the resync', async () => {
      const { rows } = await sql`SELECT 1 FROM graphile_worker.jobs
        WHERE task_identifier = 'resync' AND run_at <= now()`.execute(testDb.db);
      return rows.length === 0;
    });
    const requeued = await sql`SELECT 1 FROM graphile_worker.jobs WHERE key = ${`inbox:${event.id}`}`.execute(
      testDb.db,
    );
    expect(requeued.rows).toEqual([]);
    const after = JSON.parse((await runCli(['jobs', '--json'], env)).stdout) as {
      failingInbox: { id: string; state: string }[];
    };
    expect(after.failingInbox).toEqual([expect.objectContaining({ id: event.id, state: 'failed' })]);
  });
});
