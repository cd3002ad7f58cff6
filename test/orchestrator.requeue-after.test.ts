import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pollDelayMs, requeueAfter, type Reconciler, type ReconcileTarget } from '../src/core/reconcile.ts';
import type { StepStatus } from '../src/db/tables.ts';
import { createLogger } from '../src/observability/logger.ts';
import { runSteps } from '../src/orchestrator/engine.ts';
import { ReconcilerRegistry } from '../src/orchestrator/registry.ts';
import { applyResource, findResource } from '../src/orchestrator/resources.ts';
import { startOrchestratorFixture, type OrchestratorFixture } from './support/orchestrator/fixture.ts';
import { waitFor } from './support/orchestrator/wait.ts';

/**
 * "Not yet, look again in N ms": a step that returns `requeueAfter` ends the
 * run `waiting` instead of failing, and the next run sees when the wait began.
 */

const signal = new AbortController().signal;
const target: ReconcileTarget<Record<string, never>> = {
  kind: 'wait',
  id: 'w1',
  tenantId: null,
  spec: {},
  generation: 1,
};

/** `boot` waits until `ready` is set, recording what it saw; `after` only runs once boot is done. */
function bootReconciler(state: {
  ready: boolean;
  seen: (Date | null)[];
  afterRuns: number;
}): Reconciler<Record<string, never>> {
  return {
    kind: 'wait',
    parseSpec: () => ({}),
    steps: [
      {
        name: 'boot',
        observe: () => Promise.resolve(state.ready ? ('ok' as const) : ('missing' as const)),
        apply(ctx) {
          state.seen.push(ctx.waitingSince);
          return Promise.resolve(requeueAfter(1500.4, 'the thing to boot'));
        },
      },
      {
        name: 'after',
        observe: () => Promise.resolve('missing' as const),
        apply() {
          state.afterRuns += 1;
          return Promise.resolve();
        },
      },
    ],
  };
}

describe('pollDelayMs', () => {
  it('is a quarter of the time waited so far, within its bounds', () => {
    const policy = { minMs: 150, maxMs: 2000 };
    const since = (ms: number) => new Date(Date.now() - ms);
    expect(pollDelayMs(null, policy)).toBe(150);
    expect(pollDelayMs(since(100), policy)).toBe(150);
    expect(pollDelayMs(since(4000), policy)).toBeCloseTo(1000, -2);
    expect(pollDelayMs(since(60_000), policy)).toBe(2000);
  });
});

describe('runSteps with a step that says "not yet"', () => {
  it('stops at that step, waiting, and carries when the wait began into the next run', async () => {
    const state = { ready: false, seen: [] as (Date | null)[], afterRuns: 0 };
    const reconciler = bootReconciler(state);
    const run = (previous: StepStatus[]) =>
      runSteps({
        reconciler,
        target,
        deleting: false,
        previous,
        converged: false,
        signal,
        onProgress: () => Promise.resolve(),
      });

    const first = await run([]);
    expect(first.requeueAfterMs).toBe(1500);
    expect(first.actions).toBe(0);
    expect(state.afterRuns).toBe(0);
    const boot = first.steps.find((s) => s.name === 'boot')!;
    expect(boot).toMatchObject({ state: 'waiting', attempts: 1, waitingFor: 'the thing to boot' });
    expect(first.steps.find((s) => s.name === 'after')).toMatchObject({ state: 'pending', attempts: 0 });
    expect(state.seen).toEqual([null]);

    await new Promise((r) => setTimeout(r, 20));
    const second = await run(first.steps);
    // Same attempt, same wait: the step is told when it first said "not yet".
    expect(second.steps.find((s) => s.name === 'boot')).toMatchObject({
      state: 'waiting',
      attempts: 1,
      waitingSince: boot.waitingSince,
    });
    expect(state.seen[1]?.toISOString()).toBe(boot.waitingSince);

    state.ready = true;
    const third = await run(second.steps);
    expect(third.requeueAfterMs).toBeUndefined();
    expect(state.afterRuns).toBe(1);
    const done = third.steps.find((s) => s.name === 'boot')!;
    expect(done.state).toBe('done');
    expect(done.waitingSince).toBeUndefined();
    expect(done.waitingFor).toBeUndefined();

    // A later wait of the same step starts a new attempt with a new start.
    state.ready = false;
    const fourth = await run(third.steps);
    expect(fourth.steps.find((s) => s.name === 'boot')).toMatchObject({ state: 'waiting', attempts: 2 });
    expect(state.seen[2]).toBeNull();
  });

  it('also lets a removal wait', async () => {
    let left = 2;
    const reconciler: Reconciler<Record<string, never>> = {
      kind: 'wait',
      parseSpec: () => ({}),
      steps: [
        {
          name: 'children',
          observe: () => Promise.resolve('ok' as const),
          apply: () => Promise.resolve(),
          remove: () => Promise.resolve(left-- > 0 ? requeueAfter(10, 'children to go') : undefined),
        },
      ],
    };
    const run = (previous: StepStatus[]) =>
      runSteps({
        reconciler,
        target,
        deleting: true,
        previous,
        converged: false,
        signal,
        onProgress: () => Promise.resolve(),
      });
    const a = await run([]);
    expect(a.requeueAfterMs).toBe(10);
    const b = await run(a.steps);
    expect(b.requeueAfterMs).toBe(10);
    const c = await run(b.steps);
    expect(c.requeueAfterMs).toBeUndefined();
    expect(c.steps[0]).toMatchObject({ state: 'done', attempts: 1 });
  });
});

