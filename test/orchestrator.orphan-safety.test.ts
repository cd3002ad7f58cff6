import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DomainError } from '../src/core/errors.ts';
import type { OrphanSource, Reconciler } from '../src/core/reconcile.ts';
import { createLogger } from '../src/observability/logger.ts';
import { ReconcilerRegistry } from '../src/orchestrator/registry.ts';
import { applyResource } from '../src/orchestrator/resources.ts';
import { detectOrphans } from '../src/orchestrator/resync.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';

/**
 * Orphan removal destroys things: it must hold back whenever it cannot tell
 * what the specs own, and one inventory that cannot be read must not stop the
 * others (nor the resync).
 */
let testDb: TestDatabase;
beforeAll(async () => {
  testDb = await createTestDatabase();
});
afterAll(() => testDb?.drop());

const log = createLogger('silent');

/** A kind whose spec names the one box it owns. */
const boxes: Reconciler<{ box: string }> = {
  kind: 'box',
  parseSpec(raw) {
    const box = (raw as { box?: unknown }).box;
    if (typeof box !== 'string') throw new DomainError('validation_failed', 'a box spec names its box');
    return { box };
  },
  steps: [],
  owns: (r) => [{ source: 'shelf', name: r.spec.box }],
};

function shelf(names: string[]): OrphanSource & { removed: string[] } {
  const removed: string[] = [];
  return {
    name: 'shelf',
    removed,
    list: () => Promise.resolve(names.filter((n) => !removed.includes(n))),
    remove: (name) => Promise.resolve(void removed.push(name)),
  };
}

const unreadable: OrphanSource = {
  name: 'unreadable',
  list: () => Promise.reject(new Error('cluster unreachable')),
  remove: () => Promise.reject(new Error('never called')),
};

const twice = async (registry: ReconcilerRegistry, sources: OrphanSource[]) => {
  await detectOrphans(testDb.db, registry, sources, 0, log);
  return detectOrphans(testDb.db, registry, sources, 0, log);
};

describe('orphan removal holds back when it cannot tell what is owned', () => {
  it('removes nothing while a live spec does not parse, then removes once it does', async () => {
    const registry = new ReconcilerRegistry().register(boxes);
    await applyResource(testDb.db, { kind: 'box', id: 'b1', spec: { box: 'kept' } });
    await applyResource(testDb.db, { kind: 'box', id: 'b2', spec: { colour: 'red' } });
    const source = shelf(['kept', 'stray', 'mine-if-b2-parsed']);
    const held = await twice(registry, [source]);
    expect(held.removed).toEqual([]);
    expect(held.found.map((o) => o.name).sort()).toEqual(['mine-if-b2-parsed', 'stray']);
    expect(source.removed).toEqual([]);

    await applyResource(testDb.db, { kind: 'box', id: 'b2', spec: { box: 'mine-if-b2-parsed' } });
    const done = await detectOrphans(testDb.db, registry, [source], 0, log);
    expect(done.removed).toEqual([{ source: 'shelf', name: 'stray' }]);
    expect(source.removed).toEqual(['stray']);
  });

  it('removes nothing while a live resource is of a kind this worker has no reconciler for', async () => {
    await testDb.db.deleteFrom('resources').execute();
    await applyResource(testDb.db, { kind: 'box', id: 'b1', spec: { box: 'kept' } });
    await applyResource(testDb.db, { kind: 'crate', id: 'c1', spec: { crate: 'x' } });
    const registry = new ReconcilerRegistry().register(boxes);
    const source = shelf(['kept', 'loose']);
    expect((await twice(registry, [source])).removed).toEqual([]);
    expect(source.removed).toEqual([]);
  });

  it('goes on with the other sources when one cannot be listed', async () => {
    await testDb.db.deleteFrom('resources').execute();
    await applyResource(testDb.db, { kind: 'box', id: 'b1', spec: { box: 'kept' } });
    const registry = new ReconcilerRegistry().register(boxes);
    const source = shelf(['kept', 'dropped']);
    const report = await twice(registry, [unreadable, source]);
    expect(report.removed).toEqual([{ source: 'shelf', name: 'dropped' }]);
  });
});
