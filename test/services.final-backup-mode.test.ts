import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newId } from '../src/core/ids.ts';
import { takeFinalBackup } from '../src/services/final-backup.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';

/**
 * A final dump holds a tenant's data: it is written 0600 in a 0700
 * directory, whatever the process umask (pg_dump alone leaves it 0644).
 */
let db: TestDatabase;
let dataDir: string;
beforeAll(async () => {
  db = await createTestDatabase();
  dataDir = await mkdtemp(path.join(os.tmpdir(), 'aiqso-dump-mode-'));
});
afterAll(async () => {
  await db.drop();
  await rm(dataDir, { recursive: true, force: true });
});

describe('final backup file mode', () => {
  it('writes the dump 0600 and its directories 0700', async () => {
    const tenantId = newId('tenant');
    const serviceId = newId('service');
    const tenantServiceId = newId('tenantService');
    await db.db
      .insertInto('tenants')
      .values({ id: tenantId, slug: 'dumpmode', company: 'Dump Co' })
      .execute();
    await db.db
      .insertInto('services')
      .values({ id: serviceId, key: 'dumpnotes', name: 'Notes', kind: 'app', template: '{}' })
      .execute();
    await db.db
      .insertInto('tenant_services')
      .values({ id: tenantServiceId, tenant_id: tenantId, service_id: serviceId })
      .execute();
    const url = new URL(db.url);
    const previous = process.umask(0o022);
    try {
      const file = await takeFinalBackup(db.db, dataDir, {
        tenantId,
        tenantSlug: 'dumpmode',
        tenantServiceId,
        service: 'notes',
        database: {
          host: url.hostname,
          port: Number(url.port || 5432),
          name: db.name,
          role: decodeURIComponent(url.username) || 'postgres',
          password: decodeURIComponent(url.password),
        },
      });
      expect((await stat(file)).mode & 0o777).toBe(0o600);
      expect((await stat(path.dirname(file))).mode & 0o777).toBe(0o700);
      expect((await stat(path.join(dataDir, 'backups'))).mode & 0o777).toBe(0o700);
      expect(await readdir(path.dirname(file))).toEqual([path.basename(file)]);
    } finally {
      process.umask(previous);
    }
  });
});
