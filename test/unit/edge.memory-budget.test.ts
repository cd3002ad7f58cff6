import { describe, expect, it } from 'vitest';
import { memoryBudget, type BudgetHolder } from '../../src/edge/rate-limit.ts';

/** A budget on a clock the test moves. */
function budget(points: number) {
  let now = 5_000;
  const b = memoryBudget(points, () => now);
  return { b, advance: (ms: number) => (now += ms) };
}

describe('in-process rate budget', () => {
  it('lets `points` requests of a key through in a window, then says how long to wait', () => {
    const { b, advance } = budget(3);
    expect([b.take('a'), b.take('a'), b.take('a')]).toEqual([0, 0, 0]);
    expect(b.take('a')).toBe(1);
    expect(b.take('b')).toBe(0); // another key has its own budget
    advance(999);
    expect(b.take('a')).toBe(1);
  });

  it('refills every key when a new window starts, counting from zero again', () => {
    const { b, advance } = budget(2);
    b.take('a');
    b.take('a');
    expect(b.take('a')).toBe(1);
    advance(1000);
    expect([b.take('a'), b.take('a'), b.take('a')]).toEqual([0, 0, 1]);
    advance(5000); // idle for several windows
    expect([b.take('a'), b.take('a'), b.take('a')]).toEqual([0, 0, 1]);
  });

  it('drops the tallies of keys that went idle, and keeps those in use', () => {
    const { b, advance } = budget(10);
    for (let i = 0; i < 50; i++) b.take(`idle${i}`);
    expect(b.keys).toBe(50);
    for (let w = 0; w < 12; w++) {
      advance(1000);
      b.take('busy');
    }
    expect(b.keys).toBe(1);
    expect(b.take('busy')).toBe(0);
  });

  it('under a flood of keys, keeps no more than the last two windows of them', () => {
    const { b, advance } = budget(1);
    for (let w = 0; w < 3; w++) {
      for (let i = 0; i < 60_000; i++) b.take(`ip${w}.${i}`);
      advance(1000);
    }
    b.take('next');
    // Windows 0 and 1 are gone at the start of window 3 (over 100,000 keys); window 2's remain.
    expect(b.keys).toBe(60_001);
  });

  it('counts every holder of a key into the one budget, also after the key was dropped', () => {
    const { b, advance } = budget(4);
    // Two routes of one tenant keep its tally; together they get the tenant's budget, not each.
    const crm: BudgetHolder = {};
    const docs: BudgetHolder = {};
    expect([b.take('ten_a', crm), b.take('ten_a', docs), b.take('ten_a'), b.take('ten_a', crm)]).toEqual([
      0, 0, 0, 0,
    ]);
    expect(crm.tenantBudget).toBe(docs.tenantBudget);
    expect(b.take('ten_a', docs)).toBe(1);

    // Idle long enough to be dropped: the holders' tally is marked, and the next request of either
    // finds (or makes) the one the budget has now.
    const before = crm.tenantBudget;
    for (let w = 0; w < 12; w++) {
      advance(1000);
      b.take('other');
    }
    expect(b.keys).toBe(1);
    expect(before?.dropped).toBe(true);
    expect([b.take('ten_a', docs), b.take('ten_a', crm), b.take('ten_a'), b.take('ten_a', docs)]).toEqual([
      0, 0, 0, 0,
    ]);
    expect(b.take('ten_a', crm)).toBe(1);
    expect(crm.tenantBudget).toBe(docs.tenantBudget);
    expect(crm.tenantBudget).not.toBe(before);
    expect(b.keys).toBe(2);

    // A holder asked for another key does not count it into the tally it keeps.
    expect(b.take('ten_b', crm)).toBe(0);
    expect(crm.tenantBudget?.key).toBe('ten_b');
    expect(b.take('ten_a', docs)).toBe(1);
  });
});
