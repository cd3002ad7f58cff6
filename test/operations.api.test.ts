import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadCatalog } from '../src/catalog/load.ts';
import { syncCatalog } from '../src/catalog/sync.ts';
import { newId } from '../src/core/ids.ts';
import { acmeSettings, orderAndRecord } from '../src/edge/renewal.ts';
import { INBOX_MAX_ATTEMPTS } from '../src/orchestrator/inbox.ts';
import { DASHBOARD_DISK_REQUEST_MB, lockPlacementHost } from '../src/services/hosts.ts';
import { startAcmeDns, type AcmeDns } from './support/acme-dns.ts';
import { createHarness, type Harness } from './support/identity.ts';
import { missingPart } from './support/strict.ts';
import { hasOpenssl } from './support/tls.ts';

/**
 * The operators' admin API behind the console's operations pages, over a real
 * database: jobs and failed work with retry of a resource and of a received
 * event; hosts with their capacity, drain and undrain; certificates with
 * "renew now" against a local ACME CA (DNS-01 through a hook script); the
 * audit chain's verify, intact and tampered. Each route: anonymous 401, a
 * tenant owner and member 403, a bad parameter 400 naming it.
 */
const skip = missingPart('openssl', hasOpenssl, 'apt-get install openssl');

let h: Harness;
let acme: AcmeDns;

const as = (token: string | undefined, req: { method: 'GET' | 'POST'; url: string }) =>
  h.api.inject({
    method: req.method,
    url: req.url,
    headers: token ? h.bearer(token) : {},
    ...(req.method === 'POST' ? { payload: {} } : {}),
  });

beforeAll(async () => {
  if (skip) return;
  acme = await startAcmeDns();
  h = await createHarness({ env: acme.env });
  await syncCatalog(h.db.db, loadCatalog());
}, 120_000);

afterAll(async () => {
  await h?.close();
  await acme?.close();
});

