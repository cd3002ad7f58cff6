import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requeueAfter, type Reconciler } from '../src/core/reconcile.ts';
import { createLogger } from '../src/observability/logger.ts';
import { ReconcilerRegistry } from '../src/orchestrator/registry.ts';
import { applyResource, findResource } from '../src/orchestrator/resources.ts';
import { startOrchestratorFixture, type OrchestratorFixture } from './support/orchestrator/fixture.ts';
import { waitFor } from './support/orchestrator/wait.ts';

/**
 * A reconcile that looks again later (a step's "not yet", a retry after a
 * failure) is a job queued for later, which graphile-worker otherwise finds
 * only at its next poll. The worker here polls once an hour, so each of these
 * resources gets to `ready` only if the platform wakes the workers itself when
 * the job falls due.
 */
const calls = new Map<string, number>();
const count = (id: string) => {
  const n = (calls.get(id) ?? 0) + 1;
  calls.set(id, n);
  return n;
};

const reconciler: Reconciler<Record<string, never>> = {
  kind: 'wake',
  parseSpec: () => ({}),
  steps: [
    {
      name: 'second look',
      observe: ({ resource }) =>
        Promise.resolve((calls.get(resource.id) ?? 0) >= 3 ? ('ok' as const) : ('missing' as const)),
      apply({ resource }) {
        const n = count(resource.id);
        // Looks again in an hour, unless the watch it hands over says sooner (after its second call).
        if (resource.id.startsWith('watched') && n < 2)
          return Promise.resolve(
            requeueAfter(3_600_000, 'an hour', async (signal) => {
              await new Promise((r) => setTimeout(r, 100));
              return !signal.aborted;
            }),
          );
        if (resource.id.startsWith('waits') && n < 3) return Promise.resolve(requeueAfter(100, 'a moment'));
        if (resource.id.startsWith('fails') && n < 3) throw new Error('not this time');
        return Promise.resolve();
      },
    },
  ],
};

let fixture: OrchestratorFixture;

beforeAll(async () => {
  fixture = await startOrchestratorFixture(createLogger('silent'), {
    concurrency: 2,
    pollIntervalMs: 3_600_000,
    registry: new ReconcilerRegistry().register(reconciler),
    retry: { baseMs: 100, maxMs: 200, maxFailures: 5 },
  });
});

afterAll(() => fixture?.close());

describe('a reconcile queued for later, with the poll an hour away', () => {
  it.each(['waits', 'fails'])('%s twice, then is ready without waiting for the poll', async (id) => {
    const { db } = fixture.testDb;
    await applyResource(db, { kind: 'wake', id, spec: {} });
    await waitFor(
      `${id} to be ready`,
      async () => (await findResource(db, { kind: 'wake', id }))?.phase === 'ready',
      30_000,
    );
    expect(calls.get(id)).toBe(3);
  });

  it('waits for the look a step handed a watch to only until the watch says it is time', async () => {
    const { db } = fixture.testDb;
    await applyResource(db, { kind: 'wake', id: 'watched', spec: {} });
    // The queued look is an hour away and the poll too: only the watch can bring it forward.
    await waitFor(
      'watched to be ready',
      async () => (await findResource(db, { kind: 'wake', id: 'watched' }))?.phase === 'ready',
      30_000,
    );
    expect(calls.get('watched')).toBe(2);
  });
});
