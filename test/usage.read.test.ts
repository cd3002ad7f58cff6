import type { Metric } from '../src/core/usage.ts';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProcessDriver } from '../src/compute/process/driver.ts';
import { containerName } from '../src/core/compute.ts';
import { newId } from '../src/core/ids.ts';
import { createLogger } from '../src/observability/logger.ts';
import { collectUsage, rollUpMonth } from '../src/usage/collect.ts';
import { addHours } from '../src/usage/metrics.ts';
import { runCli } from './support/cli.ts';
import { createHarness, type Harness } from './support/identity.ts';
import { usageWorkload } from './support/usage.ts';

/**
 * Reading usage: the tenant API (hour, day, month; monthly roll-ups once
 * hours are pruned; parameters checked), `aiqso usage`, and retention. The
 * rows are written as the collector writes them (its own tests show how they
 * are measured).
 */
let h: Harness;
let serviceA: string;
const MAY = new Date('2031-05-01T00:00:00Z');
const log = createLogger('silent');

async function put(
  tenantId: string,
  tenantServiceId: string | null,
  metric: Metric,
  hour: Date,
  value: number | null,
) {
  await h.db.db
    .insertInto('usage_metrics')
    .values({ tenant_id: tenantId, tenant_service_id: tenantServiceId, metric, period_start: hour, value })
    .execute();
}

beforeAll(async () => {
  h = await createHarness();
  const serviceId = newId('service');
  serviceA = newId('tenantService');
  await h.db.db
    .insertInto('services')
    .values({ id: serviceId, key: 'usagenotes', name: 'Notes', kind: 'app', template: '{}' })
    .execute();
  await h.db.db
    .insertInto('tenant_services')
    .values({ id: serviceA, tenant_id: h.a.id, service_id: serviceId, status: 'active' })
    .execute();
  for (let i = 0; i < 24; i++) {
    const hour = addHours(MAY, i);
    const gap = i === 5;
    await put(h.a.id, serviceA, 'cpu_seconds', hour, gap ? null : 1.5);
    await put(h.a.id, serviceA, 'disk_bytes', hour, gap ? null : 100 + i);
    await put(h.a.id, serviceA, 'memory_peak_bytes', hour, gap ? null : 1000 + ((i * 7) % 24));
    await put(h.a.id, null, 'requests', hour, 10);
    await put(h.b.id, null, 'requests', hour, 1000);
  }
}, 60_000);

afterAll(async () => {
  await h?.close();
});

const get = (token: string, query: string, slug = h.a.slug) =>
  h.api.inject({ method: 'GET', url: `/api/v1/tenants/${slug}/usage?${query}`, headers: h.bearer(token) });

interface Usage {
  usage: {
    service: string | null;
    metric: string;
    period: string;
    value: number | null;
    hours: number;
    gapHours: number;
  }[];
}

