import { describe, expect, it } from 'vitest';
import type { Reconciler } from '../../src/core/reconcile.ts';
import type { StepStatus } from '../../src/db/tables.ts';
import { runSteps } from '../../src/orchestrator/engine.ts';

/**
 * A long step says what it is doing (`ctx.progress`): the running step's
 * status carries it in the saves made while it runs (at most one per
 * `progressEveryMs`, the latest detail always saved), and it is gone once the
 * step ends, done or failed.
 */

const until = async (done: () => boolean) => {
  while (!done()) await new Promise((r) => setTimeout(r, 5));
};

function pulling(fail: boolean): { reconciler: Reconciler<null>; saves: StepStatus[][] } {
  const saves: StepStatus[][] = [];
  const savedProgress = () => saves.map((s) => s[0]!.progress);
  return {
    saves,
    reconciler: {
      kind: 'progress-test',
      parseSpec: () => null,
      steps: [
        {
          name: 'image pull',
          observe: () => Promise.resolve('missing'),
          async apply(ctx) {
            ctx.progress('pulling from registry.test');
            await until(() => savedProgress().includes('pulling from registry.test'));
            ctx.progress('copying blob sha256:aaaa');
            ctx.progress('copying blob sha256:bbbb');
            ctx.progress('unpacking');
            // The latest detail reaches a save while the step still runs.
            await until(() => savedProgress().includes('unpacking'));
            if (fail) throw new Error('umoci failed');
          },
        },
      ],
    },
  };
}

const run = (reconciler: Reconciler<null>, saves: StepStatus[][]) =>
  runSteps({
    reconciler,
    target: { kind: 'progress-test', id: 'p_1', tenantId: null, spec: null, generation: 1 },
    deleting: false,
    previous: [],
    converged: false,
    signal: new AbortController().signal,
    progressEveryMs: 20,
    onProgress: (steps) => {
      saves.push(structuredClone(steps));
      return Promise.resolve();
    },
  });

describe('a running step reports its progress', () => {
  it('in the saves made while it runs, in order, the latest always; cleared when it is done', async () => {
    const { reconciler, saves } = pulling(false);
    const outcome = await run(reconciler, saves);
    const seen = saves.map((s) => s[0]!.progress).filter((p) => p !== undefined);
    expect(seen[0]).toBe('pulling from registry.test');
    expect(seen.at(-1)).toBe('unpacking');
    // Throttled: a detail replaced before its save is skipped, never saved out of order.
    const order = [
      'pulling from registry.test',
      'copying blob sha256:aaaa',
      'copying blob sha256:bbbb',
      'unpacking',
    ];
    const indexes = seen.map((p) => order.indexOf(p));
    expect(indexes).toEqual([...indexes].sort((a, b) => a - b));
    expect(saves.every((s) => s[0]!.progress === undefined || s[0]!.state === 'running')).toBe(true);
    expect(outcome.steps[0]).toMatchObject({ state: 'done' });
    expect(outcome.steps[0]!.progress).toBeUndefined();
  });

  it('cleared when the step fails, which keeps its error', async () => {
    const { reconciler, saves } = pulling(true);
    const failed = (await run(reconciler, saves).catch((e: unknown) => e)) as { steps: StepStatus[] };
    expect(failed.steps[0]).toMatchObject({ state: 'failed', lastError: 'umoci failed' });
    expect(failed.steps[0]!.progress).toBeUndefined();
  });
});
