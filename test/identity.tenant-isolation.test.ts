import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runAsTenant } from '../src/identity/tenant-access.ts';
import { createHarness, type Harness } from './support/identity.ts';

/**
 * The second wall: row-level security. These queries deliberately omit the
 * application's `WHERE tenant_id = …` and run on a superuser connection; the
 * tenant scope (SET LOCAL ROLE aiqso_tenant + aiqso.tenant_id) alone must hide
 * and protect the other tenant's rows.
 */
let h: Harness;
beforeAll(async () => {
  h = await createHarness();
  await h.db.db
    .insertInto('resources')
    .values([
      { kind: 'tenant', id: h.a.id, tenant_id: h.a.id, spec: '{}', steps: '[]' },
      { kind: 'tenant', id: h.b.id, tenant_id: h.b.id, spec: '{}', steps: '[]' },
    ])
    .execute();
});
afterAll(() => h.close());

describe('row-level security under the tenant scope', () => {
  it('runs as a role that is not the owner, so policies apply although the pool connects as a superuser', async () => {
    const who = await runAsTenant(
      h.db.db,
      h.a.id,
      async (trx) =>
        (
          await sql<{
            u: string;
            bypass: boolean;
          }>`SELECT current_user AS u, (SELECT rolbypassrls OR rolsuper FROM pg_roles WHERE rolname = current_user) AS bypass`.execute(
            trx,
          )
        ).rows[0]!,
    );
    expect(who).toEqual({ u: 'aiqso_tenant', bypass: false });
    const outside = await h.db.db.selectFrom('users').select('id').execute();
    expect(outside.length).toBeGreaterThanOrEqual(5);
  });

  it('hides every other tenant row from a query that forgot its tenant filter', async () => {
    const seen = await runAsTenant(h.db.db, h.a.id, async (trx) => ({
      tenants: await trx.selectFrom('tenants').select('id').execute(),
      users: await trx.selectFrom('users').select('tenant_id').execute(),
      keys: await trx.selectFrom('api_keys').select('tenant_id').execute(),
      resources: await trx.selectFrom('resources').select('tenant_id').execute(),
      audit: await trx.selectFrom('audit_log').select('tenant_id').execute(),
    }));
    expect(seen.tenants.map((t) => t.id)).toEqual([h.a.id]);
    expect(new Set(seen.users.map((u) => u.tenant_id))).toEqual(new Set([h.a.id]));
    expect(seen.resources.map((r) => r.tenant_id)).toEqual([h.a.id]);
    for (const row of [...seen.keys, ...seen.audit]) expect(row.tenant_id).toBe(h.a.id);
  });

  it("cannot change or delete the other tenant's rows, nor write rows into it", async () => {
    const changed = await runAsTenant(h.db.db, h.a.id, async (trx) => {
      const upd = await trx
        .updateTable('users')
        .set({ role: 'tenant_owner' })
        .where('id', '=', h.b.member.id)
        .executeTakeFirst();
      const del = await trx.deleteFrom('resources').where('id', '=', h.b.id).executeTakeFirst();
      return [upd.numUpdatedRows, del.numDeletedRows];
    });
    expect(changed).toEqual([0n, 0n]);
    await expect(
      runAsTenant(h.db.db, h.a.id, (trx) =>
        trx
          .insertInto('users')
          .values({
            id: 'usr_01jx0000000000000000000001',
            email: 'sneak@bravo.test',
            role: 'tenant_owner',
            tenant_id: h.b.id,
            password_hash: null,
          })
          .execute(),
      ),
    ).rejects.toThrow(/row-level security/);
    await expect(
      runAsTenant(h.db.db, h.a.id, (trx) => trx.updateTable('tenants').set({ company: 'x' }).execute()),
    ).rejects.toThrow(/permission denied/);
  });

  it('sees nothing at all when no tenant is set', async () => {
    const rows = await h.db.db.transaction().execute(async (trx) => {
      await sql`SET LOCAL ROLE aiqso_tenant`.execute(trx);
      return trx.selectFrom('users').select('id').execute();
    });
    expect(rows).toEqual([]);
  });

  it('answers "not found" for another tenant by id or slug, never its data', async () => {
    for (const ref of [h.b.id, h.b.slug, 'no-such-tenant']) {
      const res = await h.api.inject({
        method: 'GET',
        url: `/api/v1/tenants/${ref}`,
        headers: h.bearer(h.a.owner.token),
      });
      expect(res.statusCode).toBe(404);
    }
    const admin = await h.api.inject({
      method: 'GET',
      url: `/api/v1/tenants/${h.b.slug}`,
      headers: h.bearer(h.admin.token),
    });
    expect(admin.statusCode).toBe(200);
    expect(admin.json()).toMatchObject({ id: h.b.id, resources: [{ kind: 'tenant', id: h.b.id }] });
  });
});