describe.skipIf(skip)('operations admin API', { timeout: 60_000 }, () => {
  const ROUTES: { method: 'GET' | 'POST'; url: string }[] = [
    { method: 'GET', url: '/api/v1/jobs' },
    { method: 'POST', url: '/api/v1/jobs/resources/tenant/ten_x/retry' },
    { method: 'POST', url: '/api/v1/jobs/inbox/evt_x/retry' },
    { method: 'GET', url: '/api/v1/hosts' },
    { method: 'POST', url: '/api/v1/hosts/h1/drain' },
    { method: 'POST', url: '/api/v1/hosts/h1/undrain' },
    { method: 'GET', url: '/api/v1/certificates' },
    { method: 'POST', url: '/api/v1/certificates/example.test/renew' },
    { method: 'GET', url: '/api/v1/audit/verify' },
  ];

  it('refuses anonymous callers (401) and tenant users (403) on every route', async () => {
    for (const route of ROUTES) {
      const anonymous = await as(undefined, route);
      expect(anonymous.statusCode, `${route.method} ${route.url}`).toBe(401);
      for (const token of [h.a.owner.token, h.a.member.token]) {
        const res = await as(token, route);
        expect(res.statusCode, `${route.method} ${route.url}`).toBe(403);
        expect(res.json()).toMatchObject({ error: { code: 'forbidden' } });
      }
    }
  });

  it('lists queued and failed work; retries a failed resource once; 404 and 400 name what was wrong', async () => {
    const db = h.db.db;
    const failedId = newId('tenant');
    await db.insertInto('tenants').values({ id: failedId, slug: 'broken', company: 'Broken Ltd' }).execute();
    await db
      .insertInto('resources')
      .values({
        kind: 'tenant',
        id: failedId,
        tenant_id: failedId,
        spec: JSON.stringify({ slug: 'broken' }),
        steps: JSON.stringify([]),
        phase: 'failed',
        failures: 7,
        last_error: 'dashboard container: lxc-start exited 1',
        updated_at: new Date(),
      })
      .execute();
    await db
      .insertInto('outbox')
      .values({
        key: 'alert:test',
        kind: 'alert',
        payload: JSON.stringify({}),
        status: 'failed',
        attempts: 5,
        last_error: 'smtp: 550 mailbox unavailable',
      })
      .execute();

    const before = await as(h.admin.token, { method: 'GET', url: '/api/v1/jobs' });
    expect(before.statusCode, before.body).toBe(200);
    const work = before.json<{
      counts: Record<string, number>;
      failedResources: { kind: string; id: string; failures: number; lastError: string }[];
      failedOutbox: { key: string; lastError: string }[];
    }>();
    expect(work.failedResources).toEqual([
      expect.objectContaining({
        kind: 'tenant',
        id: failedId,
        failures: 7,
        lastError: 'dashboard container: lxc-start exited 1',
      }),
    ]);
    expect(work.counts.failedResources).toBe(1);
    expect(work.failedOutbox).toEqual([
      expect.objectContaining({ key: 'alert:test', lastError: 'smtp: 550 mailbox unavailable' }),
    ]);

    const url = `/api/v1/jobs/resources/tenant/${failedId}/retry`;
    const retried = await as(h.admin.token, { method: 'POST', url });
    expect(retried.statusCode, retried.body).toBe(202);
    const row = await db
      .selectFrom('resources')
      .select(['phase', 'failures'])
      .where('id', '=', failedId)
      .executeTakeFirstOrThrow();
    expect(row).toEqual({ phase: 'reconciling', failures: 0 });
    // Its reconcile is queued: the jobs view counts it, and the resource has left the failed list.
    const after = (await as(h.admin.token, { method: 'GET', url: '/api/v1/jobs' })).json<{
      counts: Record<string, number>;
      jobs: { task: string; key: string | null; state: string }[];
    }>();
    expect(after.counts.failedResources).toBe(0);
    expect(after.jobs.some((j) => j.key?.includes(failedId) && j.state === 'queued')).toBe(true);
    expect(after.counts.queued).toBeGreaterThanOrEqual(1);
    // The audit row names the operator, the resource and its tenant.
    const audit = await db
      .selectFrom('audit_log')
      .select(['actor_id', 'tenant_id', 'target_type', 'target_id', 'result'])
      .where('action', '=', 'resource.retry')
      .where('actor_id', '=', h.admin.id)
      .execute();
    expect(audit).toEqual([
      {
        actor_id: h.admin.id,
        tenant_id: failedId,
        target_type: 'tenant',
        target_id: failedId,
        result: 'success',
      },
    ]);

    const again = await as(h.admin.token, { method: 'POST', url });
    expect(again.statusCode).toBe(409);
    expect(again.json<{ error: { message: string } }>().error.message).toContain(
      'only a failed resource can be retried',
    );
    const missing = await as(h.admin.token, {
      method: 'POST',
      url: '/api/v1/jobs/resources/tenant/ten_nothing/retry',
    });
    expect(missing.statusCode).toBe(404);
    const bad = await as(h.admin.token, { method: 'POST', url: '/api/v1/jobs/resources/Bad-Kind/x/retry' });
    expect(bad.statusCode).toBe(400);
    expect(bad.body).toContain('kind');
  });

  it("retries a failed tenant service as the service's own retry does (pending again)", async () => {
    const sub = await h.api.inject({
      method: 'POST',
      url: `/api/v1/tenants/${h.a.slug}/services`,
      headers: h.bearer(h.a.owner.token),
      payload: { service: 'notes' },
    });
    expect(sub.statusCode, sub.body).toBe(202);
    const { rows } = await h.db.pool.query<{ id: string }>(
      `UPDATE tenant_services ts SET status = 'failed', status_reason = 'health check: no answer'
         FROM services s WHERE s.id = ts.service_id AND s.key = 'notes' AND ts.tenant_id = $1 RETURNING ts.id`,
      [h.a.id],
    );
    const serviceId = rows[0]!.id;
    await h.db.pool.query("UPDATE resources SET phase = 'failed' WHERE id = $1", [serviceId]);
    const res = await as(h.admin.token, {
      method: 'POST',
      url: `/api/v1/jobs/resources/tenant_service/${serviceId}/retry`,
    });
    expect(res.statusCode, res.body).toBe(202);
    const after = await h.db.pool.query<{ status: string; phase: string }>(
      `SELECT ts.status, r.phase FROM tenant_services ts JOIN resources r ON r.id = ts.id WHERE ts.id = $1`,
      [serviceId],
    );
    expect(after.rows[0]).toEqual({ status: 'pending', phase: 'reconciling' });
  });

  it('processes a failed received event again: its count starts again and its job runs now', async () => {
    const db = h.db.db;
    await db
      .insertInto('inbox')
      .values([
        {
          id: 'evt_gave_up',
          source: 'stripe',
          type: 'invoice.paid',
          payload: JSON.stringify({}),
          attempts: INBOX_MAX_ATTEMPTS,
          last_error: 'no tenant for customer cus_1',
        },
        {
          id: 'evt_done',
          source: 'stripe',
          type: 'invoice.paid',
          payload: JSON.stringify({}),
          attempts: 1,
          processed_at: new Date(),
        },
      ])
      .execute();
    const listed = (await as(h.admin.token, { method: 'GET', url: '/api/v1/jobs' })).json<{
      failingInbox: { id: string; state: string; lastError: string }[];
    }>();
    expect(listed.failingInbox).toEqual([
      expect.objectContaining({
        id: 'evt_gave_up',
        state: 'failed',
        lastError: 'no tenant for customer cus_1',
      }),
    ]);
    const res = await as(h.admin.token, { method: 'POST', url: '/api/v1/jobs/inbox/evt_gave_up/retry' });
    expect(res.statusCode, res.body).toBe(202);
    const row = await db
      .selectFrom('inbox')
      .select(['attempts', 'last_error'])
      .where('id', '=', 'evt_gave_up')
      .executeTakeFirstOrThrow();
    expect(row).toEqual({ attempts: 0, last_error: null });
    const { rows } = await sql<{ attempts: number; due: boolean }>`
      SELECT attempts, run_at <= now() AS due FROM graphile_worker.jobs WHERE key = 'inbox:evt_gave_up'`.execute(
      db,
    );
    expect(rows).toEqual([{ attempts: 0, due: true }]);
    const done = await as(h.admin.token, { method: 'POST', url: '/api/v1/jobs/inbox/evt_done/retry' });
    expect(done.statusCode).toBe(409);
    expect(done.body).toContain('processed already');
    const unknown = await as(h.admin.token, { method: 'POST', url: '/api/v1/jobs/inbox/evt_unknown/retry' });
    expect(unknown.statusCode).toBe(404);
  });

  it("shows each host's capacity against what is claimed; drain keeps placement off it, undrain brings it back", async () => {
    const db = h.db.db;
    const big = newId('host');
    const small = newId('host');
    // The tenant retried above never got a host: out of the way (a tenant without one counts everywhere).
    await h.db.pool.query(`UPDATE resources SET phase = 'deleted' WHERE spec @> '{"slug":"broken"}'`);
    await db
      .insertInto('hosts')
      .values([
        { id: big, name: 'big', driver: 'process', memory_mb: 8192, cores: 8, disk_gb: 200 },
        {
          id: small,
          name: 'small',
          driver: 'process',
          memory_mb: 4096,
          cores: 4,
          disk_gb: 100,
          max_containers: 10,
        },
      ])
      .execute();
    // Tenant A lives on `big`: its dashboard and the Notes service subscribed above. The subscription
    // recorded this machine as a host: only the two hosts of this test remain.
    await db.updateTable('tenants').set({ host_id: big }).execute();
    await db.deleteFrom('hosts').where('id', 'not in', [big, small]).execute();
    await db
      .insertInto('resources')
      .values({
        kind: 'tenant',
        id: h.a.id,
        tenant_id: h.a.id,
        spec: JSON.stringify({}),
        steps: JSON.stringify([]),
        phase: 'ready',
        updated_at: new Date(),
      })
      .execute();
    const notes = await h.db.pool.query<{
      memory_mb: number;
      request: number | null;
      cores: number;
      disk: number;
    }>(
      `SELECT (spec->'resources'->>'memory_mb')::int AS memory_mb,
              (spec->'resources'->>'request_memory_mb')::int AS request,
              (spec->'resources'->>'cores')::numeric::float8 AS cores,
              (spec->'resources'->>'disk_gb')::int AS disk
         FROM resources WHERE kind = 'tenant_service' AND tenant_id = $1`,
      [h.a.id],
    );
    const n = notes.rows[0]!;
    const res = await as(h.admin.token, { method: 'GET', url: '/api/v1/hosts' });
    expect(res.statusCode, res.body).toBe(200);
    const hosts = res.json<{ hosts: Record<string, unknown>[] }>().hosts;
    expect(hosts.map((x) => x.name)).toEqual(['big', 'small']);
    const policy = h.config.hostCapacity;
    expect(hosts[0]).toMatchObject({
      id: big,
      draining: false,
      memory: {
        totalMb: 8192,
        allocatableMb: Math.floor((8192 - policy.reserveMb) * policy.overcommit),
        requestedMb: 32 + Math.min(n.memory_mb, n.request ?? n.memory_mb),
      },
      cpu: { cores: 8, requestedCores: 1 + n.cores },
      // The dashboard counts its disk request (MB), a service its disk in full.
      disk: { totalGb: 200, requestedGb: Math.round((DASHBOARD_DISK_REQUEST_MB / 1024 + n.disk) * 10) / 10 },
      containers: { count: 2, max: null },
    });
    expect(hosts[1]).toMatchObject({ containers: { count: 0, max: 10 }, memory: { requestedMb: 0 } });

    const drain = await as(h.admin.token, { method: 'POST', url: '/api/v1/hosts/big/drain' });
    expect(drain.statusCode, drain.body).toBe(200);
    expect(drain.json()).toEqual({ host: { id: big, name: 'big', draining: true }, changed: true });
    const twice = await as(h.admin.token, { method: 'POST', url: `/api/v1/hosts/${big}/drain` });
    expect(twice.json()).toMatchObject({ changed: false });
    // Placement now passes over the larger host.
    const placed = await db
      .transaction()
      .execute((trx) => lockPlacementHost(trx, { driver: 'process', dataDir: h.dataDir }));
    expect(placed.id).toBe(small);
    const undrain = await as(h.admin.token, { method: 'POST', url: '/api/v1/hosts/big/undrain' });
    expect(undrain.json()).toMatchObject({ host: { draining: false }, changed: true });
    const back = await db
      .transaction()
      .execute((trx) => lockPlacementHost(trx, { driver: 'process', dataDir: h.dataDir }));
    expect(back.id).toBe(big);
    const actions = await db
      .selectFrom('audit_log')
      .select(['action', 'target_id', 'result'])
      .where('action', 'in', ['host.drain', 'host.undrain'])
      .where('actor_id', '=', h.admin.id)
      .orderBy('id')
      .execute();
    expect(actions).toEqual([
      { action: 'host.drain', target_id: big, result: 'success' },
      { action: 'host.drain', target_id: big, result: 'success' },
      { action: 'host.undrain', target_id: big, result: 'success' },
    ]);
    const unknown = await as(h.admin.token, { method: 'POST', url: '/api/v1/hosts/nowhere/drain' });
    expect(unknown.statusCode).toBe(404);
    expect(unknown.body).toContain('host nowhere');
  });

  it('lists certificates with their expiry and renews one now from the CA; an unknown one is 404', async () => {
    const empty = await as(h.admin.token, { method: 'GET', url: '/api/v1/certificates' });
    expect(empty.json()).toMatchObject({
      certificates: [],
      acme: { configured: true, directoryUrl: acme.ca.directoryUrl },
    });
    const first = await orderAndRecord(h.db.db, acmeSettings(h.config, h.db.db), ['*.ops.test']);
    const listed = await as(h.admin.token, { method: 'GET', url: '/api/v1/certificates' });
    expect(listed.statusCode, listed.body).toBe(200);
    expect(listed.json<{ certificates: unknown[] }>().certificates).toEqual([
      expect.objectContaining({
        name: '*.ops.test',
        names: ['*.ops.test'],
        file: '_wildcard.ops.test',
        challenge: 'dns-01',
        notAfter: first.notAfter.toISOString(),
        daysLeft: 0,
        lastError: null,
      }),
    ]);
    const issued = acme.ca.issued;
    await new Promise((r) => setTimeout(r, 1100)); // a new certificate's notAfter is a later second
    const renewed = await as(h.admin.token, {
      method: 'POST',
      url: `/api/v1/certificates/${encodeURIComponent('*.ops.test')}/renew`,
    });
    expect(renewed.statusCode, renewed.body).toBe(200);
    expect(acme.ca.issued).toBe(issued + 1);
    const notAfter = new Date(renewed.json<{ notAfter: string }>().notAfter);
    expect(notAfter.getTime()).toBeGreaterThan(first.notAfter.getTime());
    const audit = await h.db.db
      .selectFrom('audit_log')
      .select(['target_id', 'result'])
      .where('action', '=', 'certificate.renew')
      .where('actor_id', '=', h.admin.id)
      .execute();
    expect(audit).toEqual([{ target_id: '*.ops.test', result: 'success' }]);
    const unknown = await as(h.admin.token, {
      method: 'POST',
      url: '/api/v1/certificates/nowhere.test/renew',
    });
    expect(unknown.statusCode).toBe(404);
  });

  it('verifies the audit chain: intact with its head, against a kept head, and tampered naming the row', async () => {
    const ok = await as(h.admin.token, { method: 'GET', url: '/api/v1/audit/verify' });
    expect(ok.statusCode, ok.body).toBe(200);
    const report = ok.json<{ ok: boolean; rows: number; anchor: string; message: string }>();
    expect(report).toMatchObject({ ok: true, firstBadId: null, reason: null });
    expect(report.rows).toBeGreaterThan(5);
    expect(report.anchor).toMatch(/^\d+:[0-9a-f]{64}$/);
    const kept = await as(h.admin.token, {
      method: 'GET',
      url: `/api/v1/audit/verify?expect=${report.anchor}`,
    });
    expect(kept.json()).toMatchObject({ ok: true });
    const wrong = report.anchor.replace(/:(.)/, (_m, c: string) => `:${c === 'a' ? 'b' : 'a'}`);
    const mismatch = await as(h.admin.token, { method: 'GET', url: `/api/v1/audit/verify?expect=${wrong}` });
    expect(mismatch.json()).toMatchObject({ ok: false, reason: 'anchor_mismatch' });
    const bad = await as(h.admin.token, { method: 'GET', url: '/api/v1/audit/verify?expect=12:xyz' });
    expect(bad.statusCode).toBe(400);
    expect(bad.body).toContain('expect');

    // An intruder who switched the triggers off edits a row.
    const { id } = await h.db.db
      .selectFrom('audit_log')
      .select('id')
      .orderBy('id')
      .offset(2)
      .limit(1)
      .executeTakeFirstOrThrow();
    await h.db.db.transaction().execute(async (trx) => {
      await sql`SET LOCAL session_replication_role = replica`.execute(trx);
      await sql`UPDATE audit_log SET result = 'success', action = 'nothing.here' WHERE id = ${id}`.execute(
        trx,
      );
    });
    const tampered = await as(h.admin.token, { method: 'GET', url: '/api/v1/audit/verify' });
    expect(tampered.statusCode).toBe(200);
    expect(tampered.json()).toMatchObject({
      ok: false,
      firstBadId: String(id),
      reason: 'content_changed',
      message: expect.stringContaining(`first bad row id ${id}`) as string,
    });
  });

  it('refuses a bad audit query with 400 naming the parameter', async () => {
    for (const [query, field] of [
      ['from=yesterday', 'from'],
      ['before=abc', 'before'],
      ['limit=0', 'limit'],
    ] as const) {
      const res = await as(h.admin.token, { method: 'GET', url: `/api/v1/audit?${query}` });
      expect(res.statusCode, query).toBe(400);
      expect(res.body, query).toContain(field);
    }
  });
});