describe('usage API', () => {
  it("gives a member its tenant's usage by day: counters summed, gauges averaged, gaps counted", async () => {
    const res = await get(h.a.member.token, 'from=2031-05-01&to=2031-05-02&granularity=day');
    expect(res.statusCode).toBe(200);
    const body = res.json<Usage>();
    const by = Object.fromEntries(body.usage.map((u) => [`${u.service}/${u.metric}`, u]));
    expect(Object.keys(by).sort()).toEqual([
      'null/requests',
      'usagenotes/cpu_seconds',
      'usagenotes/disk_bytes',
      'usagenotes/memory_peak_bytes',
    ]);
    expect(by['usagenotes/cpu_seconds']).toMatchObject({
      period: '2031-05-01T00:00:00.000Z',
      value: 23 * 1.5,
      hours: 23,
      gapHours: 1,
    });
    const disk = [...Array(24).keys()].filter((i) => i !== 5).map((i) => 100 + i);
    expect(by['usagenotes/disk_bytes']!.value).toBeCloseTo(disk.reduce((a, b) => a + b) / disk.length, 6);
    // A peak adds up by taking the highest hour (1000 + 23, at i = 17).
    expect(by['usagenotes/memory_peak_bytes']).toMatchObject({ value: 1023, hours: 23, gapHours: 1 });
    // Tenant B's 1000 requests an hour are not here.
    expect(by['null/requests']!.value).toBe(240);
  });

  it('by hour shows a gap as null, never as zero', async () => {
    const res = await get(
      h.a.owner.token,
      'from=2031-05-01T04:00:00Z&to=2031-05-01T07:00:00Z&granularity=hour',
    );
    expect(res.statusCode).toBe(200);
    const cpu = res
      .json<Usage>()
      .usage.filter((u) => u.metric === 'cpu_seconds')
      .map((u) => [u.period.slice(11, 13), u.value]);
    expect(cpu).toEqual([
      ['04', 1.5],
      ['05', null],
      ['06', 1.5],
    ]);
  });

  it('by month reads the roll-up once the hours are pruned', async () => {
    const april = new Date('2031-04-15T10:00:00Z');
    await put(h.a.id, null, 'requests', april, 7);
    await rollUpMonth(h.db.db, 'UTC', '2031-04-01');
    await h.db.db.deleteFrom('usage_metrics').where('period_start', '=', april).execute();
    const res = await get(h.a.member.token, 'from=2031-04-01&to=2031-06-01&granularity=month');
    expect(res.statusCode).toBe(200);
    const requests = res
      .json<Usage>()
      .usage.filter((u) => u.metric === 'requests')
      .map((u) => [u.period.slice(0, 7), u.value]);
    expect(requests).toEqual([
      ['2031-04', 7],
      ['2031-05', 240],
    ]);
  });

  it('refuses bad parameters with a 400 naming the parameter', async () => {
    const cases: [string, string][] = [
      ['granularity=week', 'granularity'],
      ['from=yesterday', 'from'],
      ['to=2031-13-45', 'to'],
      ['from=2031-05-02&to=2031-05-01', 'from'],
      ['from=2030-01-01&to=2031-05-01&granularity=hour', 'from'],
    ];
    for (const [query, param] of cases) {
      const res = await get(h.a.member.token, query);
      expect(res.statusCode, query).toBe(400);
      expect(res.json<{ error: { message: string } }>().error.message, query).toContain(param);
    }
  });
});

