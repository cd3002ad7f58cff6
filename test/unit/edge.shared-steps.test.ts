import { describe, expect, it } from 'vitest';
import { sharedTenantFacts } from '../../src/edge/routes-store.ts';

/**
 * Anyone may load a preparing workspace's address as often as they like: the
 * edge reads a tenant's steps for that page at most once per second, however
 * many requests come, and a failed read is not kept.
 */
function counter() {
  const reads: string[] = [];
  let fail = false;
  const read = (tenantId: string) => {
    reads.push(tenantId);
    return fail
      ? Promise.reject(new Error('database gone'))
      : Promise.resolve({
          company: `Company ${tenantId}`,
          status: 'provisioning',
          statusReason: null,
          purgeAfter: null,
          steps: [],
        });
  };
  return { reads, read, failNext: (on: boolean) => (fail = on) };
}

describe("the preparing page's steps, shared between requests", () => {
  it('are read once per tenant per second, however many requests ask', async () => {
    let clock = 0;
    const c = counter();
    const steps = sharedTenantFacts(c.read, 1000, () => clock);
    const answers = await Promise.all(Array.from({ length: 100 }, () => steps('t1')));
    expect(answers.every((a) => a.company === 'Company t1')).toBe(true);
    await steps('t2');
    expect(c.reads).toEqual(['t1', 't2']);
    clock = 999;
    await steps('t1');
    expect(c.reads).toEqual(['t1', 't2']);
    clock = 1000;
    await steps('t1');
    await steps('t2');
    expect(c.reads).toEqual(['t1', 't2', 't1', 't2']);
  });

  it('read again after a failure instead of keeping it', async () => {
    const c = counter();
    const steps = sharedTenantFacts(c.read, 1000, () => 0);
    c.failNext(true);
    await expect(steps('t1')).rejects.toThrow('database gone');
    c.failNext(false);
    await expect(steps('t1')).resolves.toMatchObject({ company: 'Company t1' });
    expect(c.reads).toEqual(['t1', 't1']);
  });
});
