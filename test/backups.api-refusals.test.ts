import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadCatalog } from '../src/catalog/load.ts';
import { syncCatalog } from '../src/catalog/sync.ts';
import { loadConfig } from '../src/config/load.ts';
import { newId } from '../src/core/ids.ts';
import { recordSnapshot } from './support/backups.ts';
import { createHarness, type Harness } from './support/identity.ts';

/**
 * What the backup routes refuse, each with a clear 4xx (or 503 for a
 * repository that cannot be reached) and nothing changed: a second "Back up
 * now" within the limit, an unknown snapshot, another tenant's snapshot, a
 * removed service, a body naming both a snapshot and a time; and the listing
 * shows only the caller's tenant's snapshots.
 */
let h: Harness;
let aSnapshot: string;
let bSnapshot: string;

async function subscribedNotes(tenantId: string, status: string): Promise<string> {
  const serviceId = (
    await h.db.db.selectFrom('services').select('id').where('key', '=', 'notes').executeTakeFirstOrThrow()
  ).id;
  const id = newId('tenantService');
  await h.db.db
    .insertInto('tenant_services')
    .values({ id, tenant_id: tenantId, service_id: serviceId, status: status as 'active' })
    .execute();
  return id;
}

const snapshotOf = (tenantId: string, tenantServiceId: string): Promise<string> =>
  recordSnapshot(h, {
    tenantId,
    tenantServiceId,
    runId: `run_${tenantId}`,
    content: 'dump',
    rowCounts: { 'public.drafts': 3 },
  });

beforeAll(async () => {
  h = await createHarness();
  await syncCatalog(h.db.db, loadCatalog());
  aSnapshot = await snapshotOf(h.a.id, await subscribedNotes(h.a.id, 'active'));
  bSnapshot = await snapshotOf(h.b.id, await subscribedNotes(h.b.id, 'active'));
}, 120_000);
afterAll(() => h.close());

const restore = (tenant: string, token: string, payload: unknown, service = 'notes') =>
  h.api.inject({
    method: 'POST',
    url: `/api/v1/tenants/${tenant}/services/${service}/restore`,
    headers: h.bearer(token),
    payload: payload as object,
  });
const restores = async () => (await h.db.db.selectFrom('restores').select('id').execute()).length;

