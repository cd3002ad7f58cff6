import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerBackups } from '../src/platform/backups.ts';
import { ProcessDriver } from '../src/compute/process/driver.ts';
import { loadConfig } from '../src/config/load.ts';
import { newId } from '../src/core/ids.ts';
import { createSecretBox, generateMasterKey, parseMasterKey } from '../src/identity/secrets.ts';
import { createLogger } from '../src/observability/logger.ts';
import { orchestratorParts } from '../src/platform/orchestrator.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';

/**
 * The daily `backups` schedule queues one backup run per provisioned tenant
 * and firing: the same firing seen twice (two workers, a retried job) queues
 * nothing more; a tenant not provisioned or cancelled gets none. The
 * `retention` schedule is registered too.
 */
let db: TestDatabase;
let dir: string;
beforeAll(async () => {
  db = await createTestDatabase();
  dir = await mkdtemp(path.join(os.tmpdir(), 'aiqso-backup-schedule-'));
});
afterAll(async () => {
  await db.drop();
  await rm(dir, { recursive: true, force: true });
});

describe('backup schedules', () => {
  it('queue one run per provisioned tenant and firing', async () => {
    const tenants = {
      active: newId('tenant'),
      suspended: newId('tenant'),
      pending_payment: newId('tenant'),
      cancelled: newId('tenant'),
    };
    for (const [status, id] of Object.entries(tenants))
      await db.db
        .insertInto('tenants')
        .values({ id, slug: `sched${status.replace(/_/g, '')}`, company: status, status: status as 'active' })
        .execute();
    const config = loadConfig({ AIQSO_DATA_DIR: dir });
    const parts = orchestratorParts(config);
    const compute = await ProcessDriver.open({
      root: path.join(dir, 'containers'),
      log: createLogger('silent'),
    });
    const box = createSecretBox(parseMasterKey(generateMasterKey()));
    registerBackups(parts, {
      config,
      db: db.db,
      compute,
      box: () => Promise.resolve(box),
      dbLocal: { host: '127.0.0.1', port: 5432 },
      rootSecret: () => Promise.resolve('unused'),
      master: { pool: db.pool, url: db.url },
      containerSpec: () => Promise.reject(new Error('no restore runs in this test')),
    });
    expect(parts.registry.get('backup-run')).toBeDefined();
    expect(parts.registry.get('service-restore')).toBeDefined();
    expect(parts.scheduleHandlers.retention).toBeTypeOf('function');
    const firedAt = new Date('2026-03-01T02:00:00Z');
    await parts.scheduleHandlers.backups!({ name: 'backups', firedAt, backfilled: false });
    await parts.scheduleHandlers.backups!({ name: 'backups', firedAt, backfilled: false });
    const runs = await db.db
      .selectFrom('resources')
      .select(['id', 'tenant_id', 'spec', 'generation'])
      .where('kind', '=', 'backup-run')
      .orderBy('id')
      .execute();
    expect(runs.map((r) => r.tenant_id).sort()).toEqual([tenants.active, tenants.suspended].sort());
    for (const r of runs) {
      expect(r.id).toBe(`run_${r.tenant_id!.slice(4)}_202603010200`);
      expect(r.spec).toEqual({ tenantId: r.tenant_id, purpose: 'scheduled' });
      expect(r.generation).toBe(1);
    }
    // The next day's firing is a new run.
    await parts.scheduleHandlers.backups!({
      name: 'backups',
      firedAt: new Date('2026-03-02T02:00:00Z'),
      backfilled: false,
    });
    expect(
      await db.db.selectFrom('resources').select('id').where('kind', '=', 'backup-run').execute(),
    ).toHaveLength(4);
    await compute.close();
  });
});