// A worker with one slot: a resource that waits (far longer than the failure limit allows retries)
// must neither fail nor keep the slot from another resource.
const released = new Set<string>();
const looks = new Map<string, number>();
const holder: Reconciler<Record<string, never>> = {
  kind: 'hold',
  parseSpec: () => ({}),
  steps: [
    {
      name: 'until released',
      observe: ({ resource }) =>
        Promise.resolve(released.has(resource.id) ? ('ok' as const) : ('missing' as const)),
      apply({ resource }) {
        looks.set(resource.id, (looks.get(resource.id) ?? 0) + 1);
        return Promise.resolve(requeueAfter(30, 'release'));
      },
    },
  ],
};

let fixture: OrchestratorFixture;

beforeAll(async () => {
  fixture = await startOrchestratorFixture(createLogger('silent'), {
    concurrency: 1,
    registry: new ReconcilerRegistry().register(holder),
    retry: { baseMs: 20, maxMs: 200, maxFailures: 3 },
  });
});

afterAll(() => fixture?.close());

describe('a reconcile job whose step waits', () => {
  it('frees its worker slot, never counts a failure, and finishes once the wait is over', async () => {
    const { db } = fixture.testDb;
    const slow = { kind: 'hold', id: 'slow' };
    const quick = { kind: 'hold', id: 'quick' };
    await applyResource(db, { ...slow, spec: {} });
    await waitFor('the slow resource to look a few times', () =>
      Promise.resolve((looks.get('slow') ?? 0) >= 5),
    );
    // The only slot is not held by the waiting resource: another one gets reconciled meanwhile.
    released.add('quick');
    await applyResource(db, { ...quick, spec: {} });
    await waitFor(
      'the quick resource to be ready',
      async () => (await findResource(db, quick))?.phase === 'ready',
    );
    expect(looks.get('quick')).toBeUndefined();

    const waiting = await findResource(db, slow);
    expect(waiting).toMatchObject({ phase: 'reconciling', failures: 0, last_error: null });
    expect(waiting!.steps[0]).toMatchObject({
      name: 'until released',
      state: 'waiting',
      attempts: 1,
      waitingFor: 'release',
    });
    expect(looks.get('slow')).toBeGreaterThan(3); // more looks than the failure limit

    released.add('slow');
    await waitFor(
      'the slow resource to be ready',
      async () => (await findResource(db, slow))?.phase === 'ready',
    );
    const ready = await findResource(db, slow);
    expect(ready).toMatchObject({ failures: 0, last_error: null });
    expect(ready!.steps[0]).toMatchObject({ state: 'done', attempts: 1 });
  });
});