describe('backup routes: refusals change nothing', { timeout: 120_000 }, () => {
  it("lists only the caller's tenant's snapshots, with their row counts", async () => {
    const res = await h.api.inject({
      method: 'GET',
      url: `/api/v1/tenants/${h.a.slug}/backups`,
      headers: h.bearer(h.a.owner.token),
    });
    expect(res.statusCode).toBe(200);
    const { backups } = res.json<{ backups: { snapshot: string; rowCounts: Record<string, number> }[] }>();
    expect(backups.map((b) => b.snapshot)).toEqual([aSnapshot]);
    expect(backups[0]!.rowCounts).toEqual({ 'public.drafts': 3 });
  });

  it('refuses an unknown snapshot and another tenant’s snapshot alike (404)', async () => {
    const unknown = await restore(h.a.slug, h.a.owner.token, { snapshot: 'deadbeefdeadbeef' });
    expect(unknown.statusCode).toBe(404);
    expect(unknown.json<{ error: { message: string } }>().error.message).toMatch(
      /no snapshot deadbeefdeadbeef/,
    );
    const theirs = await restore(h.a.slug, h.a.owner.token, { snapshot: bSnapshot });
    expect(theirs.statusCode).toBe(404);
    expect(theirs.body).not.toContain(h.b.id);
    const early = await restore(h.a.slug, h.a.owner.token, { at: '2001-01-01T00:00:00Z' });
    expect(early.statusCode).toBe(404);
    expect(await restores()).toBe(0);
  });

  it('refuses a bad body (400) and a service the tenant does not have (404)', async () => {
    const both = await restore(h.a.slug, h.a.owner.token, {
      snapshot: aSnapshot,
      at: '2026-01-01T00:00:00Z',
    });
    expect(both.statusCode).toBe(400);
    const notHex = await restore(h.a.slug, h.a.owner.token, { snapshot: '../../etc' });
    expect(notHex.statusCode).toBe(400);
    const none = await restore(h.a.slug, h.a.owner.token, {}, 'crm');
    expect(none.statusCode).toBe(404);
    expect(await restores()).toBe(0);
  });

  it('refuses a removed service (409)', async () => {
    await h.db.db
      .updateTable('tenant_services')
      .set({ status: 'removed' })
      .where('tenant_id', '=', h.b.id)
      .execute();
    const res = await restore(h.b.slug, h.b.owner.token, { snapshot: bSnapshot });
    expect(res.statusCode).toBe(409);
    expect(res.json<{ error: { message: string } }>().error.message).toMatch(/notes is removed/);
    expect(await restores()).toBe(0);
  });

  it('answers 503 when the repository cannot be reached, and starts nothing', async () => {
    const row = await h.db.db
      .selectFrom('backup_repositories')
      .select('location')
      .where('tenant_id', '=', h.a.id)
      .executeTakeFirstOrThrow();
    await h.db.db
      .updateTable('backup_repositories')
      .set({ location: 'sftp:aiqso-unreachable.invalid:/backups' })
      .where('tenant_id', '=', h.a.id)
      .execute();
    try {
      const res = await restore(h.a.slug, h.a.owner.token, { snapshot: aSnapshot });
      expect(res.statusCode).toBe(503);
      expect(res.json<{ error: { message: string } }>().error.message).toMatch(
        /backup repository unreachable/,
      );
      expect(await restores()).toBe(0);
    } finally {
      await h.db.db
        .updateTable('backup_repositories')
        .set({ location: row.location })
        .where('tenant_id', '=', h.a.id)
        .execute();
    }
  });

  it('accepts one restore (202) and records it', async () => {
    const res = await restore(h.a.slug, h.a.owner.token, { snapshot: aSnapshot.slice(0, 8) });
    expect(res.statusCode).toBe(202);
    expect(res.json()).toMatchObject({ snapshot: aSnapshot });
    expect(await restores()).toBe(1);
  });

  it('limits "Back up now" to one run per tenant in 10 minutes (429)', async () => {
    const call = (tenant: string, token: string) =>
      h.api.inject({ method: 'POST', url: `/api/v1/tenants/${tenant}/backups`, headers: h.bearer(token) });
    const first = await call(h.a.slug, h.a.owner.token);
    expect(first.statusCode).toBe(202);
    const second = await call(h.a.slug, h.a.owner.token);
    expect(second.statusCode).toBe(429);
    expect(second.json<{ error: { message: string } }>().error.message).toMatch(
      /back up again after 10 minutes/,
    );
    // The other tenant has its own allowance.
    expect((await call(h.b.slug, h.b.owner.token)).statusCode).toBe(202);
    const runs = await h.db.db
      .selectFrom('resources')
      .select('tenant_id')
      .where('kind', '=', 'backup-run')
      .execute();
    expect(runs.map((r) => r.tenant_id).sort()).toEqual([h.a.id, h.b.id].sort());
  });

  it('reads AIQSO_BACKUP_REPOSITORY and AIQSO_BACKUP_KEEP, refusing a malformed retention', () => {
    const c = loadConfig({
      AIQSO_BACKUP_REPOSITORY: 'sftp:nas:/srv/aiqso',
      AIQSO_BACKUP_KEEP: 'daily=7,monthly=3',
    });
    expect(c.backup.repository).toBe('sftp:nas:/srv/aiqso');
    expect(c.backup.keep).toEqual({ daily: 7, weekly: 0, monthly: 3 });
    expect(() => loadConfig({ AIQSO_BACKUP_KEEP: 'daily=thirty' })).toThrow(
      /AIQSO_BACKUP_KEEP: expected a retention/,
    );
  });
});