describe.skipIf(skip)('certificates without ACME configured', { timeout: 60_000 }, () => {
  let bare: Harness;
  beforeAll(async () => {
    bare = await createHarness();
  }, 120_000);
  afterAll(() => bare?.close());

  it('lists the recorded certificate by its record, and refuses "renew now" with 400 naming the setting, recording nothing', async () => {
    const notAfter = new Date(Date.now() + 40 * 86_400_000);
    await bare.db.db
      .insertInto('certificates')
      .values({
        name: 'www.shop.test',
        names: ['www.shop.test'],
        file_base: 'www.shop.test',
        challenge: 'http-01',
        not_after: notAfter,
        ordered_at: new Date(),
        last_attempt_at: new Date(),
        updated_at: new Date(),
      })
      .execute();
    const listed = await bare.api.inject({
      method: 'GET',
      url: '/api/v1/certificates',
      headers: bare.bearer(bare.admin.token),
    });
    expect(listed.json()).toMatchObject({
      acme: { configured: false, directoryUrl: null },
      certificates: [{ name: 'www.shop.test', notAfter: notAfter.toISOString(), daysLeft: 39 }],
    });
    const res = await bare.api.inject({
      method: 'POST',
      url: '/api/v1/certificates/www.shop.test/renew',
      headers: bare.bearer(bare.admin.token),
      payload: {},
    });
    expect(res.statusCode).toBe(400);
    expect(res.json<{ error: { message: string } }>().error.message).toBe(
      'set AIQSO_ACME_DIRECTORY_URL to order certificates',
    );
    const row = await bare.db.db
      .selectFrom('certificates')
      .select('last_error')
      .where('name', '=', 'www.shop.test')
      .executeTakeFirstOrThrow();
    expect(row.last_error).toBeNull();
    const alerts = await bare.db.db.selectFrom('outbox').select('key').where('kind', '=', 'alert').execute();
    expect(alerts).toEqual([]);
  });
});
