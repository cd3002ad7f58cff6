import { describe, expect, it } from 'vitest';
import { ladderStep, NEW_RECORD, type LadderRecord } from '../../src/health/ladder.ts';

/** The repair ladder by value: when it climbs, how far, and how a flapping target is damped. */
const policy = { failures: 2, intervalMs: 10_000, stableProbes: 3 };
const at = (s: number) => new Date(Date.UTC(2026, 11, 6, 12, 0, s));

function run(probes: boolean[], start: LadderRecord = NEW_RECORD, hold: boolean[] = []) {
  let record = start;
  const out: { climb: string | null; recovered: boolean; state: string }[] = [];
  probes.forEach((ok, i) => {
    const step = ladderStep(record, ok, policy, at(i * 10), hold[i] ?? false);
    record = step.next;
    out.push({ climb: step.climb, recovered: step.recovered, state: step.next.state });
  });
  return { out, record };
}

describe('the repair ladder', () => {
  it('climbs restart, recreate, degraded, one rung per round, after N failures in a row', () => {
    const { out } = run([true, false, false, false, false, false]);
    expect(out.map((o) => o.climb)).toEqual([null, null, 'restart', 'recreate', 'degraded', null]);
    expect(out.map((o) => o.state)).toEqual([
      'healthy',
      'failing',
      'failing',
      'failing',
      'degraded',
      'degraded',
    ]);
  });

  it('a healthy probe recovers; a degraded target recovers too', () => {
    const { out } = run([false, false, true, false, false, false, false, true]);
    expect(out[2]).toEqual({ climb: null, recovered: true, state: 'healthy' });
    expect(out[7]).toEqual({ climb: null, recovered: true, state: 'healthy' });
  });

  it('a flapping target climbs instead of being restarted in a loop', () => {
    // fail fail (restart) ok, fail fail (next rung: recreate, not restart again) ok, …
    const { out } = run([false, false, true, false, false, true, false, false]);
    expect(out.filter((o) => o.climb).map((o) => o.climb)).toEqual(['restart', 'recreate', 'degraded']);
  });

  it('starts again at the bottom after staying healthy for stableProbes probes', () => {
    const { out } = run([false, false, true, true, true, false, false]);
    expect(out.filter((o) => o.climb).map((o) => o.climb)).toEqual(['restart', 'restart']);
  });

  it('climbs no rung while a repair is under way, nor before its back-off has passed', () => {
    const held = run([false, false, false], NEW_RECORD, [false, false, true]);
    expect(held.out.map((o) => o.climb)).toEqual([null, 'restart', null]);
    const record: LadderRecord = { ...held.record, nextRungAt: at(1000) };
    expect(ladderStep(record, false, policy, at(999)).climb).toBeNull();
    expect(ladderStep(record, false, policy, at(1000)).climb).toBe('recreate');
  });
});