describe('usage across tenants (admins)', () => {
  const across = (token: string, query: string) =>
    h.api.inject({ method: 'GET', url: `/api/v1/usage?${query}`, headers: h.bearer(token) });
  interface Across {
    month: string;
    total: number;
    limit: number;
    offset: number;
    totals: Record<string, number>;
    tenants: { tenantId: string; tenant: string; metrics: Record<string, number | null>; gapHours: number }[];
  }

  it("gives an admin each tenant's month and totals that are the sums of the tenants' own figures", async () => {
    const res = await across(h.admin.token, 'month=2031-05');
    expect(res.statusCode, res.body).toBe(200);
    const body = res.json<Across>();
    expect(body).toMatchObject({ month: '2031-05', limit: 50, offset: 0 });
    expect(body.tenants.map((t) => t.tenant)).toEqual([h.a.slug, h.b.slug].sort());
    const a = body.tenants.find((t) => t.tenantId === h.a.id)!;
    const b = body.tenants.find((t) => t.tenantId === h.b.id)!;
    expect(a.metrics).toMatchObject({ requests: 240, cpu_seconds: 34.5, memory_peak_bytes: 1023 });
    expect(a.gapHours).toBe(1);
    expect(b.metrics).toEqual({ requests: 24_000 });
    // Each tenant's figures are what its own report says for the month, summed over its services.
    for (const [t, token, slug] of [
      [a, h.a.owner.token, h.a.slug],
      [b, h.b.owner.token, h.b.slug],
    ] as const) {
      const own = await get(token, 'from=2031-05-01&to=2031-06-01&granularity=month', slug);
      expect(own.statusCode).toBe(200);
      const sums: Record<string, number> = {};
      for (const u of own.json<Usage>().usage) sums[u.metric] = (sums[u.metric] ?? 0) + (u.value ?? 0);
      expect(t.metrics).toEqual(sums);
    }
    // The totals are the sums of the tenants' lines.
    const sums: Record<string, number> = {};
    for (const t of body.tenants)
      for (const [m, v] of Object.entries(t.metrics)) sums[m] = (sums[m] ?? 0) + (v ?? 0);
    expect(body.totals).toEqual(sums);
    expect(body.totals.requests).toBe(24_240);
  });

  it('pages and orders by a metric, largest first; the totals stay those of every tenant', async () => {
    const page = (await across(h.admin.token, 'month=2031-05&sort=requests&limit=1&offset=1')).json<Across>();
    expect(page).toMatchObject({ total: 2, limit: 1, offset: 1 });
    expect(page.tenants.map((t) => t.tenantId)).toEqual([h.a.id]);
    expect(page.totals.requests).toBe(24_240);
    const first = (await across(h.admin.token, 'month=2031-05&sort=requests&limit=1')).json<Across>();
    expect(first.tenants.map((t) => t.tenantId)).toEqual([h.b.id]);
    const empty = (await across(h.admin.token, 'month=2030-01')).json<Across>();
    expect(empty).toMatchObject({ total: 0, tenants: [], totals: {} });
  });

  it('refuses tenant users (403) and bad parameters (400 naming them)', async () => {
    for (const token of [h.a.owner.token, h.a.member.token, h.b.owner.token])
      expect((await across(token, 'month=2031-05')).statusCode).toBe(403);
    for (const [query, param] of [
      ['month=2031-13', 'month'],
      ['month=May', 'month'],
      ['sort=bogus', 'sort'],
      ['limit=0', 'limit'],
      ['offset=-1', 'offset'],
    ] as const) {
      const res = await across(h.admin.token, query);
      expect(res.statusCode, query).toBe(400);
      expect(res.json<{ error: { message: string } }>().error.message, query).toContain(param);
    }
  });
});

describe('usage retention and roll-ups (a collection pass)', () => {
  it('rolls up the closed month in the first hours of the next and prunes past the retention', async () => {
    const root = await mkdtemp(path.join(os.tmpdir(), 'aiqso-usage-ret-'));
    const compute = await ProcessDriver.open({ root, log });
    try {
      const boundary = new Date('2031-06-01T01:00:00Z');
      await put(h.a.id, null, 'mails_sent', addHours(boundary, -91 * 24), 3);
      await put(h.a.id, null, 'mails_sent', addHours(boundary, -89 * 24), 4);
      await h.db.db
        .insertInto('usage_monthly')
        .values({ tenant_id: h.a.id, metric: 'requests', month: '2030-04-01', value: 1, hours: 1 })
        .execute();
      await collectUsage(
        {
          db: h.db.db,
          admin: h.db.pool,
          compute,
          log,
          timeZone: 'UTC',
          retention: { hourlyDays: 90, monthlyMonths: 13 },
        },
        new Date(boundary.getTime() + 5000),
      );
      const mails = await h.db.db
        .selectFrom('usage_metrics')
        .select('value')
        .where('metric', '=', 'mails_sent')
        .execute();
      expect(mails.map((m) => m.value)).toEqual([4]);
      const months = await h.db.pool.query<{
        month: string;
        metric: string;
        value: number;
        gap_hours: number;
      }>(
        `SELECT to_char(month, 'YYYY-MM') AS month, metric, value, gap_hours FROM usage_monthly
         WHERE tenant_id = $1 AND tenant_service_id IS NOT DISTINCT FROM $2 ORDER BY month, metric`,
        [h.a.id, serviceA],
      );
      const disk = [...Array(24).keys()].filter((i) => i !== 5).map((i) => 100 + i);
      expect(months.rows).toEqual([
        { month: '2031-05', metric: 'cpu_seconds', value: 34.5, gap_hours: 1 },
        {
          month: '2031-05',
          metric: 'disk_bytes',
          value: disk.reduce((a, b) => a + b) / disk.length,
          gap_hours: 1,
        },
        { month: '2031-05', metric: 'memory_peak_bytes', value: 1023, gap_hours: 1 },
      ]);
      const kept = await h.db.pool.query<{ month: string }>(
        `SELECT to_char(month, 'YYYY-MM') AS month FROM usage_monthly
         WHERE tenant_id = $1 AND metric = 'requests' ORDER BY month`,
        [h.a.id],
      );
      // April 2030 is more than 13 months before June 2031: gone. May 2031 was rolled up by this pass.
      expect(kept.rows.map((r) => r.month)).not.toContain('2030-04');
      expect(kept.rows.map((r) => r.month)).toContain('2031-05');
    } finally {
      await compute.close();
      await rm(root, { recursive: true, force: true });
    }
  });
});

