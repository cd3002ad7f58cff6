import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { uptime } from '../src/health/status.ts';
import { createHarness, type Harness } from './support/identity.ts';
import { runCli } from './support/cli.ts';

/**
 * `GET /api/v1/tenants/{tenant}/status` and `aiqso status`: each target's
 * state, uptime from its state changes, its open incident; a tenant sees only
 * its own (two tenants with health records and incidents each).
 */
let h: Harness;
const hour = 3_600_000;
const now = Date.now();
const ago = (ms: number) => new Date(now - ms);

beforeAll(async () => {
  h = await createHarness();
  const { db } = h.db;
  for (const t of [h.a, h.b]) {
    await db
      .insertInto('health_checks')
      .values({
        target_id: t.id,
        target_kind: 'dashboard',
        tenant_id: t.id,
        state: t === h.a ? 'failing' : 'healthy',
        last_result: t === h.a ? 'answered 500, expected 200' : 'answered 200',
        last_probe_at: ago(1000),
      })
      .execute();
    // Healthy from 48 h ago; A failing for the last 6 h.
    await db
      .insertInto('health_transitions')
      .values([
        { target_id: t.id, tenant_id: t.id, healthy: true, at: ago(48 * hour) },
        ...(t === h.a ? [{ target_id: t.id, tenant_id: t.id, healthy: false, at: ago(6 * hour) }] : []),
      ])
      .execute();
    await db
      .insertInto('incidents')
      .values({
        id: `inc_${t.slug}`,
        tenant_id: t.id,
        target_id: t.id,
        target_kind: 'dashboard',
        target_name: 'dashboard',
        reason: `${t.slug} dashboard: GET /healthz answered 500`,
        rungs: JSON.stringify([
          { rung: 1, action: 'restart', at: ago(6 * hour).toISOString(), outcome: 'restarted (running)' },
        ]),
        opened_at: ago(6 * hour),
        resolved_at: t === h.a ? null : ago(5 * hour),
      })
      .execute();
  }
});
afterAll(() => h?.close());

describe('uptime', () => {
  it('is the healthy share of the measured part of the window', () => {
    const at = new Date(Date.UTC(2026, 0, 2));
    const t = (hoursAgo: number, healthy: boolean) => ({
      at: new Date(at.getTime() - hoursAgo * hour),
      healthy,
    });
    expect(uptime([t(48, true), t(6, false)], 24 * hour, at)).toBe(75);
    // Only 12 h measured, all healthy.
    expect(uptime([t(12, true)], 24 * hour, at)).toBe(100);
    expect(uptime([], 24 * hour, at)).toBeNull();
    // The state before the window counts from the window's start.
    expect(uptime([t(100, false), t(1, true)], 24 * hour, at)).toBeCloseTo((1 / 24) * 100, 2);
  });
});

describe('GET /api/v1/tenants/{tenant}/status', () => {
  it("shows a member their tenant's state, uptime and open incident, and nothing of another tenant", async () => {
    const res = await h.api.inject({
      method: 'GET',
      url: `/api/v1/tenants/${h.a.slug}/status`,
      headers: h.bearer(h.a.member.token),
    });
    expect(res.statusCode).toBe(200);
    const body = res.json<{
      targets: {
        id: string;
        state: string;
        summary: string;
        uptime: Record<string, number | null>;
        openIncident: { id: string } | null;
      }[];
      incidents: { id: string }[];
    }>();
    expect(body.targets).toHaveLength(1);
    expect(body.targets[0]).toMatchObject({
      id: h.a.id,
      state: 'failing',
      summary: 'not answering; being repaired',
      openIncident: { id: `inc_${h.a.slug}` },
    });
    expect(body.targets[0]!.uptime['24h']).toBeCloseTo(75, 0);
    expect(body.targets[0]!.uptime['7d']).toBeCloseTo((42 / 48) * 100, 0);
    expect(body.incidents.map((i) => i.id)).toEqual([`inc_${h.a.slug}`]);
  });

  it('answers 404 for an unknown tenant and for another tenant', async () => {
    for (const slug of ['no-such-tenant', h.b.slug]) {
      const res = await h.api.inject({
        method: 'GET',
        url: `/api/v1/tenants/${slug}/status`,
        headers: h.bearer(h.a.member.token),
      });
      expect(res.statusCode).toBe(404);
    }
  });
});

describe('aiqso status', () => {
  it('prints a tenant as JSON and as a table, and exits 3 for an unknown tenant', async () => {
    const env = { DATABASE_URL: h.db.url, AIQSO_DATA_DIR: h.dataDir };
    const json = await runCli(['status', h.b.slug, '--json'], env);
    expect(json.code).toBe(0);
    const parsed = JSON.parse(json.stdout) as {
      tenant: string;
      targets: { state: string; openIncident: unknown }[];
    }[];
    expect(parsed).toHaveLength(1);
    expect(parsed[0]).toMatchObject({
      tenant: h.b.slug,
      targets: [{ state: 'healthy', openIncident: null }],
    });
    const all = await runCli(['status'], env);
    expect(all.code).toBe(0);
    expect(all.stdout).toMatch(new RegExp(`${h.a.slug}\\s+dashboard\\s+failing`));
    expect(all.stdout).toContain(`inc_${h.a.slug}`);
    const missing = await runCli(['status', 'no-such-tenant'], env);
    expect(missing.code).toBe(3);
    expect(missing.stderr).toContain('no-such-tenant');
  });
});
