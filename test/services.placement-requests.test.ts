import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadCatalog } from '../src/catalog/load.ts';
import { loadPlans, PLANS_FILE } from '../src/catalog/plans.ts';
import { syncCatalog } from '../src/catalog/sync.ts';
import { newId } from '../src/core/ids.ts';
import { TENANT_SERVICE_KIND } from '../src/core/kinds.ts';
import { memoryRequest } from '../src/core/services.ts';
import { hostUsage } from '../src/services/hosts.ts';
import { subscribe, type SubscriptionDeps } from '../src/services/subscriptions.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';

/**
 * Placement counts a catalog service's memory request, not its limit: the
 * shipped app services declare a measured request below their limit (see
 * bench/README.md, "requests"), a host holds as many of them as their requests
 * fit, and a refusal names the request. The image services, which cannot be
 * measured on this build machine, count their limit.
 */
const APPS = ['notes', 'social-media-manager', 'content-suite'];
const IMAGES = ['paperless-ngx', 'listmonk', 'calcom', 'espocrm'];
const HOST_MB = 4096;
const catalog = loadCatalog();
const template = (key: string) => {
  const t = catalog.find((c) => c.key === key);
  if (!t) throw new Error(`catalog has no ${key}`);
  return t;
};

let db: TestDatabase;
let hostId: string;
let tenantId: string;
beforeEach(async () => {
  db = await createTestDatabase();
  await syncCatalog(db.db, catalog);
  hostId = newId('host');
  await db.db
    .insertInto('hosts')
    .values({ id: hostId, name: 'small', driver: 'lxc', memory_mb: HOST_MB, cores: 4, disk_gb: 100 })
    .execute();
  tenantId = newId('tenant');
  await db.db
    .insertInto('tenants')
    .values({
      id: tenantId,
      slug: 'dense',
      company: 'Dense Ltd',
      plan: 'business',
      status: 'active',
      host_id: hostId,
    })
    .execute();
});
afterEach(() => db.drop());

/** Subscription dependencies with `allocatableMb` of the host's memory promised (the rest reserved). */
const deps = (allocatableMb: number): SubscriptionDeps => ({
  plans: loadPlans(PLANS_FILE),
  driver: 'lxc',
  dataDir: '/nonexistent',
  publicUrl: 'http://localhost',
  serviceGraceHours: 1,
  policy: { reserveMb: HOST_MB - allocatableMb, overcommit: 1 },
});

describe('placement of catalog services by request', () => {
  it('declares a request below the limit for the shipped app services, and none for the image services', () => {
    for (const key of APPS) {
      const { resources } = template(key);
      expect(resources.request_memory_mb, key).toBeDefined();
      expect(resources.request_memory_mb!, key).toBeLessThan(resources.memory_mb);
      expect(memoryRequest(resources), key).toBe(resources.request_memory_mb);
    }
    for (const key of IMAGES) {
      const { resources } = template(key);
      expect(resources.request_memory_mb, key).toBeUndefined();
      expect(memoryRequest(resources), key).toBe(resources.memory_mb);
    }
  });

  it('places services whose requests fit though their limits do not, and refuses naming the request', async () => {
    const notes = template('notes').resources;
    const social = template('social-media-manager').resources;
    const content = template('content-suite').resources;
    // Room for the requests of notes and social-media-manager, exactly: far less than their limits.
    const room = memoryRequest(notes) + memoryRequest(social);
    expect(room).toBeLessThan(notes.memory_mb + social.memory_mb);
    const d = deps(room);

    await subscribe(db.db, d, tenantId, 'notes');
    expect((await hostUsage(db.db, hostId)).memory_mb).toBe(memoryRequest(notes));
    // The host's free room is now below social-media-manager's limit, but its request fits.
    expect(room - memoryRequest(notes)).toBeLessThan(social.memory_mb);
    await subscribe(db.db, d, tenantId, 'social-media-manager');
    expect(await hostUsage(db.db, hostId)).toEqual({
      memory_mb: room,
      disk_gb: notes.disk_gb + social.disk_gb,
      cores: notes.cores + social.cores,
      containers: 2,
    });
    // The spec placement reads carries the request and the limit apart.
    const specs = await db.db
      .selectFrom('resources')
      .select('spec')
      .where('kind', '=', TENANT_SERVICE_KIND)
      .execute();
    expect(specs.map((r) => (r.spec as { resources: unknown }).resources)).toEqual(
      expect.arrayContaining([notes, social]),
    );

    // Full by requests: the next one is refused with its request named, and nothing is written.
    const before = await db.db.selectFrom('tenant_services').select('id').execute();
    await expect(subscribe(db.db, d, tenantId, 'content-suite')).rejects.toMatchObject({
      code: 'conflict',
      message: `host small has 0 MB of memory free; content-suite needs ${memoryRequest(content)} MB`,
    });
    expect(await db.db.selectFrom('tenant_services').select('id').execute()).toEqual(before);
    // One request's worth more room, and it is placed.
    await subscribe(db.db, deps(room + memoryRequest(content)), tenantId, 'content-suite');
    expect((await hostUsage(db.db, hostId)).memory_mb).toBe(room + memoryRequest(content));
  });
});
