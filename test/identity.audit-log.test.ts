import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appendAudit } from '../src/identity/audit.ts';
import { verifyAuditChain } from '../src/identity/audit-verify.ts';
import { runCli } from './support/cli.ts';
import { createHarness, type Harness } from './support/identity.ts';

let h: Harness;
beforeAll(async () => {
  h = await createHarness();
});
afterAll(() => h.close());

const verifyCli = () =>
  runCli(['audit', 'verify', '--json'], { DATABASE_URL: h.db.url, AIQSO_DATA_DIR: h.dataDir });

/** Change rows as a superuser who bypasses the append-only trigger: the tampering the chain must reveal. */
async function asIntruder(statement: ReturnType<typeof sql>) {
  await h.db.db.transaction().execute(async (trx) => {
    await sql`SET LOCAL session_replication_role = replica`.execute(trx);
    await statement.execute(trx);
  });
}

describe('audit log', () => {
  it('records mutating requests with actor, tenant, action, target, source IP and result', async () => {
    const res = await h.api.inject({
      method: 'POST',
      url: `/api/v1/tenants/${h.a.slug}/api-keys`,
      headers: h.bearer(h.a.owner.token),
      payload: { name: 'ci' },
      remoteAddress: '203.0.113.7',
    });
    expect(res.statusCode).toBe(201);
    const denied = await h.api.inject({
      method: 'POST',
      url: `/api/v1/tenants/${h.a.slug}/api-keys`,
      headers: h.bearer(h.a.member.token),
      payload: { name: 'nope' },
    });
    expect(denied.statusCode).toBe(403);
    // The address is kept beside the hashed row (a purge can delete it), the row holds its commitment.
    const rows = await h.db.db
      .selectFrom('audit_log')
      .leftJoin('audit_addresses', 'audit_addresses.audit_id', 'audit_log.id')
      .selectAll('audit_log')
      .select(sql<string>`host(audit_addresses.address)`.as('ip'))
      .where('action', '=', 'tenant.api_key.create')
      .orderBy('id')
      .execute();
    expect(rows.at(-2)).toMatchObject({
      actor_type: 'user',
      actor_id: h.a.owner.id,
      tenant_id: h.a.id,
      target_type: 'api_key',
      target_id: res.json<{ id: string }>().id,
      ip: '203.0.113.7',
      result: 'success',
    });
    expect(rows.at(-1)).toMatchObject({ actor_id: h.a.member.id, tenant_id: h.a.id, result: 'denied' });
    const failedLogin = await h.api.inject({
      method: 'POST',
      url: '/api/v1/auth/login',
      payload: { email: h.b.owner.email, password: 'wrong wrong wrong' },
    });
    expect(failedLogin.statusCode).toBe(401);
    const login = await h.db.db
      .selectFrom('audit_log')
      .selectAll()
      .where('action', '=', 'auth.login')
      .orderBy('id', 'desc')
      .executeTakeFirstOrThrow();
    expect(login).toMatchObject({ result: 'denied', actor_id: null });
  });

  it('lets admins filter by tenant, actor and time, and tenant owners read only their own', async () => {
    const since = new Date(Date.now() - 60_000).toISOString();
    const admin = await h.api.inject({
      method: 'GET',
      url: `/api/v1/audit?tenant=${h.b.id}&from=${encodeURIComponent(since)}`,
      headers: h.bearer(h.admin.token),
    });
    expect(admin.statusCode).toBe(200);
    const entries = admin.json<{ entries: { tenantId: string; actorId: string }[] }>().entries;
    expect(entries.length).toBeGreaterThan(0);
    expect(entries.every((e) => e.tenantId === h.b.id)).toBe(true);
    const byActor = await h.api.inject({
      method: 'GET',
      url: `/api/v1/audit?actor=${h.a.owner.id}`,
      headers: h.bearer(h.admin.token),
    });
    expect(
      byActor.json<{ entries: { actorId: string }[] }>().entries.every((e) => e.actorId === h.a.owner.id),
    ).toBe(true);
    const future = await h.api.inject({
      method: 'GET',
      url: `/api/v1/audit?from=${encodeURIComponent(new Date(Date.now() + 3_600_000).toISOString())}`,
      headers: h.bearer(h.admin.token),
    });
    expect(future.json<{ entries: unknown[] }>().entries).toEqual([]);
    const own = await h.api.inject({
      method: 'GET',
      url: '/api/v1/audit',
      headers: h.bearer(h.a.owner.token),
    });
    const ownEntries = own.json<{ entries: { tenantId: string }[] }>().entries;
    expect(ownEntries.length).toBeGreaterThan(0);
    expect(ownEntries.every((e) => e.tenantId === h.a.id)).toBe(true);
  });

  it('refuses UPDATE, DELETE and TRUNCATE through SQL', async () => {
    await expect(sql`UPDATE audit_log SET result = 'success'`.execute(h.db.db)).rejects.toThrow(
      /append-only/,
    );
    await expect(sql`DELETE FROM audit_log`.execute(h.db.db)).rejects.toThrow(/append-only/);
    await expect(sql`TRUNCATE audit_log`.execute(h.db.db)).rejects.toThrow(/append-only/);
  });

  it('keeps one chain under 40 concurrent appends, whatever text and address each holds', async () => {
    // The database hashes each row: text JSON escapes, text beyond ASCII, and every kind of address.
    const addresses = ['::1', '203.0.113.9', '2001:db8:0:0:0:0:0:7', null];
    await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        appendAudit(h.db.db, {
          actorType: 'system',
          actorId: i % 3 ? null : `usr_"quoted"\\${i}`,
          tenantId: i % 2 ? h.a.id : h.b.id,
          action: 'test.concurrent',
          targetType: i % 5 ? null : 'tenant',
          sourceIp: addresses[i % addresses.length]!,
          result: 'success',
          details: {
            i,
            company: `Müller & Söhne «Ω» 😀\n\t\u0001 ${i}`,
            nested: { z: 1, a: [1, 'x', null] },
          },
        }),
      ),
    );
    expect(await verifyAuditChain(h.db.db)).toMatchObject({ ok: true });
    const kept = await sql<{ address: string }>`
      SELECT host(a.address) AS address FROM audit_addresses a JOIN audit_log l ON l.id = a.audit_id
       WHERE l.action = 'test.concurrent'`.execute(h.db.db);
    expect(new Set(kept.rows.map((r) => r.address))).toEqual(new Set(['::1', '203.0.113.9', '2001:db8::7']));
    expect(kept.rows).toHaveLength(30);
  });

  it('aiqso audit verify passes an intact chain and names the first edited or deleted row', async () => {
    const intact = await verifyCli();
    expect(intact.code, intact.stderr).toBe(0);
    const report = JSON.parse(intact.stdout) as { ok: boolean; rows: number };
    expect(report.ok).toBe(true);
    expect(report.rows).toBeGreaterThan(40);

    const rows = await h.db.db.selectFrom('audit_log').select(['id', 'result']).orderBy('id').execute();
    const victim = rows[Math.floor(rows.length / 2)]!;
    await asIntruder(
      sql`UPDATE audit_log SET result = 'success', details = '{"covered":"up"}' WHERE id = ${victim.id}`,
    );
    const edited = await verifyCli();
    expect(edited.code).toBe(1);
    expect(JSON.parse(edited.stdout)).toMatchObject({
      ok: false,
      firstBadId: victim.id,
      reason: 'content_changed',
    });
    const human = await runCli(['audit', 'verify'], { DATABASE_URL: h.db.url, AIQSO_DATA_DIR: h.dataDir });
    expect(human.stdout).toContain(`first bad row id ${victim.id}`);

    // Deleting the edited row instead: the row after it no longer links to its predecessor.
    await asIntruder(sql`DELETE FROM audit_log WHERE id = ${victim.id}`);
    const next = rows[rows.indexOf(victim) + 1]!;
    const deleted = await verifyCli();
    expect(deleted.code).toBe(1);
    expect(JSON.parse(deleted.stdout)).toMatchObject({
      ok: false,
      firstBadId: next.id,
      reason: 'link_broken',
    });
  });
});
