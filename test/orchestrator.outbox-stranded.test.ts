import { readdir } from 'node:fs/promises';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../src/observability/logger.ts';
import { writeOutbox } from '../src/orchestrator/outbox.ts';
import { scheduleResync } from '../src/orchestrator/queue.ts';
import type { TestDatabase } from './support/db.ts';
import { startOrchestratorFixture, type OrchestratorFixture } from './support/orchestrator/fixture.ts';
import { waitFor } from './support/orchestrator/wait.ts';

/**
 * An outbox item whose delivery job used up its attempts without settling the
 * item (each attempt interrupted: a worker killed while it ran) must not stay
 * pending for ever: the resync queues it again, and it is delivered once.
 */
let fixture: OrchestratorFixture;
let testDb: TestDatabase;
let mailDir: string;

beforeAll(async () => {
  fixture = await startOrchestratorFixture(createLogger('silent'));
  ({ testDb, mailDir } = fixture);
});

afterAll(() => fixture?.close());

const status = async (key: string) =>
  (await testDb.db.selectFrom('outbox').select('status').where('key', '=', key).executeTakeFirstOrThrow())
    .status;

describe('an outbox item no job would deliver', () => {
  it('is queued again by the resync and delivered once', async () => {
    const key = 'welcome:stranded';
    // Written with its job, the job already at its last attempt, as interrupted runs leave it.
    await testDb.db.transaction().execute(async (trx) => {
      await writeOutbox(trx, {
        key,
        kind: 'email',
        payload: { to: 'owner@stranded.test', subject: 'Welcome', text: 'Hello.', template: 'welcome' },
      });
      const { id } = await trx
        .selectFrom('outbox')
        .select('id')
        .where('key', '=', key)
        .executeTakeFirstOrThrow();
      await sql`UPDATE graphile_worker._private_jobs SET attempts = max_attempts
                 WHERE key = ${`outbox:${id}`}`.execute(trx);
    });
    // No job runs it: still pending well after a delivery would have happened.
    await new Promise((r) => setTimeout(r, 1500));
    expect(await status(key)).toBe('pending');
    expect(await readdir(mailDir)).toEqual([]);

    await scheduleResync(testDb.db, new Date());
    await waitFor(
      'the stranded item to be delivered',
      async () => (await status(key)) === 'delivered',
      20_000,
    );
    const mails = await readdir(mailDir);
    expect(mails).toHaveLength(1);

    // A second resync finds nothing to queue again and sends nothing more.
    await scheduleResync(testDb.db, new Date());
    await new Promise((r) => setTimeout(r, 1500));
    expect(await readdir(mailDir)).toHaveLength(1);
  });
});