describe('aiqso usage', () => {
  const dataDirs: string[] = [];
  afterAll(async () => {
    for (const dir of dataDirs) await rm(dir, { recursive: true, force: true });
  });
  const env = async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'aiqso-usage-cli-'));
    dataDirs.push(dir);
    return { DATABASE_URL: h.db.url, AIQSO_DATA_DIR: dir };
  };

  it("prints a tenant's month as CSV and as JSON", async () => {
    const e = await env();
    const csv = await runCli(['usage', h.a.slug, '--month', '2031-05', '--csv'], e);
    expect(csv.code, csv.stderr).toBe(0);
    const lines = csv.stdout.trim().split('\r\n');
    expect(lines[0]).toBe('tenant,service,metric,period,value,hours,gapHours');
    expect(lines).toContain(`${h.a.slug},usagenotes,cpu_seconds,2031-05-01T00:00:00.000Z,34.5,23,1`);
    expect(lines).toContain(`${h.a.slug},,requests,2031-05-01T00:00:00.000Z,240,24,0`);
    expect(csv.stdout).not.toContain(h.b.slug);

    const all = await runCli(['usage', '--month', '2031-05', '--json'], e);
    expect(all.code, all.stderr).toBe(0);
    const rows = JSON.parse(all.stdout) as { tenant: string; metric: string; value: number }[];
    expect(rows.find((r) => r.tenant === h.b.slug && r.metric === 'requests')?.value).toBe(24_000);
  });

  it('`usage --all` prints one line per tenant, the sum on each host and a TOTAL that is their sum, as the API does', async () => {
    const e = await env();
    // The two tenants on two hosts.
    await h.db.db
      .insertInto('hosts')
      .values([
        { id: 'hst_usage_one', name: 'node-one', driver: 'lxc', memory_mb: 8192, cores: 4, disk_gb: 100 },
        { id: 'hst_usage_two', name: 'node-two', driver: 'lxc', memory_mb: 8192, cores: 4, disk_gb: 100 },
      ])
      .execute();
    await h.db.db.updateTable('tenants').set({ host_id: 'hst_usage_one' }).where('id', '=', h.a.id).execute();
    await h.db.db.updateTable('tenants').set({ host_id: 'hst_usage_two' }).where('id', '=', h.b.id).execute();
    const json = await runCli(['usage', '--all', '--month', '2031-05', '--json'], e);
    expect(json.code, json.stderr).toBe(0);
    const body = JSON.parse(json.stdout) as {
      month: string;
      tenants: { tenant: string; metrics: Record<string, number> }[];
      totals: Record<string, number>;
    };
    expect(body.month).toBe('2031-05');
    const api = (
      await h.api.inject({
        method: 'GET',
        url: '/api/v1/usage?month=2031-05',
        headers: h.bearer(h.admin.token),
      })
    ).json<{
      tenants: { tenant: string; host: string | null; metrics: Record<string, number | null> }[];
      totals: Record<string, number>;
      hosts: { host: string | null; tenants: number; totals: Record<string, number> }[];
    }>();
    expect(body.tenants).toEqual(api.tenants);
    expect(body.totals).toEqual(api.totals);
    // Each host's sums are its tenants' figures, and together they make the totals.
    expect(api.hosts.map((x) => [x.host, x.tenants])).toEqual([
      ['node-one', 1],
      ['node-two', 1],
    ]);
    for (const host of api.hosts) {
      const on = api.tenants.filter((t) => t.host === host.host);
      for (const [metric, value] of Object.entries(host.totals))
        expect(value, `${host.host} ${metric}`).toBeCloseTo(
          on.reduce((sum, t) => sum + (t.metrics[metric] ?? 0), 0),
          6,
        );
    }
    for (const [metric, value] of Object.entries(api.totals))
      expect(value, metric).toBeCloseTo(
        api.hosts.reduce((sum, x) => sum + (x.totals[metric] ?? 0), 0),
        6,
      );
    const table = await runCli(['usage', '--all', '--month', '2031-05'], e);
    expect(table.code, table.stderr).toBe(0);
    const lines = table.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^TENANT\s+CPU_SECONDS\s+MEMORY_AVG_BYTES\s+MEMORY_PEAK_BYTES/);
    expect(lines.at(-1)).toMatch(/^TOTAL\s+34\.50\s+-\s+1023\s+.*24240\s/);
    expect(lines.filter((l) => l.startsWith('TOTAL on node-'))).toHaveLength(2);
    const both = await runCli(['usage', h.a.slug, '--all'], e);
    expect(both.code).toBe(2);
    expect(both.stderr).toContain('--all');
  });

  it('refuses a bad month (exit 2) and an unknown tenant (exit 3), naming them', async () => {
    const e = await env();
    const bad = await runCli(['usage', h.a.slug, '--month', '2031-13'], e);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('month must be YYYY-MM');
    const unknown = await runCli(['usage', 'no-such-tenant', '--month', '2031-05'], e);
    expect(unknown.code).toBe(3);
    expect(unknown.stderr).toContain('no-such-tenant');
  });

  it('`usage collect` reads the running containers for the current hour; a second run adds nothing', async () => {
    const e = { ...(await env()), AIQSO_DRIVER: 'process' };
    // Tenant A's service runs in the process driver the command opens (under AIQSO_DATA_DIR).
    const compute = await ProcessDriver.open({ root: path.join(e.AIQSO_DATA_DIR, 'containers'), log });
    const container = containerName(h.a.id, 'usagenotes');
    await h.db.db
      .updateTable('tenant_services')
      .set({ container_name: container })
      .where('id', '=', serviceA)
      .execute();
    try {
      await compute.ensure({
        name: container,
        tenantId: h.a.id,
        role: 'usagenotes',
        workload: usageWorkload(),
        resources: { memoryMb: 128, cores: 1, diskGb: 1 },
        port: 3000,
        env: {},
      });
      await compute.start(container);
      const first = await runCli(['usage', 'collect', '--json'], e);
      expect(first.code, first.stderr).toBe(0);
      const result = JSON.parse(first.stdout) as { boundary: string; read: number; failed: unknown[] };
      expect(new Date(result.boundary).getTime()).toBe(Math.floor(Date.now() / 3_600_000) * 3_600_000);
      expect(result).toMatchObject({ read: 1, failed: [] });
      const reading = await h.db.db
        .selectFrom('usage_readings')
        .selectAll()
        .where('container', '=', container)
        .executeTakeFirstOrThrow();
      expect(reading).toMatchObject({ tenant_id: h.a.id, tenant_service_id: serviceA });
      expect(reading.memory_bytes).toBeGreaterThan(0);
      const second = await runCli(['usage', 'collect'], e);
      expect(second.code, second.stderr).toBe(0);
      expect(second.stdout).toContain('0 containers read, 0 hourly values written');
    } finally {
      await compute.destroy(container);
      await compute.close();
    }
  });
});
