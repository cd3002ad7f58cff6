import { describe, expect, it } from 'vitest';
import type { Reconciler, StepContext } from '../../src/core/reconcile.ts';
import { runSteps } from '../../src/orchestrator/engine.ts';

/**
 * The reads a run's observes share (`look`), and what an acting step read
 * back (`saw`): the observes of one run read a thing once until a step acts;
 * an act that read back what it made hands that to the observes after it,
 * and any other look is read again.
 */
type Spec = Record<string, never>;

const runOnce = (reconciler: Reconciler<Spec>, id: string) =>
  runSteps({
    reconciler,
    target: { kind: 'looks', id, tenantId: null, spec: {}, generation: 1 },
    deleting: false,
    previous: [],
    converged: false,
    signal: new AbortController().signal,
    onProgress: () => Promise.resolve(),
  });

function harness(actWith: 'saw' | 'nothing') {
  const reads = { box: 0, row: 0 };
  let box = 'missing';
  const lookBox = (ctx: StepContext<Spec>) =>
    ctx.look('box', () => {
      reads.box += 1;
      return Promise.resolve(box);
    });
  const lookRow = (ctx: StepContext<Spec>) =>
    ctx.look('row', () => {
      reads.row += 1;
      return Promise.resolve('row');
    });
  const seenByObserves: string[] = [];
  const reconciler: Reconciler<Spec> = {
    kind: 'looks',
    parseSpec: () => ({}),
    steps: [
      {
        name: 'first look',
        async observe(ctx) {
          await lookRow(ctx);
          seenByObserves.push(await lookBox(ctx));
          return 'ok';
        },
        apply: () => Promise.resolve(),
      },
      {
        name: 'make the box',
        async observe(ctx) {
          await lookRow(ctx);
          return (await lookBox(ctx)) === 'running' ? 'ok' : 'missing';
        },
        apply(ctx) {
          box = 'running';
          if (actWith === 'saw') ctx.saw('box', 'running (as the act read it back)');
          return Promise.resolve();
        },
      },
      {
        name: 'after',
        async observe(ctx) {
          await lookRow(ctx);
          seenByObserves.push(await lookBox(ctx));
          return 'ok';
        },
        apply: () => Promise.resolve(),
      },
    ],
  };
  return { run: () => runOnce(reconciler, 'l1'), reads, seenByObserves };
}

describe('the reads a run shares', () => {
  it('reads each thing once until a step acts, then again', async () => {
    const h = harness('nothing');
    const outcome = await h.run();
    expect(outcome.actions).toBe(1);
    // Before the act: one read each for three observes' worth of looks; after it: one more each.
    expect(h.reads).toEqual({ box: 2, row: 2 });
    expect(h.seenByObserves).toEqual(['missing', 'running']);
  });

  it('hands what an act read back to the observes after it, and reads the rest again', async () => {
    const h = harness('saw');
    await h.run();
    expect(h.reads).toEqual({ box: 1, row: 2 });
    expect(h.seenByObserves).toEqual(['missing', 'running (as the act read it back)']);
  });

  it('takes nothing from saw outside an act', async () => {
    let reads = 0;
    const reconciler: Reconciler<Spec> = {
      kind: 'looks',
      parseSpec: () => ({}),
      steps: [
        {
          name: 'only',
          async observe(ctx) {
            ctx.saw('box', 'planted by an observe');
            const found = await ctx.look('box', () => {
              reads += 1;
              return Promise.resolve('read');
            });
            expect(found).toBe('read');
            return 'ok';
          },
          apply: () => Promise.resolve(),
        },
      ],
    };
    await runOnce(reconciler, 'l2');
    expect(reads).toBe(1);
  });
});
