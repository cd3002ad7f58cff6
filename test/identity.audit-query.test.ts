import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appendAudit } from '../src/identity/audit.ts';
import { createHarness, type Harness } from './support/identity.ts';

/**
 * Reading the audit log (issue #6): admins query by tenant (id or slug),
 * actor and time range, page through it newest first; tenant owners read
 * their own tenant's rows and nothing else; members read nothing.
 */
let h: Harness;
const marks: Date[] = [];
beforeAll(async () => {
  h = await createHarness();
  // Three rounds of rows, a time mark before each: A's owner, B's owner, and a system row per tenant.
  for (let round = 0; round < 3; round++) {
    marks.push(new Date());
    await new Promise((r) => setTimeout(r, 20));
    for (const t of [h.a, h.b]) {
      await appendAudit(h.db.db, {
        actorType: 'user',
        actorId: t.owner.id,
        tenantId: t.id,
        action: 'test.query',
        result: 'success',
        details: { round },
      });
      await appendAudit(h.db.db, {
        actorType: 'system',
        actorId: null,
        tenantId: t.id,
        action: 'test.query',
        result: 'success',
        details: { round },
      });
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  marks.push(new Date());
});
afterAll(() => h.close());

interface Entry {
  id: string;
  at: string;
  tenantId: string | null;
  actorId: string | null;
  action: string;
  details: { round?: number };
}
async function query(token: string, params: Record<string, string>) {
  const qs = new URLSearchParams({ ...params }).toString();
  const res = await h.api.inject({ method: 'GET', url: `/api/v1/audit?${qs}`, headers: h.bearer(token) });
  return { status: res.statusCode, body: res.json<{ entries: Entry[]; next: string | null }>(), raw: res };
}
const rounds = (entries: Entry[]) => entries.map((e) => e.details.round);

describe('audit log queries', () => {
  it('lets an admin filter by tenant id or slug, actor and a time range', async () => {
    const byId = await query(h.admin.token, { tenant: h.b.id });
    const bySlug = await query(h.admin.token, { tenant: h.b.slug });
    expect(byId.status).toBe(200);
    expect(bySlug.body.entries.map((e) => e.id)).toEqual(byId.body.entries.map((e) => e.id));
    expect(bySlug.body.entries.every((e) => e.tenantId === h.b.id)).toBe(true);

    const window = await query(h.admin.token, {
      tenant: h.a.slug,
      actor: h.a.owner.id,
      from: marks[1]!.toISOString(),
      to: marks[2]!.toISOString(),
    });
    expect(window.body.entries.map((e) => [e.actorId, e.action, e.details.round])).toEqual([
      [h.a.owner.id, 'test.query', 1],
    ]);
    const upToLast = await query(h.admin.token, { tenant: h.a.id, to: marks[3]!.toISOString() });
    expect(rounds(upToLast.body.entries.filter((e) => e.action === 'test.query'))).toEqual([
      2, 2, 1, 1, 0, 0,
    ]);
  });

  it('pages newest first with before=<next>', async () => {
    const seen: string[] = [];
    let next: string | null = null;
    do {
      const page = await query(h.admin.token, {
        tenant: h.b.id,
        from: marks[0]!.toISOString(),
        limit: '4',
        ...(next ? { before: next } : {}),
      });
      expect(page.body.entries.length).toBeLessThanOrEqual(4);
      seen.push(...page.body.entries.map((e) => e.id));
      next = page.body.next;
    } while (next);
    expect(seen).toHaveLength(6);
    expect([...seen].sort((x, y) => Number(y) - Number(x))).toEqual(seen);
  });

  it('refuses a bad range or cursor with a 400 and an unknown slug with a 404', async () => {
    const backwards = await query(h.admin.token, {
      from: marks[2]!.toISOString(),
      to: marks[1]!.toISOString(),
    });
    expect(backwards.status).toBe(400);
    expect(backwards.raw.body).toContain('from must be before to');
    expect((await query(h.admin.token, { before: 'abc' })).status).toBe(400);
    expect((await query(h.admin.token, { from: 'yesterday' })).status).toBe(400);
    expect((await query(h.admin.token, { tenant: 'no-such-tenant' })).status).toBe(404);
  });

  it("gives a tenant owner their own tenant's rows only, by default or by own id or slug", async () => {
    const variants: Record<string, string>[] = [{}, { tenant: h.a.id }, { tenant: h.a.slug }];
    for (const params of variants) {
      const own = await query(h.a.owner.token, params);
      expect(own.status).toBe(200);
      expect(own.body.entries.length).toBeGreaterThan(0);
      expect(own.body.entries.every((e) => e.tenantId === h.a.id)).toBe(true);
    }
    // B's owner is an actor in B only: filtering by them inside A finds nothing.
    expect((await query(h.a.owner.token, { actor: h.b.owner.id })).body.entries).toEqual([]);
    expect((await query(h.a.owner.token, { tenant: h.b.slug })).status).toBe(403);
    expect((await query(h.a.owner.token, { tenant: h.b.id })).status).toBe(403);
    expect((await query(h.a.member.token, {})).status).toBe(403);
  });
});
