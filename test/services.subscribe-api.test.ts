import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadCatalog } from '../src/catalog/load.ts';
import { syncCatalog } from '../src/catalog/sync.ts';
import { memoryRequest } from '../src/core/services.ts';
import { countRows } from './support/db.ts';
import { createHarness, type Harness } from './support/identity.ts';

/**
 * Subscribing through the API: what is refused (and that a refusal writes
 * nothing), what is idempotent, and what a subscription writes. No worker runs
 * here; test/services.subscribe-to-ready.test.ts deploys for real.
 */
let h: Harness;
beforeAll(async () => {
  h = await createHarness();
  await syncCatalog(h.db.db, loadCatalog());
}, 120_000);
afterAll(() => h.close());

const post = (tenant: string, payload: unknown, token = h.a.owner.token) =>
  h.api.inject({
    method: 'POST',
    url: `/api/v1/tenants/${tenant}/services`,
    headers: h.bearer(token),
    payload: payload as object,
  });
const written = async () => ({
  services: await countRows(h.db, 'SELECT 1 FROM tenant_services'),
  resources: await countRows(h.db, "SELECT 1 FROM resources WHERE kind = 'tenant_service'"),
});
type Err = { error: { code: string; message: string } };

describe('POST /api/v1/tenants/{tenant}/services', () => {
  it('subscribes with 202, writes the row and the spec, and a second subscribe returns the same one', async () => {
    const first = await post(h.a.slug, { service: 'notes' });
    expect(first.statusCode, first.body).toBe(202);
    const body = first.json<{ id: string; status: string; url: string; service: string }>();
    expect(body).toMatchObject({ service: 'notes', status: 'pending' });
    expect(body.id).toMatch(/^tsv_/);
    expect(body.url).toBe(`http://alpha.localhost:8080/notes/`);
    const again = await post(h.a.slug, { service: 'notes' });
    expect(again.statusCode).toBe(202);
    expect(again.json<{ id: string }>().id).toBe(body.id);
    expect(await written()).toEqual({ services: 1, resources: 1 });
    const spec = await h.db.db
      .selectFrom('resources')
      .select(['spec', 'tenant_id'])
      .where('id', '=', body.id)
      .executeTakeFirstOrThrow();
    expect(spec).toMatchObject({
      tenant_id: h.a.id,
      spec: { service: 'notes', slug: 'alpha', resources: { memory_mb: 128 }, removeAfter: null },
    });
    const list = await h.api.inject({
      method: 'GET',
      url: `/api/v1/tenants/${h.a.slug}/services`,
      headers: h.bearer(h.a.member.token),
    });
    expect(list.json<{ services: { id: string }[] }>().services.map((s) => s.id)).toEqual([body.id]);
    const other = await h.api.inject({
      method: 'GET',
      url: `/api/v1/tenants/${h.b.slug}/services`,
      headers: h.bearer(h.b.owner.token),
    });
    expect(other.json()).toEqual({ services: [], graceHours: 168 });
  });

  it('answers 404 naming an unknown service, 400 for a malformed body, and writes nothing', async () => {
    const before = await written();
    const unknown = await post(h.a.slug, { service: 'crm-9000' });
    expect(unknown.statusCode).toBe(404);
    expect(unknown.json<Err>().error.message).toContain('crm-9000');
    for (const payload of [{}, { service: 42 }, { service: 'notes', extra: true }, ['notes']]) {
      const bad = await post(h.a.slug, payload);
      expect(bad.statusCode, JSON.stringify(payload)).toBe(400);
    }
    expect(await written()).toEqual(before);
  });

  it('refuses a suspended tenant with 409 and a message', async () => {
    await h.db.db.updateTable('tenants').set({ status: 'suspended' }).where('id', '=', h.b.id).execute();
    try {
      const before = await written();
      const res = await post(h.b.slug, { service: 'notes' }, h.b.owner.token);
      expect(res.statusCode).toBe(409);
      expect(res.json<Err>().error.message).toBe(
        'bravo is suspended; only an active tenant can subscribe to services',
      );
      expect(await written()).toEqual(before);
    } finally {
      await h.db.db.updateTable('tenants').set({ status: 'active' }).where('id', '=', h.b.id).execute();
    }
  });

  it("refuses beyond the plan's service limit with 409 naming the plan", async () => {
    expect((await post(h.a.slug, { service: 'content-suite' })).statusCode).toBe(202);
    const before = await written();
    const res = await post(h.a.slug, { service: 'social-media-manager' });
    expect(res.statusCode).toBe(409);
    expect(res.json<Err>().error.message).toContain('the Starter plan allows 2 services');
    expect(await written()).toEqual(before);
  });

  it('refuses when the host is full: 409 naming the host and the memory, and nothing is created', async () => {
    // The first subscription recorded this machine as the host; shrink it to what is already claimed + 8 MB
    // less than notes' request (on top of the reserve the host keeps for itself). Placement counts requests.
    const host = await h.db.db.selectFrom('hosts').select(['id', 'name']).executeTakeFirstOrThrow();
    const requestOf = (key: string) => memoryRequest(loadCatalog().find((t) => t.key === key)!.resources);
    // alpha's notes and content-suite; the test tenants have no dashboard resource
    const claimed = requestOf('notes') + requestOf('content-suite');
    const free = requestOf('notes') - 8;
    await h.db.db
      .updateTable('hosts')
      .set({ memory_mb: claimed + free + h.config.hostCapacity.reserveMb })
      .where('id', '=', host.id)
      .execute();
    const before = await written();
    const res = await post(h.b.slug, { service: 'notes' }, h.b.owner.token);
    expect(res.statusCode, res.body).toBe(409);
    expect(res.json<Err>()).toEqual({
      error: {
        code: 'conflict',
        message: `host ${host.name} has ${free} MB of memory free; notes needs ${requestOf('notes')} MB`,
        details: { host: host.name },
      },
    });
    expect(await written()).toEqual(before);
  });

  it('unsubscribes with 202 (status removing), idempotently, and 404 for a service the tenant does not have', async () => {
    const del = () =>
      h.api.inject({
        method: 'DELETE',
        url: `/api/v1/tenants/${h.a.slug}/services/content-suite`,
        headers: h.bearer(h.a.owner.token),
      });
    const first = await del();
    expect(first.statusCode, first.body).toBe(202);
    const removing = first.json<{ status: string; statusReason: string }>();
    expect(removing.status).toBe('removing');
    expect(removing.statusReason).toContain('unsubscribed');
    expect((await del()).statusCode).toBe(202);
    const missing = await h.api.inject({
      method: 'DELETE',
      url: `/api/v1/tenants/${h.a.slug}/services/listmonk`,
      headers: h.bearer(h.a.owner.token),
    });
    expect(missing.statusCode).toBe(404);
    // Subscribing again within the grace period brings the same subscription back.
    const back = await post(h.a.slug, { service: 'content-suite' });
    expect(back.statusCode, back.body).toBe(202);
    expect(back.json()).toMatchObject({ id: first.json<{ id: string }>().id, status: 'pending' });
    const spec = await h.db.db
      .selectFrom('resources')
      .select('spec')
      .where('id', '=', first.json<{ id: string }>().id)
      .executeTakeFirstOrThrow();
    expect(spec.spec).toMatchObject({ removeAfter: null });
  });

  it('lets a platform admin change resources (and only valid ones)', async () => {
    await h.db.db.updateTable('hosts').set({ memory_mb: 1_000_000 }).execute();
    const patch = (payload: object) =>
      h.api.inject({
        method: 'PATCH',
        url: `/api/v1/tenants/${h.a.slug}/services/notes`,
        headers: h.bearer(h.admin.token),
        payload,
      });
    const ok = await patch({ resources: { memory_mb: 256, cores: 2 } });
    expect(ok.statusCode, ok.body).toBe(202);
    expect(ok.json()).toMatchObject({ resources: { memory_mb: 256, cores: 2, disk_gb: 1 } });
    expect((await patch({ resources: {} })).statusCode).toBe(400);
    expect((await patch({ resources: { memory_mb: 1 } })).statusCode).toBe(400);
    // Below the service's own minimum: refused, naming it.
    const tooLittle = await patch({ resources: { memory_mb: 96 } });
    expect(tooLittle.statusCode).toBe(400);
    expect(tooLittle.json<Err>().error.message).toBe(
      'notes needs at least 128 MB of memory; 96 MB is too little',
    );
  });
});
